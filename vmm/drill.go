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
