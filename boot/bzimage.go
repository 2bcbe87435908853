package boot

import "math/bits"

// Offsets of setup header fields, in the file and in the zero page alike
// (Documentation/arch/x86/boot.rst, "The Real-Mode Kernel Header").
const (
	hdrStart           = 0x1f1 // setup_sects: first byte of the header
	hdrSyssize         = 0x1f4
	hdrBootFlag        = 0x1fe
	hdrJump            = 0x200
	hdrMagic           = 0x202 // "HdrS"
	hdrVersion         = 0x206
	hdrTypeOfLoader    = 0x210
	hdrLoadflags       = 0x211
	hdrCode32Start     = 0x214
	hdrRamdiskImage    = 0x218
	hdrRamdiskSize     = 0x21c
	hdrHeapEndPtr      = 0x224
	hdrCmdLinePtr      = 0x228
	hdrInitrdAddrMax   = 0x22c
	hdrKernelAlignment = 0x230
	hdrRelocatable     = 0x234
	hdrXloadflags      = 0x236
	hdrCmdlineSize     = 0x238
	hdrPrefAddress     = 0x258
	hdrInitSize        = 0x260
	hdrEnd212          = 0x268 // end of the fields protocol 2.12 defines
	hdrEndMax          = 0x290 // the header may grow up to edd_mbr_sig_buffer
)

// Header flag bits.
const (
	loadedHigh  = 0x01 // loadflags LOADED_HIGH: protected-mode code at 1 MiB
	canUseHeap  = 0x80 // loadflags CAN_USE_HEAP: heap_end_ptr is valid
	xlfKernel64 = 0x01 // xloadflags XLF_KERNEL_64: 64-bit entry at +0x200
	bootFlag    = 0xaa55
	// minVersion is 2.12: the first protocol with xloadflags, which is how
	// a kernel says it has the 64-bit entry point.
	minVersion = 0x20c
)

// parseBzImage reads the setup header of a bzImage. The protected-mode part
// is always loaded at 1 MiB; KernelEnd accounts for where a relocatable or
// fixed kernel decompresses itself (pref_address, kernel_alignment,
// init_size), so nothing else is placed there.
func parseBzImage(data []byte) (*Image, error) {
	n := uint64(len(data))
	if n < hdrVersion+2 {
		return nil, truncated("bzImage header version field", hdrVersion+2, n)
	}
	if v := le.Uint16(data[hdrVersion:]); v < minVersion {
		return nil, errorf(ErrProtocolTooOld, "bzImage uses boot protocol %d.%02d; sietch needs %d.%02d or newer with the 64-bit entry point (Linux 3.8+)", v>>8, v&0xff, minVersion>>8, minVersion&0xff)
	}
	if n < hdrEnd212 {
		return nil, truncated("bzImage setup header", hdrEnd212, n)
	}
	if f := le.Uint16(data[hdrBootFlag:]); f != bootFlag {
		return nil, errorf(ErrBadImage, "bzImage boot_flag is %#x, want 0xaa55", f)
	}
	if data[hdrLoadflags]&loadedHigh == 0 {
		return nil, errorf(ErrBadImage, "image is a zImage (LOADED_HIGH clear), which loads at 0x10000; only bzImage is supported")
	}
	if le.Uint16(data[hdrXloadflags:])&xlfKernel64 == 0 {
		return nil, errorf(ErrProtocolTooOld, "bzImage has no 64-bit entry point (XLF_KERNEL_64 clear in xloadflags); build a 64-bit kernel")
	}

	setupSects := uint64(data[hdrStart])
	if setupSects == 0 {
		setupSects = 4 // boot.rst: "If this field is 0, the real value is 4."
	}
	pmOff := (setupSects + 1) * 512
	if pmOff >= n {
		return nil, truncated("bzImage setup code", pmOff, n)
	}
	if sys := uint64(le.Uint32(data[hdrSyssize:])) * 16; pmOff+sys > n {
		return nil, truncated("bzImage protected-mode kernel (syssize)", pmOff+sys, n)
	}
	pmSize := n - pmOff
	if pmSize <= 0x200 {
		return nil, truncated("bzImage 64-bit entry point", pmOff+0x201, n)
	}

	const load = HighMemStart
	relocatable := data[hdrRelocatable] != 0
	align := uint64(le.Uint32(data[hdrKernelAlignment:]))
	pref := le.Uint64(data[hdrPrefAddress:])
	initSize := uint64(le.Uint32(data[hdrInitSize:]))
	// Where the kernel runs after decompressing itself: a relocatable
	// kernel at its load address rounded up to kernel_alignment but not
	// below pref_address (LOAD_PHYSICAL_ADDR), a fixed one at pref_address.
	runAt := uint64(load)
	if relocatable && align > 1 && bits.OnesCount64(align) == 1 {
		runAt = (load + align - 1) &^ (align - 1)
	}
	if pref > runAt || !relocatable && pref != 0 {
		runAt = pref
	}
	end := max(load+pmSize, runAt+initSize)
	if end < runAt || runAt >= MMIOGapStart || end > MMIOGapStart {
		return nil, errorf(ErrTooLarge, "bzImage needs memory up to %#x (runs at %#x, init_size %#x), beyond the %#x bytes of RAM below the MMIO gap", runAt+initSize, runAt, initSize, MMIOGapStart)
	}

	hdrEnd := uint64(hdrJump+2) + uint64(data[hdrJump+1])
	hdrEnd = min(max(hdrEnd, hdrEnd212), hdrEndMax, n)
	initrdMax := uint64(le.Uint32(data[hdrInitrdAddrMax:]))
	if initrdMax == 0 {
		initrdMax = 0x37ffffff // boot.rst: the value before protocol 2.03
	}
	cmdlineSize := uint64(le.Uint32(data[hdrCmdlineSize:]))
	if cmdlineSize == 0 {
		cmdlineSize = 255 // boot.rst: the limit before protocol 2.06
	}
	return &Image{
		Kind:          KindBzImage,
		Entry64:       load + 0x200,
		Version:       le.Uint16(data[hdrVersion:]),
		InitrdAddrMax: initrdMax,
		CmdlineSize:   cmdlineSize,
		KernelEnd:     end,
		segments:      []segment{{fileOff: pmOff, fileSize: pmSize, paddr: load, memSize: pmSize}},
		setupHeader:   append([]byte(nil), data[hdrStart:hdrEnd]...),
	}, nil
}

// truncated reports a structure that ends past the end of the file.
func truncated(what string, end, size uint64) error {
	return errorf(ErrTruncated, "%s ends at byte %d but the file has %d bytes", what, end, size)
}
