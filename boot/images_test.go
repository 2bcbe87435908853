package boot

import "encoding/binary"

// Synthetic kernel images for the tests and fuzz seeds.

// bzOpts describes a synthetic bzImage; zero fields take working defaults.
type bzOpts struct {
	version     uint16
	setupSects  byte
	loadflags   byte
	xloadflags  uint16
	pmSize      int
	notReloc    bool
	align       uint32
	pref        uint64
	initSize    uint32
	cmdlineSize uint32
	initrdMax   uint32
	bootFlag    uint16
}

// makeBzImage builds a bzImage whose protected-mode part is a byte pattern.
func makeBzImage(o bzOpts) []byte {
	if o.version == 0 {
		o.version = 0x20f
	}
	if o.setupSects == 0 {
		o.setupSects = 2
	}
	if o.loadflags == 0 {
		o.loadflags = loadedHigh
	}
	if o.xloadflags == 0 {
		o.xloadflags = xlfKernel64 | 0x2 // XLF_CAN_BE_LOADED_ABOVE_4G too
	}
	if o.pmSize == 0 {
		o.pmSize = 0x1000
	}
	if o.bootFlag == 0 {
		o.bootFlag = bootFlag
	}
	pmOff := (int(o.setupSects) + 1) * 512
	b := make([]byte, pmOff+o.pmSize)
	le := binary.LittleEndian
	b[hdrStart] = o.setupSects
	le.PutUint32(b[hdrSyssize:], uint32(o.pmSize/16))
	le.PutUint16(b[hdrBootFlag:], o.bootFlag)
	b[hdrJump], b[hdrJump+1] = 0xeb, 0x66 // jmp to 0x268, the end of the header
	copy(b[hdrMagic:], "HdrS")
	le.PutUint16(b[hdrVersion:], o.version)
	b[hdrLoadflags] = o.loadflags
	le.PutUint32(b[hdrCode32Start:], HighMemStart)
	le.PutUint32(b[hdrInitrdAddrMax:], o.initrdMax)
	le.PutUint32(b[hdrKernelAlignment:], o.align)
	if !o.notReloc {
		b[hdrRelocatable] = 1
	}
	le.PutUint16(b[hdrXloadflags:], o.xloadflags)
	le.PutUint32(b[hdrCmdlineSize:], o.cmdlineSize)
	le.PutUint64(b[hdrPrefAddress:], o.pref)
	le.PutUint32(b[hdrInitSize:], o.initSize)
	for i := pmOff; i < len(b); i++ {
		b[i] = byte(i*7 + 1)
	}
	return b
}

// typicalBzImage looks like an x86-64 Linux bzImage: relocatable, 2 MiB
// alignment, running at 16 MiB with a 4 MiB init_size.
func typicalBzImage() []byte {
	return makeBzImage(bzOpts{align: 0x200000, pref: 0x1000000, initSize: 0x400000, cmdlineSize: 2047, initrdMax: 0x7fffffff})
}

// smallBzImage runs where it is loaded, so it fits a few MiB of RAM.
func smallBzImage() []byte {
	return makeBzImage(bzOpts{initSize: 0x2000, cmdlineSize: 255})
}

// elfSeg is one program header of a synthetic ELF file.
type elfSeg struct {
	typ          uint32
	paddr, vaddr uint64
	data         []byte
	memSize      uint64 // 0: len(data)
}

// elfOpts describes a synthetic ELF file.
type elfOpts struct {
	class   byte
	data    byte
	machine uint16
	typ     uint16
	entry   uint64
	segs    []elfSeg
}

// makeELF lays out the ELF header, the program headers, then each
// segment's bytes.
func makeELF(o elfOpts) []byte {
	if o.class == 0 {
		o.class = elfClass64
	}
	if o.data == 0 {
		o.data = elfDataLSB
	}
	if o.machine == 0 {
		o.machine = elfMachineX86
	}
	if o.typ == 0 {
		o.typ = elfTypeExec
	}
	le := binary.LittleEndian
	off := uint64(elfHeaderSize + elfPhdrSize*len(o.segs))
	b := make([]byte, off)
	copy(b, elfMagic)
	b[4], b[5], b[6] = o.class, o.data, 1
	le.PutUint16(b[16:], o.typ)
	le.PutUint16(b[18:], o.machine)
	le.PutUint32(b[20:], 1)
	le.PutUint64(b[24:], o.entry)
	le.PutUint64(b[32:], elfHeaderSize)
	le.PutUint16(b[52:], elfHeaderSize)
	le.PutUint16(b[54:], elfPhdrSize)
	le.PutUint16(b[56:], uint16(len(o.segs)))
	for i, s := range o.segs {
		ph := b[elfHeaderSize+i*elfPhdrSize:]
		mem := s.memSize
		if mem == 0 {
			mem = uint64(len(s.data))
		}
		vaddr := s.vaddr
		if vaddr == 0 {
			vaddr = s.paddr
		}
		le.PutUint32(ph[0:], s.typ)
		le.PutUint32(ph[4:], 7)
		le.PutUint64(ph[8:], off)
		le.PutUint64(ph[16:], vaddr)
		le.PutUint64(ph[24:], s.paddr)
		le.PutUint64(ph[32:], uint64(len(s.data)))
		le.PutUint64(ph[40:], mem)
		b = append(b, s.data...)
		off += uint64(len(s.data))
	}
	return b
}

// elfNote encodes one ELF note.
func elfNote(name string, typ uint32, desc []byte) []byte {
	le := binary.LittleEndian
	b := make([]byte, 12)
	le.PutUint32(b[0:], uint32(len(name)))
	le.PutUint32(b[4:], uint32(len(desc)))
	le.PutUint32(b[8:], typ)
	b = append(b, name...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	b = append(b, desc...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// pattern is n recognisable bytes.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*13)
	}
	return b
}

// guestELF is a test guest: code at 1 MiB, data plus BSS at 2 MiB.
func guestELF() []byte {
	return makeELF(elfOpts{entry: 0x100000, segs: []elfSeg{
		{typ: ptLoad, paddr: 0x100000, data: pattern(0x300, 1)},
		{typ: ptLoad, paddr: 0x200000, data: pattern(0x100, 2), memSize: 0x2000},
	}})
}

// vmlinuxELF looks like a Linux vmlinux with CONFIG_PVH: physical entry,
// high virtual addresses, and a 64-bit PVH note.
func vmlinuxELF() []byte {
	desc := make([]byte, 8)
	binary.LittleEndian.PutUint64(desc, 0x1000040)
	return makeELF(elfOpts{entry: 0x1000000, segs: []elfSeg{
		{typ: ptLoad, paddr: 0x1000000, vaddr: 0xffffffff81000000, data: pattern(0x800, 3)},
		{typ: ptLoad, paddr: 0x1200000, vaddr: 0xffffffff81200000, data: pattern(0x80, 4), memSize: 0x10000},
		{typ: ptNote, data: append(elfNote("GNU\x00", 3, pattern(20, 5)), elfNote("Xen\x00", xenNotePhys32Entry, desc)...)},
	}})
}
