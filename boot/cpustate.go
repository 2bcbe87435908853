package boot

import "github.com/sietch-vm/sietch/kvm"

// Control register and EFER bits (Intel SDM Vol. 3A §2.5, §2.2.1).
const (
	cr0PE   = 1 << 0
	cr0ET   = 1 << 4
	cr0NE   = 1 << 5
	cr0PG   = 1 << 31
	cr4PAE  = 1 << 5
	eferLME = 1 << 8
	eferLMA = 1 << 10
	// rflagsReserved is bit 1, which always reads 1; IF is clear.
	rflagsReserved = 0x2
)

// Regs is the general-purpose register state at entry. Linux 64-bit entry
// (boot.rst, "64-bit Boot Protocol"): RIP at the entry, RSI the zero page.
// PVH: EIP at the entry, EBX the start_info.
func (l *Loaded) Regs() kvm.Regs {
	r := kvm.Regs{RIP: l.Entry, RFLAGS: rflagsReserved}
	if l.Mode == EntryPVH {
		r.RBX = l.BootInfo
		return r
	}
	r.RSI = l.BootInfo
	r.RSP, r.RBP = BootStack, BootStack
	return r
}

// Sregs takes the vCPU's current special registers and returns them set
// for entry. Fields this package does not own (APIC base, IDT, LDT, CR8,
// the interrupt bitmap) are kept.
//
// Linux 64-bit entry: long mode with paging on the identity map, CS the
// 64-bit code segment (SelectorCode64), the data segments SelectorData, TR a
// busy 64-bit TSS. PVH (xen docs/misc/pvh.pandoc): 32-bit protected mode,
// paging off, flat CS (SelectorCode32) and data segments, TR a busy 32-bit
// TSS at base 0.
func (l *Loaded) Sregs(s kvm.Sregs) kvm.Sregs {
	s.GDT = kvm.DTable{Base: GDTAddr, Limit: gdtSize - 1}
	s.DS, s.ES, s.FS, s.GS, s.SS = dataSeg, dataSeg, dataSeg, dataSeg, dataSeg
	s.TR = tssSeg(l.Mode)
	if l.Mode == EntryPVH {
		s.CS = code32Seg
		s.CR0 = cr0PE | cr0ET
		s.CR3, s.CR4, s.EFER = 0, 0, 0
		return s
	}
	s.CS = code64Seg
	s.CR0 = cr0PE | cr0ET | cr0NE | cr0PG
	s.CR3 = PML4Addr
	s.CR4 = cr4PAE
	s.EFER = eferLME | eferLMA
	return s
}
