package boot

// ELF64 constants (System V gABI, "ELF Header" and "Program Header"; the
// x86-64 psABI for EM_X86_64).
const (
	elfMagic      = "\x7fELF"
	elfHeaderSize = 64
	elfPhdrSize   = 56
	elfClass64    = 2
	elfDataLSB    = 1
	elfTypeExec   = 2
	elfMachineX86 = 62 // EM_X86_64
	ptLoad        = 1
	ptNote        = 4
	// xenNotePhys32Entry is XEN_ELFNOTE_PHYS32_ENTRY
	// (xen/include/public/elfnote.h): the PVH 32-bit entry point.
	xenNotePhys32Entry = 18
	// elfInitrdAddrMax is where an ELF kernel's initrd may go at most: a
	// vmlinux has no setup header saying so, and x86-64 Linux takes 2 GiB.
	elfInitrdAddrMax = 0x7fffffff
)

// parseELF reads an ELF64 x86-64 executable: its PT_LOAD segments, its
// entry point and the PVH entry note, if any.
func parseELF(data []byte) (*Image, error) {
	n := uint64(len(data))
	if n < 20 {
		return nil, truncated("ELF identification", 20, n)
	}
	if c := data[4]; c != elfClass64 {
		return nil, errorf(ErrNotX86, "ELF class is %d (32-bit); sietch boots 64-bit (ELFCLASS64) kernels", c)
	}
	if d := data[5]; d != elfDataLSB {
		return nil, errorf(ErrNotX86, "ELF data encoding is %d; x86-64 files are little-endian (ELFDATA2LSB)", d)
	}
	if m := le.Uint16(data[18:]); m != elfMachineX86 {
		return nil, errorf(ErrNotX86, "ELF machine is %d, not x86-64 (%d)", m, elfMachineX86)
	}
	if n < elfHeaderSize {
		return nil, truncated("ELF header", elfHeaderSize, n)
	}
	if t := le.Uint16(data[16:]); t != elfTypeExec {
		return nil, errorf(ErrBadImage, "ELF type is %d, not an executable (ET_EXEC); link the kernel statically at a fixed address", t)
	}
	entry := le.Uint64(data[24:])
	phoff := le.Uint64(data[32:])
	phentsize := uint64(le.Uint16(data[54:]))
	phnum := uint64(le.Uint16(data[56:]))
	if phnum == 0 {
		return nil, errorf(ErrBadImage, "ELF file has no program headers")
	}
	if phentsize != elfPhdrSize {
		return nil, errorf(ErrBadImage, "ELF program header size is %d, want %d", phentsize, elfPhdrSize)
	}

	img := &Image{
		Kind:          KindELF,
		InitrdAddrMax: elfInitrdAddrMax,
		CmdlineSize:   CmdlineMax - 1,
	}
	// The whole table first, so a cut file is reported as such.
	if phoff > n || phnum*elfPhdrSize > n-phoff {
		i := uint64(0)
		if phoff <= n {
			i = (n - phoff) / elfPhdrSize
		}
		return nil, errorf(ErrTruncated, "ELF program header %d ends at byte %d but the file has %d bytes", i, phoff+(i+1)*elfPhdrSize, n)
	}
	var vaddrs []uint64
	var notes [][]byte
	for i := range phnum {
		off := phoff + i*elfPhdrSize
		ph := data[off : off+elfPhdrSize]
		typ := le.Uint32(ph[0:])
		fileOff, fileSize := le.Uint64(ph[8:]), le.Uint64(ph[32:])
		if typ != ptLoad && typ != ptNote {
			continue
		}
		if fileOff > n || fileSize > n-fileOff {
			return nil, errorf(ErrTruncated, "ELF segment %d ends at byte %d but the file has %d bytes", i, fileOff+fileSize, n)
		}
		if typ == ptNote {
			notes = append(notes, data[fileOff:fileOff+fileSize])
			continue
		}
		s := segment{fileOff: fileOff, fileSize: fileSize, paddr: le.Uint64(ph[24:]), memSize: le.Uint64(ph[40:])}
		if s.fileSize > s.memSize {
			return nil, errorf(ErrBadImage, "ELF segment %d has more bytes in the file (%d) than in memory (%d)", i, s.fileSize, s.memSize)
		}
		img.segments = append(img.segments, s)
		vaddrs = append(vaddrs, le.Uint64(ph[16:]))
	}
	if len(img.segments) == 0 {
		return nil, errorf(ErrBadImage, "ELF file has no loadable (PT_LOAD) segment")
	}
	if err := checkSegments(img.segments); err != nil {
		return nil, err
	}
	for _, s := range img.segments {
		img.KernelEnd = max(img.KernelEnd, s.paddr+s.memSize)
	}

	// e_entry is physical in a vmlinux (ENTRY(phys_startup_64)); a file
	// linked with a high virtual entry is translated through the segment
	// that contains it.
	var ok bool
	if img.Entry64, ok = physEntry(img.segments, vaddrs, entry); !ok {
		return nil, errorf(ErrBadImage, "ELF entry point %#x is outside every loadable segment", entry)
	}
	for _, note := range notes {
		pvh, found, err := findPVHNote(note)
		if err != nil {
			return nil, err
		}
		if !found {
			continue
		}
		if !inSegment(img.segments, pvh) {
			return nil, errorf(ErrBadImage, "PVH entry point %#x (XEN_ELFNOTE_PHYS32_ENTRY) is outside every loadable segment", pvh)
		}
		img.PVHEntry = pvh
		break
	}
	return img, nil
}

