//go:build sietchdrill

// Escape drills, in test builds only (go build -tags sietchdrill): with
// SIETCH_VMM_DRILL=CALL in its environment, a confined vmm makes the
// forbidden system call CALL from a goroutine of its own (an ordinary
// thread, like the control server's) once it runs, and the tests check
// that the kernel killed it for that.

package main

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

func init() {
	drill = func() {
		call := os.Getenv("SIETCH_VMM_DRILL")
		if call == "" {
			return
		}
		go func() {
			err := drillCall(call)
			// Only a call the policy lets through gets here.
			fmt.Fprintf(os.Stderr, "drill %s: returned (%v)\n", call, err)
		}()
	}
}

func drillCall(call string) error {
	switch call {
	case "getpid": // allowed: the control case
		unix.Getpid()
		return nil
	case "execve":
		return syscall.Exec("/bin/true", []string{"true"}, nil)
	case "fork":
		pid, _, errno := syscall.RawSyscall(unix.SYS_CLONE, uintptr(syscall.SIGCHLD), 0, 0)
		if errno == 0 && pid == 0 {
			syscall.RawSyscall(unix.SYS_EXIT, 0, 0, 0)
		}
		return errno
	case "ptrace":
		return unix.PtraceAttach(1)
	case "mount":
		return unix.Mount("none", "/nonexistent-sietch-drill", "tmpfs", 0, "")
	case "finit_module":
		_, _, errno := unix.Syscall(unix.SYS_FINIT_MODULE, ^uintptr(0), 0, 0)
		return errno
	case "unshare":
		return unix.Unshare(unix.CLONE_NEWUSER)
	case "bpf":
		_, _, errno := unix.Syscall(unix.SYS_BPF, 0, 0, 0)
		return errno
	case "socket-inet":
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
		unix.Close(fd)
		return err
	case "perf_event_open":
		_, _, errno := unix.Syscall6(unix.SYS_PERF_EVENT_OPEN, 0, 0, ^uintptr(0), ^uintptr(0), 0, 0)
		return errno
	}
	return fmt.Errorf("unknown drill %q", call)
}
