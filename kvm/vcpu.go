package kvm

import (
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// VCPU is a vCPU file descriptor and its mapped kvm_run area. Run it from
// one locked OS thread; the other methods follow KVM's rule that vCPU
// ioctls belong to the thread that runs it, except SetImmediateExit.
type VCPU struct {
	fd  int
	id  int
	mem []byte
	run *Run
}

// FD returns the vCPU file descriptor.
func (c *VCPU) FD() int { return c.fd }

// ID returns the vCPU id given to CreateVCPU (its initial APIC id).
func (c *VCPU) ID() int { return c.id }

// Close unmaps kvm_run and closes the vCPU; RunData pointers die with it.
func (c *VCPU) Close() error {
	var merr error
	if c.mem != nil {
		merr = unix.Munmap(c.mem)
		c.mem, c.run = nil, nil
	}
	if err := closeFD(&c.fd, fmt.Sprintf("vCPU %d", c.id)); err != nil {
		return err
	}
	if merr != nil {
		return fmt.Errorf("munmap kvm_run of vCPU %d: %w", c.id, merr)
	}
	return nil
}

// Run enters the guest until the next exit (KVM_RUN). A signal or
// immediate_exit yields an error wrapping unix.EINTR, and EAGAIN is passed
// through likewise; both are normal events for the run loop, not failures.
func (c *VCPU) Run() error {
	if _, err := ioctl(c.fd, reqRun, 0); err != nil {
		return fmt.Errorf("KVM_RUN vCPU %d: %w", c.id, err)
	}
	return nil
}

// RunData returns the vCPU's kvm_run; valid until Close.
func (c *VCPU) RunData() *Run { return c.run }

// SetImmediateExit sets kvm_run.immediate_exit, which makes KVM_RUN return
// EINTR before entering the guest. Safe to call from another thread: it
// updates the byte atomically within its aligned 32-bit word, whose other
// bytes are request_interrupt_window and padding (x86 is little-endian).
func (c *VCPU) SetImmediateExit(on bool) {
	if c.run == nil {
		return
	}
	word := (*uint32)(unsafe.Pointer(&c.run.RequestInterruptWindow))
	var v uint32
	if on {
		v = 1
	}
	for {
		old := atomic.LoadUint32(word)
		if atomic.CompareAndSwapUint32(word, old, old&^0xff00|v<<8) {
			return
		}
	}
}

// IOData returns the data of an ExitIO as a slice aliasing kvm_run: for
// "in", fill it before the next Run. The kernel-supplied offset and length
// are checked against the mapping.
func (c *VCPU) IOData() ([]byte, error) {
	if c.run == nil {
		return nil, fmt.Errorf("IO data of vCPU %d: vCPU is closed", c.id)
	}
	_, size, port, count, off := c.run.IO()
	n := uint64(size) * uint64(count)
	if off > uint64(len(c.mem)) || n > uint64(len(c.mem))-off {
		return nil, fmt.Errorf("IO data of vCPU %d port %#x: %d bytes at offset %d overrun the %d-byte kvm_run mapping",
			c.id, port, n, off, len(c.mem))
	}
	return c.mem[off : off+n : off+n], nil
}

// Interrupt queues an external interrupt vector when there is no
// in-kernel irqchip (KVM_INTERRUPT).
func (c *VCPU) Interrupt(vector uint32) error {
	if _, err := ioctlPtr(c.fd, reqInterrupt, unsafe.Pointer(&vector)); err != nil {
		return fmt.Errorf("KVM_INTERRUPT vCPU %d vector %d: %w", c.id, vector, err)
	}
	return nil
}

// get and set run a fixed-size state ioctl on the vCPU.
func get[T any](c *VCPU, req uintptr, name string) (*T, error) {
	v := new(T)
	if _, err := ioctlPtr(c.fd, req, unsafe.Pointer(v)); err != nil {
		return nil, fmt.Errorf("%s vCPU %d: %w", name, c.id, err)
	}
	return v, nil
}

func set[T any](c *VCPU, req uintptr, name string, v *T) error {
	if _, err := ioctlPtr(c.fd, req, unsafe.Pointer(v)); err != nil {
		return fmt.Errorf("%s vCPU %d: %w", name, c.id, err)
	}
	return nil
}

// GetRegs reads the general-purpose registers.
func (c *VCPU) GetRegs() (*Regs, error) { return get[Regs](c, reqGetRegs, "KVM_GET_REGS") }

// SetRegs writes the general-purpose registers.
func (c *VCPU) SetRegs(r *Regs) error { return set(c, reqSetRegs, "KVM_SET_REGS", r) }

// GetSregs reads the segment and control registers.
func (c *VCPU) GetSregs() (*Sregs, error) { return get[Sregs](c, reqGetSregs, "KVM_GET_SREGS") }

// SetSregs writes the segment and control registers.
func (c *VCPU) SetSregs(s *Sregs) error { return set(c, reqSetSregs, "KVM_SET_SREGS", s) }

// GetFPU reads the legacy FPU/SSE state.
func (c *VCPU) GetFPU() (*FPU, error) { return get[FPU](c, reqGetFPU, "KVM_GET_FPU") }

// SetFPU writes the legacy FPU/SSE state.
func (c *VCPU) SetFPU(f *FPU) error { return set(c, reqSetFPU, "KVM_SET_FPU", f) }

// GetXSave reads the XSAVE area (first 4 KiB; enough unless AMX-like
// dynamic features were enabled, see CapXSave2).
func (c *VCPU) GetXSave() (*XSave, error) { return get[XSave](c, reqGetXSave, "KVM_GET_XSAVE") }

// SetXSave writes the XSAVE area.
func (c *VCPU) SetXSave(x *XSave) error { return set(c, reqSetXSave, "KVM_SET_XSAVE", x) }

// GetXCRS reads the extended control registers (XCR0).
func (c *VCPU) GetXCRS() (*XCRS, error) { return get[XCRS](c, reqGetXCRS, "KVM_GET_XCRS") }

// SetXCRS writes the extended control registers.
func (c *VCPU) SetXCRS(x *XCRS) error { return set(c, reqSetXCRS, "KVM_SET_XCRS", x) }

// GetLAPIC reads the local APIC registers (needs the in-kernel irqchip).
func (c *VCPU) GetLAPIC() (*LAPICState, error) {
	return get[LAPICState](c, reqGetLAPIC, "KVM_GET_LAPIC")
}

// SetLAPIC writes the local APIC registers.
func (c *VCPU) SetLAPIC(l *LAPICState) error { return set(c, reqSetLAPIC, "KVM_SET_LAPIC", l) }

// GetVCPUEvents reads pending and injected exceptions, interrupts, NMI, SMI.
func (c *VCPU) GetVCPUEvents() (*VCPUEvents, error) {
	return get[VCPUEvents](c, reqGetVCPUEvents, "KVM_GET_VCPU_EVENTS")
}

// SetVCPUEvents writes them; Flags selects the optional fields.
func (c *VCPU) SetVCPUEvents(e *VCPUEvents) error {
	return set(c, reqSetVCPUEvents, "KVM_SET_VCPU_EVENTS", e)
}

// GetMPState reads the multiprocessing state.
func (c *VCPU) GetMPState() (*MPState, error) {
	return get[MPState](c, reqGetMPState, "KVM_GET_MP_STATE")
}

// SetMPState writes the multiprocessing state.
func (c *VCPU) SetMPState(s *MPState) error { return set(c, reqSetMPState, "KVM_SET_MP_STATE", s) }

// GetDebugRegs reads DR0-3, DR6, DR7.
func (c *VCPU) GetDebugRegs() (*DebugRegs, error) {
	return get[DebugRegs](c, reqGetDebugRegs, "KVM_GET_DEBUGREGS")
}

// SetDebugRegs writes DR0-3, DR6, DR7.
func (c *VCPU) SetDebugRegs(d *DebugRegs) error {
	return set(c, reqSetDebugRegs, "KVM_SET_DEBUGREGS", d)
}

// msrsIoctl passes entries inside a struct kvm_msrs and returns how many
// the kernel processed, in order.
func (c *VCPU) msrsIoctl(req uintptr, entries []MSREntry) (int, error) {
	const hdr = unsafe.Sizeof(msrs{})
	const entSize = unsafe.Sizeof(MSREntry{})
	buf := make([]uint64, (hdr+uintptr(len(entries))*entSize)/8)
	(*msrs)(unsafe.Pointer(&buf[0])).NMSRs = uint32(len(entries))
	view := unsafe.Slice((*MSREntry)(unsafe.Add(unsafe.Pointer(&buf[0]), hdr)), len(entries))
	copy(view, entries)
	n, err := ioctlPtr(c.fd, req, unsafe.Pointer(&buf[0]))
	copy(entries, view)
	return n, err
}

// GetMSRs reads the given MSRs. It fails, naming the MSR, unless KVM reads
// every one of them.
func (c *VCPU) GetMSRs(indices []uint32) ([]MSREntry, error) {
	entries := make([]MSREntry, len(indices))
	for i, idx := range indices {
		entries[i].Index = idx
	}
	n, err := c.msrsIoctl(reqGetMSRs, entries)
	if err != nil {
		return nil, fmt.Errorf("KVM_GET_MSRS vCPU %d (%d MSRs): %w", c.id, len(indices), err)
	}
	if n < len(indices) {
		return nil, fmt.Errorf("KVM_GET_MSRS vCPU %d: read %d of %d MSRs; MSR %#x is not readable (not in MSRIndexList, or hidden by CPUID?)",
			c.id, n, len(indices), indices[n])
	}
	return entries, nil
}

// SetMSRs writes the given MSRs. It fails, naming the MSR, unless KVM
// accepts every one of them.
func (c *VCPU) SetMSRs(entries []MSREntry) error {
	tmp := append([]MSREntry(nil), entries...)
	n, err := c.msrsIoctl(reqSetMSRs, tmp)
	if err != nil {
		return fmt.Errorf("KVM_SET_MSRS vCPU %d (%d MSRs): %w", c.id, len(entries), err)
	}
	if n < len(entries) {
		return fmt.Errorf("KVM_SET_MSRS vCPU %d: wrote %d of %d MSRs; MSR %#x rejected value %#x",
			c.id, n, len(entries), entries[n].Index, entries[n].Data)
	}
	return nil
}

// SetCPUID2 sets the CPUID leaves the guest sees; call before the first Run.
func (c *VCPU) SetCPUID2(entries []CPUIDEntry2) error {
	if _, err := cpuidIoctl(c.fd, reqSetCPUID2, entries); err != nil {
		return fmt.Errorf("KVM_SET_CPUID2 vCPU %d (%d entries): %w", c.id, len(entries), err)
	}
	return nil
}

// GetCPUID2 returns the CPUID leaves set on the vCPU.
func (c *VCPU) GetCPUID2() ([]CPUIDEntry2, error) {
	var lastErr error
	for n := 64; n <= maxListEntries; n *= 2 {
		entries, err := cpuidIoctl(c.fd, reqGetCPUID2, make([]CPUIDEntry2, n))
		if errors.Is(err, unix.E2BIG) {
			lastErr = err
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("KVM_GET_CPUID2 vCPU %d: %w", c.id, err)
		}
		return entries, nil
	}
	return nil, fmt.Errorf("KVM_GET_CPUID2 vCPU %d: more than %d entries: %w", c.id, maxListEntries, lastErr)
}

// GetTSCKHz returns the guest TSC frequency.
func (c *VCPU) GetTSCKHz() (uint32, error) {
	v, err := ioctl(c.fd, reqGetTSCKHz, 0)
	if err != nil {
		return 0, fmt.Errorf("KVM_GET_TSC_KHZ vCPU %d: %w", c.id, err)
	}
	return uint32(v), nil
}

// SetTSCKHz sets the guest TSC frequency (needs CapTSCControl for values
// other than the host's).
func (c *VCPU) SetTSCKHz(khz uint32) error {
	if _, err := ioctl(c.fd, reqSetTSCKHz, uintptr(khz)); err != nil {
		return fmt.Errorf("KVM_SET_TSC_KHZ vCPU %d %d kHz: %w", c.id, khz, err)
	}
	return nil
}

// KVMClockCtrl tells the guest's kvmclock it was paused, so its soft-lockup
// watchdog does not fire (KVM_KVMCLOCK_CTRL). EINVAL if the guest has not
// enabled kvmclock.
func (c *VCPU) KVMClockCtrl() error {
	if _, err := ioctl(c.fd, reqKVMClockCtrl, 0); err != nil {
		return fmt.Errorf("KVM_KVMCLOCK_CTRL vCPU %d: %w", c.id, err)
	}
	return nil
}
