package jail

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// loadThreadFilter installs a classic BPF program (struct sock_filter
// array as exported by libseccomp) on the calling thread only.
func loadThreadFilter(prog []byte) error {
	const insnSize = 8 // struct sock_filter
	n := len(prog) / insnSize
	if n == 0 || len(prog)%insnSize != 0 || n > 4096 { // BPF_MAXINSNS
		return fmt.Errorf("bad BPF program of %d bytes", len(prog))
	}
	insns := make([]unix.SockFilter, n)
	for i := range insns {
		b := prog[i*insnSize:]
		insns[i] = unix.SockFilter{
			Code: binary.NativeEndian.Uint16(b[0:]),
			Jt:   b[2],
			Jf:   b[3],
			K:    binary.NativeEndian.Uint32(b[4:]),
		}
	}
	fprog := unix.SockFprog{Len: uint16(n), Filter: &insns[0]}
	_, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(insns)
	if errno != 0 {
		return errno
	}
	return nil
}
