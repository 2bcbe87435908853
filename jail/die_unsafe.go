package jail

import (
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// DieOf ends this process by sig with its default action, as a process
// without handlers would die of it, so that whoever waits for it sees the
// signal (a keeper passing on its jailed vmm's end). The Go runtime
// handles SIGSYS, SIGSEGV and the like as crashes of its own (exit status
// 2): the handler is put back to SIG_DFL with rt_sigaction first. If sig
// does not end a process by default, DieOf returns.
func DieOf(sig syscall.Signal) {
	var act struct { // struct kernel_sigaction, handler SIG_DFL (0)
		handler, flags, restorer uintptr
		mask                     uint64
	}
	unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig), uintptr(unsafe.Pointer(&act)), 0, unsafe.Sizeof(act.mask), 0, 0)
	unix.Tgkill(unix.Getpid(), unix.Gettid(), sig)
	time.Sleep(100 * time.Millisecond) // a blocked signal arrives once unblocked
}
