package jail

import (
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// Securebits (include/uapi/linux/securebits.h): uid 0 gets no capabilities
// from execve, KEEP_CAPS stays off so the uid change below clears them, and
// ambient capabilities cannot be raised again; all locked.
const secureBits = 1<<0 | 1<<1 | // SECBIT_NOROOT, _LOCKED
	1<<5 | // SECBIT_KEEP_CAPS_LOCKED (KEEP_CAPS off)
	1<<6 | 1<<7 // SECBIT_NO_CAP_AMBIENT_RAISE, _LOCKED

// dropCapabilities ends with no capabilities on any thread and
// no_new_privs on the calling one (Policy.Load's TSYNC spreads it).
//
// The bounding and inheritable sets and the securebits can only be changed
// on the calling thread. On other threads they stay as they were, but
// without permitted capabilities they grant nothing: they matter only at
// execve, which no policy allows (Policy.build refuses it).
func dropCapabilities() error {
	if err := unix.Prctl(unix.PR_SET_SECUREBITS, secureBits, 0, 0, 0); err != nil {
		return fmt.Errorf("set securebits: %w", err)
	}
	for c := 0; c < 64; c++ {
		err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0)
		if errors.Is(err, unix.EINVAL) {
			break // past the kernel's last capability
		}
		if err != nil {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	// syscall's Setres[ug]id run on every thread: through glibc's setxid
	// broadcast when cgo is linked, AllThreadsSyscall otherwise.
	if err := syscall.Setresgid(DeviceID, DeviceID, DeviceID); err != nil {
		return fmt.Errorf("switch to gid %d: %w", DeviceID, err)
	}
	if err := syscall.Setresuid(DeviceID, DeviceID, DeviceID); err != nil {
		return fmt.Errorf("switch to uid %d: %w", DeviceID, err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set no_new_privs: %w", err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var none [2]unix.CapUserData // version 3 takes two 32-bit halves
	if err := unix.Capset(&hdr, &none[0]); err != nil {
		return fmt.Errorf("capset: %w", err)
	}
	return nil
}

// checkConfined verifies on the calling thread: no permitted or effective
// capabilities and no_new_privs, and on the thread that ran
// dropCapabilities (enterThread) empty inheritable and bounding sets too.
func checkConfined(enterThread bool) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capget: %w", err)
	}
	for _, d := range data {
		if d.Effective|d.Permitted != 0 || enterThread && d.Inheritable != 0 {
			return fmt.Errorf("capabilities left: %+v", data)
		}
	}
	for c := 0; enterThread && c < 64; c++ {
		in, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(c), 0, 0, 0)
		if err != nil {
			break // past the kernel's last capability
		}
		if in != 0 {
			return fmt.Errorf("capability %d left in the bounding set", c)
		}
	}
	nnp, err := unix.PrctlRetInt(unix.PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0)
	if err != nil || nnp != 1 {
		return fmt.Errorf("no_new_privs not set (%d, %v)", nnp, err)
	}
	return nil
}
