package boot

// The fixed guest-physical layout. Everything below 1 MiB belongs to the
// VMM; kernels and test guests load at HighMemStart or above.
//
//	0x00000-0x004ff  left zero (real-mode IVT and BIOS data area)
//	0x00500-0x0052f  GDT (see gdt.go for the selectors)
//	0x00580-0x005e7  boot TSS (zero; TR points here in 64-bit mode)
//	0x07000-0x07fff  zero page (boot_params) or PVH start_info + lists
//	0x08000-0x08fef  boot stack (RSP = BootStack, grows down)
//	0x09000-0x0efff  identity page tables
//	0x20000-0x2ffff  kernel command line
//	0x9fc00-...      MP floating pointer and configuration table
//	0x100000-        kernel, then the initrd as high as it may go
const (
	// GDTAddr is where the boot GDT lives.
	GDTAddr = 0x500
	// BootTSSAddr is the base of the (zeroed, 104-byte) TSS that TR names
	// at the 64-bit entry; nothing uses it until the guest installs its own.
	BootTSSAddr = 0x580
	// ZeroPageAddr holds boot_params for the Linux 64-bit entry, or the PVH
	// hvm_start_info followed by its module list and memory map.
	ZeroPageAddr = 0x7000
	// BootStack is the initial RSP/RBP for the Linux 64-bit entry: the page
	// between the zero page and the page tables.
	BootStack = 0x8ff0
	// PML4Addr is the root of the identity map: PML4 at 0x9000, PDPT at
	// 0xa000 and four page directories at 0xb000-0xefff map the first 4 GiB
	// with 2 MiB pages, U/S=1 and R/W=1 on every entry so that CPL3 test
	// guests can use the same mapping.
	PML4Addr = 0x9000
	// CmdlineAddr is where the NUL-terminated kernel command line goes.
	CmdlineAddr = 0x20000
	// CmdlineMax is the room at CmdlineAddr, including the NUL.
	CmdlineMax = 0x10000
	// MPTableAddr is the Intel MP floating pointer, in the last KiB of base
	// memory where Linux looks for it (MP spec 1.4 §4); the configuration
	// table follows it directly.
	MPTableAddr = 0x9fc00
	// EBDAStart starts the range reported reserved in the e820 map, up to
	// 1 MiB (EBDA, VGA hole and BIOS area on a PC).
	EBDAStart = 0x9fc00
	// HighMemStart is 1 MiB, where kernels are loaded.
	HighMemStart = 0x100000
	// MMIOGapStart is 3 GiB: guest RAM beyond this much is placed at
	// MMIOGapEnd, leaving the gap for device MMIO (IOAPIC, LAPIC, virtio).
	MMIOGapStart = 0xc0000000
	// MMIOGapEnd is 4 GiB.
	MMIOGapEnd = 0x100000000
	// TSSAddr is the three-page region given to KVM_SET_TSS_ADDR (needed by
	// Intel VMX); it sits in the MMIO gap, below the IOAPIC and firmware.
	TSSAddr = 0xfffbd000
	// IdentityMapAddr is the page given to KVM_SET_IDENTITY_MAP_ADDR, just
	// below TSSAddr.
	IdentityMapAddr = 0xfffbc000
)

// E820 memory types (ACPI 6.5 §15, "Address Range Types").
const (
	E820RAM      = 1
	E820Reserved = 2
)

// E820Entry is one range of the guest's physical memory map.
type E820Entry struct {
	Addr, Size uint64
	Type       uint32
}

// LowMemSize is how much of memSize sits below the MMIO gap, that is the
// size of the slice Load and WriteMPTable get.
func LowMemSize(memSize uint64) uint64 {
	return min(memSize, MMIOGapStart)
}

// E820 is the guest memory map for memSize bytes of RAM: base memory up to
// EBDAStart, a reserved hole up to 1 MiB, RAM up to the MMIO gap, and the
// rest of RAM from 4 GiB.
func E820(memSize uint64) []E820Entry {
	low := LowMemSize(memSize)
	if low <= EBDAStart {
		if low == 0 {
			return nil
		}
		return []E820Entry{{Addr: 0, Size: low, Type: E820RAM}}
	}
	m := []E820Entry{
		{Addr: 0, Size: EBDAStart, Type: E820RAM},
		{Addr: EBDAStart, Size: HighMemStart - EBDAStart, Type: E820Reserved},
	}
	if low > HighMemStart {
		m = append(m, E820Entry{Addr: HighMemStart, Size: low - HighMemStart, Type: E820RAM})
	}
	if memSize > low {
		m = append(m, E820Entry{Addr: MMIOGapEnd, Size: memSize - low, Type: E820RAM})
	}
	return m
}
