//go:build sietchdrill

// Escape drills, in test builds only (go build -tags sietchdrill): with
// SIETCH_VMM_DRILL=CALL in its environment, a confined vmm makes the
// forbidden system call CALL from a goroutine of its own (an ordinary
// thread, like the control server's) once it runs, and the tests check
// that the kernel killed it for that. The drills on paths (open-*,
// connect-unix, write-proc-sys) are calls the policy allows: the jail's
// file system must refuse them, and the vmm says what it got.

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
	case "open-host-file": // the host's files are not in the jail
		f, err := os.Open(os.Getenv("SIETCH_VMM_DRILL_PATH"))
		f.Close()
		return err
	case "open-kvm": // sealed: gone from the jail's /dev once the VM is built
		f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
		f.Close()
		return err
	case "write-proc-sys": // /proc is read-only (opened, never written)
		f, err := os.OpenFile("/proc/sys/kernel/core_pattern", os.O_WRONLY, 0)
		f.Close()
		return err
	case "connect-unix": // a host service's socket, outside the jail
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Connect(fd, &unix.SockaddrUnix{Name: os.Getenv("SIETCH_VMM_DRILL_PATH")})
	case "perf_event_open":
		_, _, errno := unix.Syscall6(unix.SYS_PERF_EVENT_OPEN, 0, 0, ^uintptr(0), ^uintptr(0), 0, 0)
		return errno
	}
	return fmt.Errorf("unknown drill %q", call)
}
