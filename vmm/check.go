package vmm

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/sietch-vm/sietch/kvm"
	"github.com/sietch-vm/sietch/wire/control"
)

// HostReport is what `vmm check` found out about this host's KVM.
type HostReport struct {
	Device     string
	OpenErr    error
	APIVersion int
	Caps       []CapStatus
	Modes      ModeTiming
	ModesErr   error
}

// OK reports whether a VM can run here at all.
func (r HostReport) OK() bool {
	if r.OpenErr != nil || r.APIVersion != kvm.StableAPIVersion || r.ModesErr != nil {
		return false
	}
	for _, c := range r.Caps {
		if c.Required && !c.Present {
			return false
		}
	}
	return true
}

// CheckHost probes /dev/kvm: that it opens, its API version, the
// capabilities the vmm needs, and whether guest kernel mode runs natively.
func CheckHost() HostReport {
	r := HostReport{Device: "/dev/kvm"}
	sys, err := kvm.Open()
	if err != nil {
		r.OpenErr = err
		return r
	}
	defer sys.Close()
	if r.APIVersion, err = sys.APIVersion(); err != nil {
		r.OpenErr = err
		return r
	}
	for _, c := range requiredCaps {
		n, err := sys.CheckExtension(c.cap)
		r.Caps = append(r.Caps, CapStatus{Name: c.name, Present: err == nil && n > 0, Required: true})
	}
	for _, c := range optionalCaps {
		n, err := sys.CheckExtension(c.cap)
		r.Caps = append(r.Caps, CapStatus{Name: c.name, Present: err == nil && n > 0})
	}
	r.Modes, r.ModesErr = MeasureModes(sys, CheckProbeLoops)
	if r.ModesErr == nil {
		recordProfile(r.Modes.Emulated()) // `vmm run` uses it until reboot
	}
	return r
}

// Wire is the report as `vmm check --json` prints it.
func (r HostReport) Wire() control.HostCheck {
	h := control.HostCheck{OK: r.OK(), Device: r.Device, APIVersion: r.APIVersion,
		Emulated: r.Modes.Emulated(), UserLoopNS: r.Modes.CPL3.Nanoseconds(), KernLoopNS: r.Modes.CPL0.Nanoseconds()}
	switch {
	case r.OpenErr != nil:
		h.Error = r.OpenErr.Error()
	case r.ModesErr != nil:
		h.Error = "guest mode probe: " + r.ModesErr.Error()
	}
	for _, c := range r.Caps {
		if c.Required && !c.Present {
			h.Missing = append(h.Missing, c.Name)
		}
	}
	return h
}

// Print writes the report for a person.
func (r HostReport) Print(w io.Writer) {
	mark := func(ok bool) string {
		if ok {
			return "ok  "
		}
		return "FAIL"
	}
	fmt.Fprintf(w, "%s %s opens", mark(r.OpenErr == nil), r.Device)
	if r.OpenErr != nil {
		fmt.Fprintf(w, ": %v\n", r.OpenErr)
		fmt.Fprintln(w, "\nNo VM can run here: load the kvm module (kvm_intel or kvm_amd) or run on a host that offers /dev/kvm, and make sure this user may open it.")
		return
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "%s KVM API version %d\n", mark(r.APIVersion == kvm.StableAPIVersion), r.APIVersion)
	for _, c := range r.Caps {
		switch {
		case c.Present:
			fmt.Fprintf(w, "ok   %s\n", c.Name)
		case c.Required:
			fmt.Fprintf(w, "FAIL %s (required)\n", c.Name)
		default:
			fmt.Fprintf(w, "warn %s missing (snapshots may not be complete)\n", c.Name)
		}
	}
	if r.ModesErr != nil {
		fmt.Fprintf(w, "FAIL guest mode probe: %v\n", r.ModesErr)
		return
	}
	fmt.Fprintf(w, "ok   guest user mode (CPL3):   %v per loop iteration\n", round(r.Modes.CPL3))
	fmt.Fprintf(w, "%s guest kernel mode (CPL0): %v per loop iteration\n", map[bool]string{true: "warn", false: "ok  "}[r.Modes.Emulated()], round(r.Modes.CPL0))
	fmt.Fprintln(w)
	if r.Modes.Emulated() {
		fmt.Fprintf(w, `Guest kernel mode is instruction-emulated on this host (about %.0fx slower than user mode):
its KVM is a nested, page-table-based hypervisor without VT-x/AMD-V.
  - Distribution kernels will not boot here in usable time.
  - The project kernel (make kernel) boots, slowly (seconds, not milliseconds):
    vmm applies its compatibility profile by itself on this host
    (kernel command line: %s; CPUID: XSAVEERPTR reported).
  - Guest user mode runs at native speed, so work inside a booted guest is fast.
  - A host with hardware virtualization (VT-x or AMD-V exposed to this machine)
    would run guest kernel mode natively and boot in well under a second.
`, float64(r.Modes.CPL0)/float64(max(r.Modes.CPL3, time.Nanosecond)), strings.Join(compatCmdline, " "))
	} else {
		fmt.Fprintln(w, "Guest kernel mode runs natively: any x86-64 kernel boots at full speed; no compatibility profile is applied.")
	}
}

func round(d time.Duration) time.Duration {
	if d < time.Microsecond {
		return d
	}
	return d.Round(10 * time.Nanosecond)
}