// physEntry translates e_entry into a physical address: as is if it lies
// in a segment's physical range, else through the segment whose virtual
// range holds it.
func physEntry(segs []segment, vaddrs []uint64, entry uint64) (uint64, bool) {
	if inSegment(segs, entry) {
		return entry, true
	}
	for i, s := range segs {
		if v := vaddrs[i]; entry >= v && entry-v < s.memSize {
			return s.paddr + (entry - v), true
		}
	}
	return 0, false
}

func inSegment(segs []segment, addr uint64) bool {
	for _, s := range segs {
		if addr >= s.paddr && addr-s.paddr < s.memSize {
			return true
		}
	}
	return false
}

// findPVHNote walks one PT_NOTE segment (gABI "Note Section": namesz,
// descsz, type, then name and desc each padded to 4 bytes) for the Xen
// PHYS32_ENTRY note. Linux emits its desc as a 64-bit value, Xen's own
// documentation as 32-bit; both are accepted.
func findPVHNote(b []byte) (entry uint64, found bool, err error) {
	for len(b) > 0 {
		if len(b) < 12 {
			return 0, false, errorf(ErrBadImage, "ELF note header is cut short: %d bytes left in the PT_NOTE segment", len(b))
		}
		namesz, descsz, typ := uint64(le.Uint32(b[0:])), uint64(le.Uint32(b[4:])), le.Uint32(b[8:])
		nameEnd := 12 + (namesz+3)&^3
		descEnd := nameEnd + (descsz+3)&^3
		if descEnd > uint64(len(b)) {
			return 0, false, errorf(ErrBadImage, "ELF note (type %d) of %d bytes overruns its PT_NOTE segment of %d bytes", typ, descEnd, len(b))
		}
		name, desc := b[12:12+namesz], b[nameEnd:nameEnd+descsz]
		if typ == xenNotePhys32Entry && string(name) == "Xen\x00" {
			switch descsz {
			case 4:
				entry = uint64(le.Uint32(desc))
			case 8:
				entry = le.Uint64(desc)
			default:
				return 0, false, errorf(ErrBadImage, "PVH entry note has a %d-byte value, want 4 or 8", descsz)
			}
			if entry == 0 || entry > 0xffffffff {
				return 0, false, errorf(ErrBadImage, "PVH entry point %#x is not a 32-bit physical address", entry)
			}
			return entry, true, nil
		}
		b = b[descEnd:]
	}
	return 0, false, nil
}
