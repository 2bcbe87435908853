//go:build sietchdrill

// Escape drills on a vCPU thread, in test builds only (go build -tags
// sietchdrill): with SIETCH_VMM_DRILL_VCPU=CALL in its environment, vCPU
// 0's thread makes CALL once it is confined, before it first enters the
// guest: where a guest that took over the vmm through an exit handler
// would be. cmd/vmm's TestEscapeDrills checks the kernel kills the vmm
// for each forbidden call.

package vmm

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

func init() {
	// With SIETCH_VMM_DRILL_CRASH=POINT the vmm ends at once at that
	// crashPoint: exit_group, with no cleanup, as a crash would (not
	// SIGKILL to itself: a jailed vmm is its PID namespace's init, which
	// ignores signals from inside).
	if at := os.Getenv("SIETCH_VMM_DRILL_CRASH"); at != "" {
		crashPoint = func(point string) {
			if point == at {
				fmt.Fprintf(os.Stderr, "drill crash:%s: exit_group\n", point)
				unix.Exit(137)
			}
		}
	}
	call := os.Getenv("SIETCH_VMM_DRILL_VCPU")
	if call == "" {
		return
	}
	vcpuDrill = func(vcpu int) {
		if vcpu != 0 {
			return
		}
		err := drillOnVCPU(call)
		// Only a call the policies let through gets here.
		fmt.Fprintf(os.Stderr, "drill vcpu:%s: returned (%v)\n", call, err)
	}
}

func drillOnVCPU(call string) error {
	switch call {
	case "getpid": // allowed: the control case
		unix.Getpid()
		return nil
	case "openat": // a host file
		fd, err := unix.Open("/etc/hostname", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		return err
	case "socket": // a unix socket, to reach a host service
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		unix.Close(fd)
		return err
	case "kill": // another process
		return unix.Kill(1, 0)
	case "mount":
		return unix.Mount("none", "/nonexistent-sietch-drill", "tmpfs", 0, "")
	}
	return fmt.Errorf("unknown vCPU drill %q", call)
}
