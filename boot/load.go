package boot

import (
	"fmt"
	"strings"
)

// EntryMode says how the vCPU enters the kernel.
type EntryMode int

// Entry modes.
const (
	// EntryAuto picks the Linux 64-bit entry; PVH is never chosen
	// automatically.
	EntryAuto EntryMode = iota
	// EntryLinux64 is the Linux 64-bit boot protocol: long mode, RSI =
	// boot_params.
	EntryLinux64
	// EntryPVH is the Xen PVH ABI: 32-bit protected mode, EBX = start_info.
	// Only an ELF kernel with a XEN_ELFNOTE_PHYS32_ENTRY note has it.
	EntryPVH
)

func (e EntryMode) String() string {
	switch e {
	case EntryAuto:
		return "auto"
	case EntryLinux64:
		return "linux64"
	case EntryPVH:
		return "pvh"
	}
	return fmt.Sprintf("EntryMode(%d)", int(e))
}

// Params are the guest's boot parameters.
type Params struct {
	Cmdline string
	Initrd  []byte
	// MemSize is the guest's total RAM; 0 means len(low).
	MemSize uint64
	// CPUs is the number of vCPUs for the MP table; 0 means 1.
	CPUs  int
	Entry EntryMode
}

// Loaded is what Load placed and how to enter it.
type Loaded struct {
	// Mode is EntryLinux64 or EntryPVH.
	Mode EntryMode
	// Entry is RIP (EIP for PVH).
	Entry uint64
	// BootInfo is the zero page (RSI) for EntryLinux64, the PVH start_info
	// (RBX) for EntryPVH.
	BootInfo               uint64
	InitrdAddr, InitrdSize uint64
	KernelEnd              uint64
}

// initrdAlign is the initrd's alignment; boot.rst asks for page alignment.
const initrdAlign = 0x1000

// Load places the kernel parsed as img from data, the command line, the
// initrd and every boot structure into low (guest RAM from physical 0 up
// to the MMIO gap), and says how to enter. It writes nothing outside low
// and returns an error, wrapping ErrTooLarge when something does not fit.
func Load(low []byte, data []byte, img *Image, p Params) (*Loaded, error) {
	if img == nil || len(img.segments) == 0 {
		return nil, fmt.Errorf("load kernel: no parsed image; call ParseImage first")
	}
	memSize := p.MemSize
	if memSize == 0 {
		memSize = uint64(len(low))
	}
	m := guestMem(low[:min(uint64(len(low)), LowMemSize(memSize))])
	lowEnd := uint64(len(m))

	l := &Loaded{Mode: EntryLinux64, Entry: img.Entry64, BootInfo: ZeroPageAddr, KernelEnd: img.KernelEnd}
	switch p.Entry {
	case EntryAuto, EntryLinux64:
	case EntryPVH:
		if img.PVHEntry == 0 {
			return nil, errorf(ErrNoPVH, "the %s kernel has no XEN_ELFNOTE_PHYS32_ENTRY note; boot it with the Linux 64-bit entry (or build it with CONFIG_PVH=y and boot the ELF vmlinux)", img.Kind)
		}
		l.Mode, l.Entry = EntryPVH, img.PVHEntry
	default:
		return nil, fmt.Errorf("load kernel: unknown entry mode %d; use EntryAuto, EntryLinux64 or EntryPVH", int(p.Entry))
	}
	cpus := p.CPUs
	if cpus == 0 {
		cpus = 1
	}

	if img.KernelEnd > lowEnd {
		return nil, errorf(ErrTooLarge, "the kernel needs memory up to %#x but the guest has %#x bytes below the MMIO gap; give the VM more memory", img.KernelEnd, lowEnd)
	}
	if err := loadSegments(m, data, img.segments); err != nil {
		return nil, err
	}
	if err := writeCmdline(m, p.Cmdline, img.CmdlineSize); err != nil {
		return nil, err
	}
	if len(p.Initrd) > 0 {
		addr, err := placeInitrd(uint64(len(p.Initrd)), img, lowEnd)
		if err != nil {
			return nil, err
		}
		if err := m.write(addr, p.Initrd, "initrd"); err != nil {
			return nil, err
		}
		l.InitrdAddr, l.InitrdSize = addr, uint64(len(p.Initrd))
	}
	if err := writePageTables(m); err != nil {
		return nil, err
	}
	if err := writeGDT(m, l.Mode); err != nil {
		return nil, err
	}
	var err error
	if l.Mode == EntryPVH {
		err = writePVH(m, pvhInfo{initrdAddr: l.InitrdAddr, initrdSize: l.InitrdSize, memSize: memSize})
	} else {
		err = writeZeroPage(m, zeroPage{img: img, initrdAddr: l.InitrdAddr, initrdSize: l.InitrdSize, memSize: memSize})
	}
	if err != nil {
		return nil, err
	}
	if err := WriteMPTable(m, cpus); err != nil {
		return nil, err
	}
	return l, nil
}

// loadSegments copies each piece of the kernel to its physical address and
// zero-fills the rest of its memory size. data is checked again here: it
// is the caller's, and need not be what ParseImage saw.
func loadSegments(m guestMem, data []byte, segs []segment) error {
	n := uint64(len(data))
	for i, s := range segs {
		if s.fileOff > n || s.fileSize > n-s.fileOff || s.fileSize > s.memSize {
			return errorf(ErrTruncated, "kernel segment %d ends at byte %d but the file has %d bytes; pass Load the bytes given to ParseImage", i, s.fileOff+s.fileSize, n)
		}
		if s.paddr < HighMemStart {
			return errorf(ErrBadImage, "kernel segment %d loads at %#x, below 1 MiB", i, s.paddr)
		}
		r, err := m.region(s.paddr, s.memSize, fmt.Sprintf("kernel segment %d", i))
		if err != nil {
			return err
		}
		copy(r, data[s.fileOff:s.fileOff+s.fileSize])
		clear(r[s.fileSize:])
	}
	return nil
}

// writeCmdline places the NUL-terminated command line at CmdlineAddr.
func writeCmdline(m guestMem, cmdline string, kernelMax uint64) error {
	if strings.IndexByte(cmdline, 0) >= 0 {
		return fmt.Errorf("kernel command line contains a NUL byte at %d; remove it", strings.IndexByte(cmdline, 0))
	}
	limit := min(kernelMax, CmdlineMax-1)
	if uint64(len(cmdline)) > limit {
		return errorf(ErrTooLarge, "kernel command line is %d bytes; this kernel takes at most %d", len(cmdline), limit)
	}
	r, err := m.region(CmdlineAddr, CmdlineMax, "kernel command line")
	if err != nil {
		return err
	}
	clear(r)
	copy(r, cmdline)
	return nil
}

// placeInitrd picks the initrd's address: page-aligned, as high as it may
// go (below initrd_addr_max and the end of low memory), above the kernel
// (boot.rst, "initrd_addr_max" and "Sample Boot Configuration").
func placeInitrd(size uint64, img *Image, lowEnd uint64) (uint64, error) {
	top := lowEnd
	if img.InitrdAddrMax < top {
		top = img.InitrdAddrMax + 1
	}
	bottom := (img.KernelEnd + initrdAlign - 1) &^ (initrdAlign - 1)
	bottom = max(bottom, HighMemStart)
	if size > top || (top-size)&^(initrdAlign-1) < bottom {
		return 0, errorf(ErrTooLarge, "initrd of %d bytes does not fit between the kernel end (%#x) and %#x; give the VM more memory or use a smaller initrd", size, bottom, top)
	}
	return (top - size) &^ (initrdAlign - 1), nil
}
