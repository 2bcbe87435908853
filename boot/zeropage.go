package boot

// Offsets in struct boot_params, the zero page (arch/x86/include/uapi/
// asm/bootparam.h; Documentation/arch/x86/zero-page.rst). The setup header
// sits at hdrStart with the offsets in bzimage.go.
const (
	zpExtRamdiskImage = 0x0c0
	zpExtRamdiskSize  = 0x0c4
	zpExtCmdLinePtr   = 0x0c8
	zpE820Entries     = 0x1e8
	zpVidMode         = 0x1fa
	zpE820Table       = 0x2d0
	zpE820Max         = 128 // E820_MAX_ENTRIES_ZEROPAGE
	zpSize            = 0x1000
	e820EntrySize     = 20
	// heapEndPtr is the conventional end of the real-mode setup heap
	// (0xfe00) minus 0x200, as boot.rst asks; unused by the 64-bit entry
	// but expected with CAN_USE_HEAP.
	heapEndPtr = 0xfe00 - 0x200
	// loaderUndefined is type_of_loader 0xff: a boot loader with no
	// assigned id.
	loaderUndefined = 0xff
)

// zeroPage describes what goes into boot_params.
type zeroPage struct {
	img                    *Image
	initrdAddr, initrdSize uint64
	memSize                uint64
}

// writeZeroPage builds boot_params at ZeroPageAddr: the bzImage's own setup
// header (or one synthesized for an ELF kernel, as for protocol 2.12) with
// the loader's fields filled in, and the e820 map.
func writeZeroPage(m guestMem, z zeroPage) error {
	zp, err := m.region(ZeroPageAddr, zpSize, "zero page")
	if err != nil {
		return err
	}
	clear(zp)
	if h := z.img.setupHeader; len(h) > 0 {
		copy(zp[hdrStart:hdrEndMax], h)
	} else {
		le.PutUint16(zp[hdrBootFlag:], bootFlag)
		copy(zp[hdrMagic:], "HdrS")
		le.PutUint16(zp[hdrVersion:], minVersion)
		zp[hdrLoadflags] = loadedHigh
		le.PutUint32(zp[hdrCode32Start:], HighMemStart)
		le.PutUint32(zp[hdrInitrdAddrMax:], uint32(min(z.img.InitrdAddrMax, 0xffffffff)))
		le.PutUint16(zp[hdrXloadflags:], xlfKernel64)
		le.PutUint32(zp[hdrCmdlineSize:], uint32(min(z.img.CmdlineSize, 0xffffffff)))
	}
	le.PutUint16(zp[zpVidMode:], 0xffff) // "normal": no video mode change
	zp[hdrTypeOfLoader] = loaderUndefined
	zp[hdrLoadflags] |= loadedHigh | canUseHeap
	le.PutUint16(zp[hdrHeapEndPtr:], heapEndPtr)
	le.PutUint32(zp[hdrCmdLinePtr:], CmdlineAddr)
	le.PutUint32(zp[zpExtCmdLinePtr:], 0)
	// Everything boot places is below 4 GiB, so the ext_ (high 32 bits)
	// fields stay zero.
	le.PutUint32(zp[hdrRamdiskImage:], uint32(z.initrdAddr))
	le.PutUint32(zp[hdrRamdiskSize:], uint32(z.initrdSize))
	le.PutUint32(zp[zpExtRamdiskImage:], uint32(z.initrdAddr>>32))
	le.PutUint32(zp[zpExtRamdiskSize:], uint32(z.initrdSize>>32))

	e820 := E820(z.memSize)
	if len(e820) > zpE820Max {
		return errorf(ErrTooLarge, "%d e820 entries, the zero page holds %d", len(e820), zpE820Max)
	}
	zp[zpE820Entries] = byte(len(e820))
	for i, e := range e820 {
		b := zp[zpE820Table+i*e820EntrySize:]
		le.PutUint64(b[0:], e.Addr)
		le.PutUint64(b[8:], e.Size)
		le.PutUint32(b[16:], e.Type)
	}
	return nil
}
