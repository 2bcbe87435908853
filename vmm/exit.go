package vmm

import "fmt"

// ExitKind says why a VM stopped running.
type ExitKind int

const (
	// ExitPowerOff: the guest asked to power off (sietch power port).
	ExitPowerOff ExitKind = iota + 1
	// ExitReset: the guest asked to reboot (power port, i8042 reset line, or
	// a KVM reset system event).
	ExitReset
	// ExitCrash: the guest cannot go on (triple fault, an instruction KVM
	// could not emulate, a failed VM entry).
	ExitCrash
	// ExitStopped: the host stopped the VM (Stop, a signal, a cancelled context).
	ExitStopped
)

func (k ExitKind) String() string {
	switch k {
	case ExitPowerOff:
		return "power-off"
	case ExitReset:
		return "reset"
	case ExitCrash:
		return "crash"
	case ExitStopped:
		return "stopped"
	}
	return fmt.Sprintf("ExitKind(%d)", int(k))
}

// Exit is how and why the VM ended.
type Exit struct {
	Kind   ExitKind
	VCPU   int    // the vCPU that caused it, -1 if none
	Reason string // human-readable detail
}

func (e Exit) String() string {
	if e.VCPU >= 0 {
		return fmt.Sprintf("%s (vCPU %d): %s", e.Kind, e.VCPU, e.Reason)
	}
	return fmt.Sprintf("%s: %s", e.Kind, e.Reason)
}
