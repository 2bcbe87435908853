package kvm

import (
	"testing"
)

// TestStateRoundTrips writes modified state through every get/set pair and
// reads it back, as snapshot and restore will.
func TestStateRoundTrips(t *testing.T) {
	g := newGuest(t, nil, guestOpts{irqchip: true})
	c, vm := g.cpu, g.vm

	cpuid, err := g.kvm.SupportedCPUID()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetCPUID2(cpuid); err != nil {
		t.Fatal(err)
	}
	t.Run("CPUID2", func(t *testing.T) {
		got, err := c.GetCPUID2()
		if err != nil {
			t.Fatal(err)
		}
		// KVM rewrites some leaves (0xd's XSAVE sizes, leaf 1's APIC ID and
		// OSXSAVE; this host ORs in host feature bits) and may drop leaves it
		// cannot honour (here: the AMX leaves 0x1d, 0x1e). What must hold:
		// no leaf appears that was not set, and leaf 0 (max leaf, vendor)
		// reads back exactly.
		set := map[[2]uint32]CPUIDEntry2{}
		for _, e := range cpuid {
			set[[2]uint32{e.Function, e.Index}] = e
		}
		seen := map[uint32]bool{}
		for _, e := range got {
			want, ok := set[[2]uint32{e.Function, e.Index}]
			if !ok {
				t.Errorf("leaf %#x.%d read back but was not set", e.Function, e.Index)
			}
			if e.Function == 0 && e != want {
				t.Errorf("leaf 0 read back as %+v, set %+v", e, want)
			}
			seen[e.Function] = true
		}
		if !seen[0] || !seen[1] || !seen[7] || len(got) < len(cpuid)-4 {
			t.Errorf("GetCPUID2 returned %d of %d leaves set, missing basic leaves", len(got), len(cpuid))
		}
	})

	t.Run("Regs", func(t *testing.T) {
		r, err := c.GetRegs()
		if err != nil {
			t.Fatal(err)
		}
		r.RAX, r.R15 = 0x1122334455667788, 0xfeed
		roundTrip(t, c.SetRegs, c.GetRegs, r)
	})
	t.Run("Sregs", func(t *testing.T) {
		s, err := c.GetSregs()
		if err != nil {
			t.Fatal(err)
		}
		s.CR2, s.GDT.Base, s.GDT.Limit = 0xdead000, 0x5000, 0x27
		roundTrip(t, c.SetSregs, c.GetSregs, s)
	})
	t.Run("FPU", func(t *testing.T) {
		f, err := c.GetFPU()
		if err != nil {
			t.Fatal(err)
		}
		// KVM_SET_FPU ignores MXCSR (and KVM_GET_FPU reports 0): leave it.
		f.XMM[3][0], f.FCW = 0x5a, 0x27f
		roundTrip(t, c.SetFPU, c.GetFPU, f)
	})
	t.Run("XSave", func(t *testing.T) {
		if v, _ := g.kvm.CheckExtension(CapXSave); v == 0 {
			t.Skip("CapXSave unsupported")
		}
		x, err := c.GetXSave()
		if err != nil {
			t.Fatal(err)
		}
		// XMM0 sits at byte 160 of the legacy area; it only counts with the
		// SSE bit set in XSTATE_BV (byte 512), SDM Vol. 1 §13.4.2.
		x.Region[160/4] = 0xabcd
		x.Region[512/4] |= 1 << 1
		roundTrip(t, c.SetXSave, c.GetXSave, x)
	})
	t.Run("XCRS", func(t *testing.T) {
		if v, _ := g.kvm.CheckExtension(CapXCRS); v == 0 {
			t.Skip("CapXCRS unsupported")
		}
		x, err := c.GetXCRS()
		if err != nil {
			t.Fatal(err)
		}
		if x.NrXCRs < 1 || x.XCRs[0].Value&1 == 0 {
			t.Fatalf("XCR0 = %#x (%d XCRs); want x87 bit set", x.XCRs[0].Value, x.NrXCRs)
		}
		roundTrip(t, c.SetXCRS, c.GetXCRS, x)
	})
	t.Run("MSRs", func(t *testing.T) {
		list, err := g.kvm.MSRIndexList()
		if err != nil {
			t.Fatal(err)
		}
		entries, err := c.GetMSRs(list)
		if err != nil {
			t.Fatal(err)
		}
		for i, e := range entries {
			if e.Index != list[i] {
				t.Fatalf("entry %d is MSR %#x, asked %#x", i, e.Index, list[i])
			}
		}
		one, err := c.GetMSRs([]uint32{msrLSTAR})
		if err != nil {
			t.Fatal(err)
		}
		one[0].Data = 0xffffffff81000000
		got := roundTripGet(t, c.SetMSRs, func() ([]MSREntry, error) { return c.GetMSRs([]uint32{msrLSTAR}) }, one)
		if got[0] != one[0] {
			t.Fatalf("LSTAR = %#x after setting %#x", got[0].Data, one[0].Data)
		}
	})
	t.Run("LAPIC", func(t *testing.T) {
		l, err := c.GetLAPIC()
		if err != nil {
			t.Fatal(err)
		}
		l.Regs[0x80] = 0x20 // task priority register; the APIC derives PPR from it
		got := roundTripGet(t, c.SetLAPIC, c.GetLAPIC, l)
		if got.Regs[0x80] != 0x20 || [4]byte(got.Regs[0x20:0x24]) != [4]byte(l.Regs[0x20:0x24]) {
			t.Fatalf("TPR %#x, APIC ID %x after set; want 0x20, %x", got.Regs[0x80], got.Regs[0x20:0x24], l.Regs[0x20:0x24])
		}
	})
	t.Run("VCPUEvents", func(t *testing.T) {
		e, err := c.GetVCPUEvents()
		if err != nil {
			t.Fatal(err)
		}
		e.NMI.Masked = 1
		e.Flags &^= VCPUEventValidNMIPending | VCPUEventValidSIPIVector | VCPUEventValidSMM
		got := roundTripGet(t, c.SetVCPUEvents, c.GetVCPUEvents, e)
		if got.NMI.Masked != 1 {
			t.Fatalf("NMI.Masked = %d after set, want 1", got.NMI.Masked)
		}
	})
	t.Run("MPState", func(t *testing.T) {
		roundTrip(t, c.SetMPState, c.GetMPState, &MPState{State: MPStateHalted})
		roundTrip(t, c.SetMPState, c.GetMPState, &MPState{State: MPStateRunnable})
	})
	t.Run("DebugRegs", func(t *testing.T) {
		d, err := c.GetDebugRegs()
		if err != nil {
			t.Fatal(err)
		}
		d.DB[0], d.DB[3] = 0x1000, 0x2000
		d.Flags = 0
		roundTrip(t, c.SetDebugRegs, c.GetDebugRegs, d)
	})
	t.Run("TSCKHz", func(t *testing.T) {
		khz, err := c.GetTSCKHz()
		if err != nil {
			t.Fatal(err)
		}
		if khz == 0 {
			t.Fatal("TSC frequency 0 kHz")
		}
		if err := c.SetTSCKHz(khz); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("Clock", func(t *testing.T) {
		const want = 1_000_000_000_000 // 1000 s of guest time
		if err := vm.SetClock(&ClockData{Clock: want}); err != nil {
			t.Fatal(err)
		}
		got, err := vm.GetClock()
		if err != nil {
			t.Fatal(err)
		}
		if got.Clock < want || got.Clock > want+10_000_000_000 {
			t.Fatalf("clock %d ns after setting %d", got.Clock, uint64(want))
		}
	})
	t.Run("PIT2", func(t *testing.T) {
		p, err := vm.GetPIT2()
		if err != nil {
			t.Fatal(err)
		}
		p.Channels[2].Gate = 1
		p.Channels[2].Mode = 3
		got := roundTripGet(t, vm.SetPIT2, vm.GetPIT2, p)
		if got.Channels[2].Mode != 3 || got.Channels[2].Gate != 1 {
			t.Fatalf("PIT channel 2 mode %d gate %d after set, want 3 1", got.Channels[2].Mode, got.Channels[2].Gate)
		}
	})
	t.Run("IRQChip", func(t *testing.T) {
		for _, id := range []uint32{IRQChipPICMaster, IRQChipPICSlave, IRQChipIOAPIC} {
			chip := &IRQChip{ChipID: id}
			if err := vm.GetIRQChip(chip); err != nil {
				t.Fatal(err)
			}
			// PIC: byte 4 is the IMR; IOAPIC: byte 0 is the base address's low byte, so
			// change the IOAPIC id (byte 8) instead.
			if id == IRQChipIOAPIC {
				chip.Chip[8] = 3
			} else {
				chip.Chip[4] ^= 0x0f
			}
			roundTrip(t, vm.SetIRQChip, func() (*IRQChip, error) {
				c := &IRQChip{ChipID: id}
				return c, vm.GetIRQChip(c)
			}, chip)
		}
	})
	t.Run("IRQLineAndIRQFD", func(t *testing.T) {
		if err := vm.IRQLine(4, 1); err != nil {
			t.Fatal(err)
		}
		if err := vm.IRQLine(4, 0); err != nil {
			t.Fatal(err)
		}
		efd := newEventFD(t)
		f := &IRQFD{FD: uint32(efd), GSI: 5}
		if err := vm.IRQFD(f); err != nil {
			t.Fatal(err)
		}
		f.Flags = IRQFDFlagDeassign
		if err := vm.IRQFD(f); err != nil {
			t.Fatal(err)
		}
	})
}

// roundTrip sets want, reads it back and fails unless the two are equal.
func roundTrip[T comparable, P interface{ *T }](t *testing.T, set func(P) error, get func() (P, error), want P) {
	t.Helper()
	got := roundTripGet(t, set, get, want)
	if *got != *want {
		t.Fatalf("read back %+v\nwant       %+v", *got, *want)
	}
}

func roundTripGet[P any](t *testing.T, set func(P) error, get func() (P, error), v P) P {
	t.Helper()
	if err := set(v); err != nil {
		t.Fatal(err)
	}
	got, err := get()
	if err != nil {
		t.Fatal(err)
	}
	return got
}
