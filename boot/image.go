package boot

import (
	"bytes"
	"fmt"
)

// Kind is the format of a kernel image.
type Kind int

// Kernel image formats ParseImage understands.
const (
	// KindBzImage is a Linux bzImage (Documentation/arch/x86/boot.rst).
	KindBzImage Kind = iota + 1
	// KindELF is an ELF64 x86-64 executable: an uncompressed vmlinux or a
	// test guest.
	KindELF
)

func (k Kind) String() string {
	switch k {
	case KindBzImage:
		return "bzImage"
	case KindELF:
		return "ELF"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Image describes a parsed kernel image: where its pieces go and what it
// accepts. It refers to the bytes given to ParseImage, which must be passed
// unchanged to Load.
type Image struct {
	Kind Kind
	// Entry64 is the physical 64-bit entry point: the load address + 0x200
	// for a bzImage, e_entry (translated to physical) for an ELF file.
	Entry64 uint64
	// PVHEntry is the 32-bit PVH entry from the XEN_ELFNOTE_PHYS32_ENTRY
	// note, 0 if there is none (always 0 for a bzImage).
	PVHEntry uint64
	// Version is the bzImage boot protocol version (0x20c is 2.12); 0 for
	// ELF.
	Version uint16
	// InitrdAddrMax is the highest address the initrd may occupy.
	InitrdAddrMax uint64
	// CmdlineSize is the longest command line the kernel takes, without
	// the NUL.
	CmdlineSize uint64
	// KernelEnd is one past the highest physical byte the kernel occupies,
	// including the room a bzImage needs to decompress itself (init_size).
	KernelEnd uint64

	// segments are the pieces of the file to copy into guest memory.
	segments []segment
	// setupHeader is the bzImage's setup header, copied into the zero page
	// at offset 0x1f1 (nil for ELF).
	setupHeader []byte
}

// segment is one piece of the image file loaded at a physical address;
// memSize beyond fileSize is zero-filled.
type segment struct {
	fileOff, fileSize uint64
	paddr, memSize    uint64
}

// ParseImage recognises a bzImage or an ELF64 x86-64 kernel and checks that
// it can be loaded below the MMIO gap. Errors wrap ErrTruncated, ErrNotX86,
// ErrProtocolTooOld, ErrTooLarge or ErrBadImage.
func ParseImage(data []byte) (*Image, error) {
	switch {
	case bytes.HasPrefix(data, []byte(elfMagic)):
		return parseELF(data)
	case len(data) >= hdrVersion && string(data[hdrMagic:hdrVersion]) == "HdrS":
		return parseBzImage(data)
	}
	return nil, errorf(ErrNotX86, "the file (%d bytes) is neither a bzImage (no \"HdrS\" at byte 0x202) nor an ELF file", len(data))
}

// checkSegments verifies that the loadable pieces lie above the boot
// structures, end below the MMIO gap, and do not overlap each other.
func checkSegments(segs []segment) error {
	for i, s := range segs {
		end := s.paddr + s.memSize
		if end < s.paddr {
			return errorf(ErrBadImage, "segment %d at %#x with size %#x wraps around the address space", i, s.paddr, s.memSize)
		}
		if s.paddr < HighMemStart {
			return errorf(ErrBadImage, "segment %d loads at %#x, below 1 MiB where the boot structures live; link the kernel at 0x100000 or above", i, s.paddr)
		}
		if end > MMIOGapStart {
			return errorf(ErrTooLarge, "segment %d needs memory up to %#x, beyond the %#x bytes of RAM below the MMIO gap", i, end, MMIOGapStart)
		}
		for j := range i {
			o := segs[j]
			if s.memSize > 0 && o.memSize > 0 && s.paddr < o.paddr+o.memSize && o.paddr < end {
				return errorf(ErrBadImage, "segments %d and %d overlap at %#x", j, i, max(s.paddr, o.paddr))
			}
		}
	}
	return nil
}
