package boot

// PVH start-of-day structures (xen/include/public/arch-x86/hvm/
// start_info.h), placed at ZeroPageAddr: hvm_start_info, then the module
// list, then the memory map.
const (
	pvhMagic           = 0x336ec578 // XEN_HVM_START_MAGIC_VALUE
	pvhVersion         = 1          // version 1 adds the memory map
	pvhStartInfoSize   = 56
	pvhModlistOff      = 0x40
	pvhModEntrySize    = 32
	pvhMemmapOff       = 0x80
	pvhMemmapEntrySize = 24
	pvhMemmapMax       = (zpSize - pvhMemmapOff) / pvhMemmapEntrySize
)

// pvhInfo describes what goes into start_info.
type pvhInfo struct {
	initrdAddr, initrdSize uint64
	memSize                uint64
}

// writePVH builds hvm_start_info with the command line, the initrd as the
// first module, and the e820 map as the memory map.
func writePVH(m guestMem, p pvhInfo) error {
	page, err := m.region(ZeroPageAddr, zpSize, "PVH start_info")
	if err != nil {
		return err
	}
	clear(page)
	si := page[:pvhStartInfoSize]
	le.PutUint32(si[0:], pvhMagic)
	le.PutUint32(si[4:], pvhVersion)
	if p.initrdSize > 0 {
		le.PutUint32(si[12:], 1) // nr_modules
		le.PutUint64(si[16:], ZeroPageAddr+pvhModlistOff)
		mod := page[pvhModlistOff:]
		le.PutUint64(mod[0:], p.initrdAddr)
		le.PutUint64(mod[8:], p.initrdSize)
	}
	le.PutUint64(si[24:], CmdlineAddr)
	mm := E820(p.memSize)
	if len(mm) > pvhMemmapMax {
		return errorf(ErrTooLarge, "%d memory map entries, the start_info page holds %d", len(mm), pvhMemmapMax)
	}
	le.PutUint64(si[40:], ZeroPageAddr+pvhMemmapOff)
	le.PutUint32(si[48:], uint32(len(mm)))
	for i, e := range mm {
		b := page[pvhMemmapOff+i*pvhMemmapEntrySize:]
		le.PutUint64(b[0:], e.Addr)
		le.PutUint64(b[8:], e.Size)
		le.PutUint32(b[16:], e.Type) // the PVH types match e820's
	}
	return nil
}
