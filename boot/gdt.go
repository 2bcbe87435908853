package boot

import "github.com/sietch-vm/sietch/kvm"

// Boot GDT selectors. 0x10 and 0x18 are Linux's __BOOT_CS and __BOOT_DS
// (arch/x86/include/asm/segment.h), which the 64-bit entry expects.
const (
	// SelectorCode32 is a flat 32-bit code segment, CS at the PVH entry.
	SelectorCode32 = 0x08
	// SelectorCode64 is the 64-bit kernel code segment, CS at the Linux
	// 64-bit entry.
	SelectorCode64 = 0x10
	// SelectorData is a flat read/write data segment, DS/ES/FS/GS/SS.
	SelectorData = 0x18
	// SelectorTSS is the busy TSS that TR names: a 16-byte 64-bit TSS
	// descriptor at BootTSSAddr for the Linux entry, an 8-byte 32-bit one
	// with base 0 for PVH (as the PVH ABI asks).
	SelectorTSS = 0x20
	// gdtSize covers the null descriptor, the three segments and the
	// 16-byte TSS descriptor.
	gdtSize = 0x30
	// tssLimit is the size of a TSS without an I/O bitmap, minus one.
	tssLimit = 0x67
)

// Segment types (Intel SDM Vol. 3A §3.4.5.1 and §3.5, Table 3-2).
const (
	typeCodeExecReadAccessed = 0xb
	typeDataReadWriteAccess  = 0x3
	typeTSSBusy              = 0xb
)

var (
	code32Seg = kvm.Segment{Limit: 0xffffffff, Selector: SelectorCode32, Type: typeCodeExecReadAccessed, Present: 1, S: 1, DB: 1, G: 1}
	code64Seg = kvm.Segment{Limit: 0xffffffff, Selector: SelectorCode64, Type: typeCodeExecReadAccessed, Present: 1, S: 1, L: 1, G: 1}
	dataSeg   = kvm.Segment{Limit: 0xffffffff, Selector: SelectorData, Type: typeDataReadWriteAccess, Present: 1, S: 1, DB: 1, G: 1}
)

// tssSeg is TR for the mode: PVH wants a 32-bit TSS at base 0, limit 0x67;
// the Linux entry gets a real (zeroed) TSS at BootTSSAddr.
func tssSeg(mode EntryMode) kvm.Segment {
	s := kvm.Segment{Limit: tssLimit, Selector: SelectorTSS, Type: typeTSSBusy, Present: 1}
	if mode != EntryPVH {
		s.Base = BootTSSAddr
	}
	return s
}

// descriptor encodes a segment as an 8-byte GDT descriptor (SDM Vol. 3A
// §3.4.5, Figure 3-8). A granular limit is stored in 4 KiB units.
func descriptor(s kvm.Segment) uint64 {
	limit := uint64(s.Limit)
	if s.G != 0 {
		limit >>= 12
	}
	access := uint64(s.Type&0xf) | uint64(s.S&1)<<4 | uint64(s.DPL&3)<<5 | uint64(s.Present&1)<<7
	flags := uint64(s.AVL&1) | uint64(s.L&1)<<1 | uint64(s.DB&1)<<2 | uint64(s.G&1)<<3
	return limit&0xffff | (s.Base&0xffffff)<<16 | access<<40 | (limit>>16&0xf)<<48 | flags<<52 | (s.Base>>24&0xff)<<56
}

// writeGDT writes the boot GDT and zeroes the boot TSS.
func writeGDT(m guestMem, mode EntryMode) error {
	gdt, err := m.region(GDTAddr, gdtSize, "GDT")
	if err != nil {
		return err
	}
	clear(gdt)
	le.PutUint64(gdt[SelectorCode32:], descriptor(code32Seg))
	le.PutUint64(gdt[SelectorCode64:], descriptor(code64Seg))
	le.PutUint64(gdt[SelectorData:], descriptor(dataSeg))
	tss := tssSeg(mode)
	le.PutUint64(gdt[SelectorTSS:], descriptor(tss))
	if mode != EntryPVH {
		// A system descriptor in long mode is 16 bytes: base 63:32 follows
		// (SDM Vol. 3A §8.2.3, Figure 8-4).
		le.PutUint64(gdt[SelectorTSS+8:], tss.Base>>32)
	}
	return m.zero(BootTSSAddr, tssLimit+1, "boot TSS")
}
