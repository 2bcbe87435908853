package control

import "fmt"

// HostCheck is what `vmm check --json` prints: whether this host's KVM can
// run VMs, and whether guest kernel mode runs natively or is emulated.
// sietchd reports it without linking any machine code.
type HostCheck struct {
	OK         bool     `json:"ok"`
	Device     string   `json:"device"`
	Error      string   `json:"error,omitempty"` // why /dev/kvm or the probe failed
	APIVersion int      `json:"api_version,omitempty"`
	Missing    []string `json:"missing,omitempty"` // capabilities that are required and absent
	Emulated   bool     `json:"kernel_mode_emulated"`
	UserLoopNS int64    `json:"user_loop_ns"`   // guest CPL3 time per probe loop iteration
	KernLoopNS int64    `json:"kernel_loop_ns"` // guest CPL0 time per probe loop iteration
}

// Summary says in one line what the check found.
func (h HostCheck) Summary() string {
	switch {
	case h.Error != "":
		return "unavailable: " + h.Error
	case !h.OK:
		return fmt.Sprintf("unusable (missing %v): run `vmm check` for details", h.Missing)
	case h.Emulated:
		return "ok; guest kernel mode is instruction-emulated (nested, page-table-based KVM): Linux boots in seconds"
	}
	return "ok; guest kernel mode runs natively"
}
