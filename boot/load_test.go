package boot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/sietch-vm/sietch/kvm"
)

const (
	mib = 1 << 20
	gib = 1 << 30
)

func u16(b []byte, off uint64) uint16 { return binary.LittleEndian.Uint16(b[off:]) }
func u32(b []byte, off uint64) uint32 { return binary.LittleEndian.Uint32(b[off:]) }
func u64(b []byte, off uint64) uint64 { return binary.LittleEndian.Uint64(b[off:]) }

// load parses data and loads it into fresh memory of memSize bytes (which
// must be below the MMIO gap).
func load(t *testing.T, data []byte, memSize int, p Params) ([]byte, *Loaded) {
	t.Helper()
	img, err := ParseImage(data)
	if err != nil {
		t.Fatalf("ParseImage: %v", err)
	}
	low := make([]byte, memSize)
	l, err := Load(low, data, img, p)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return low, l
}

// cstring reads the NUL-terminated string at addr.
func cstring(low []byte, addr uint64) string {
	s := low[addr:]
	if i := bytes.IndexByte(s, 0); i >= 0 {
		return string(s[:i])
	}
	return "<no NUL>"
}

func TestLoadBzImageZeroPage(t *testing.T) {
	data := typicalBzImage()
	initrd := pattern(10000, 9)
	low, l := load(t, data, 64*mib, Params{Cmdline: "console=ttyS0 quiet", Initrd: initrd, MemSize: 64 * mib, CPUs: 2})

	want := Loaded{Mode: EntryLinux64, Entry: 0x100200, BootInfo: ZeroPageAddr,
		InitrdAddr: (64*mib - 10000) &^ 0xfff, InitrdSize: 10000, KernelEnd: 0x1400000}
	if *l != want {
		t.Errorf("Loaded = %+v, want %+v", *l, want)
	}
	if !bytes.Equal(low[HighMemStart:HighMemStart+0x1000], data[3*512:]) {
		t.Error("protected-mode kernel is not at 1 MiB")
	}
	if !bytes.Equal(low[l.InitrdAddr:l.InitrdAddr+l.InitrdSize], initrd) {
		t.Error("initrd bytes are not at InitrdAddr")
	}
	zp := low[ZeroPageAddr : ZeroPageAddr+0x1000]
	checks := []struct {
		name      string
		got, want uint64
	}{
		{"setup_sects (copied header)", uint64(zp[hdrStart]), 2},
		{"boot_flag", uint64(u16(zp, hdrBootFlag)), 0xaa55},
		{"header", uint64(u32(zp, hdrMagic)), uint64(binary.LittleEndian.Uint32([]byte("HdrS")))},
		{"version", uint64(u16(zp, hdrVersion)), 0x20f},
		{"type_of_loader", uint64(zp[hdrTypeOfLoader]), 0xff},
		{"loadflags LOADED_HIGH|CAN_USE_HEAP", uint64(zp[hdrLoadflags] & 0x81), 0x81},
		{"heap_end_ptr", uint64(u16(zp, hdrHeapEndPtr)), 0xfe00 - 0x200},
		{"cmd_line_ptr", uint64(u32(zp, hdrCmdLinePtr)), CmdlineAddr},
		{"ramdisk_image", uint64(u32(zp, hdrRamdiskImage)), l.InitrdAddr},
		{"ramdisk_size", uint64(u32(zp, hdrRamdiskSize)), 10000},
		{"kernel_alignment (copied)", uint64(u32(zp, hdrKernelAlignment)), 0x200000},
		{"vid_mode", uint64(u16(zp, zpVidMode)), 0xffff},
		{"e820_entries", uint64(zp[zpE820Entries]), 3},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("zero page %s = %#x, want %#x", c.name, c.got, c.want)
		}
	}
	for i, e := range E820(64 * mib) {
		b := zp[zpE820Table+i*e820EntrySize:]
		got := E820Entry{u64(b, 0), u64(b, 8), u32(b, 16)}
		if got != e {
			t.Errorf("zero page e820[%d] = %+v, want %+v", i, got, e)
		}
	}
	if got := cstring(low, uint64(u32(zp, hdrCmdLinePtr))); got != "console=ttyS0 quiet" {
		t.Errorf("command line = %q", got)
	}
}

func TestLoadELF(t *testing.T) {
	data := guestELF()
	img, err := ParseImage(data)
	if err != nil {
		t.Fatal(err)
	}
	low := bytes.Repeat([]byte{0xaa}, 32*mib) // the BSS must be cleared
	l, err := Load(low, data, img, Params{Cmdline: "x", MemSize: 32 * mib})
	if err != nil {
		t.Fatal(err)
	}
	if l.Entry != 0x100000 || l.Mode != EntryLinux64 || l.InitrdAddr != 0 || l.InitrdSize != 0 {
		t.Errorf("Loaded = %+v", *l)
	}
	if !bytes.Equal(low[0x100000:0x100300], pattern(0x300, 1)) {
		t.Error("segment 0 is not at its p_paddr")
	}
	if !bytes.Equal(low[0x200000:0x200100], pattern(0x100, 2)) {
		t.Error("segment 1 is not at its p_paddr")
	}
	if !bytes.Equal(low[0x200100:0x202000], make([]byte, 0x1f00)) {
		t.Error("segment 1's memsz beyond filesz is not zero-filled")
	}
	if low[0x202000] != 0xaa {
		t.Error("Load wrote past the last segment")
	}
	zp := low[ZeroPageAddr:]
	if u16(zp, hdrBootFlag) != 0xaa55 || string(zp[hdrMagic:hdrMagic+4]) != "HdrS" || u16(zp, hdrVersion) != 0x20c ||
		zp[hdrTypeOfLoader] != 0xff || zp[hdrLoadflags] != 0x81 || u32(zp, hdrCmdLinePtr) != CmdlineAddr ||
		u32(zp, hdrCmdlineSize) != CmdlineMax-1 || u32(zp, hdrRamdiskImage) != 0 || u32(zp, hdrRamdiskSize) != 0 {
		t.Errorf("synthesized setup header is wrong: % x", zp[hdrStart:hdrEnd212])
	}
	if zp[zpE820Entries] != 3 {
		t.Errorf("e820_entries = %d, want 3", zp[zpE820Entries])
	}
	if cstring(low, CmdlineAddr) != "x" {
		t.Errorf("command line = %q", cstring(low, CmdlineAddr))
	}
}

func TestLoadInitrdPlacement(t *testing.T) {
	tests := []struct {
		name     string
		data     []byte
		memSize  int
		size     int
		wantAddr uint64
		wantErr  error
	}{
		{"top of memory, page aligned", guestELF(), 32 * mib, 5000, 32*mib - 0x2000, nil},
		{"exact pages", guestELF(), 32 * mib, 0x3000, 32*mib - 0x3000, nil},
		{"below initrd_addr_max", makeBzImage(bzOpts{initSize: 0x1000, initrdMax: 0x00ffffff}), 32 * mib, 0x1000, 0x00fff000, nil},
		{"old kernel default 0x37ffffff is above this memory", makeBzImage(bzOpts{initSize: 0x1000}), 32 * mib, 0x1000, 32*mib - 0x1000, nil},
		{"right above the kernel", guestELF(), 32 * mib, 32*mib - 0x202000, 0x202000, nil},
		{"one byte too many", guestELF(), 32 * mib, 32*mib - 0x202000 + 1, 0, ErrTooLarge},
		{"above init_size, not just the file", typicalBzImage(), 24 * mib, 4*mib + 1, 0, ErrTooLarge},
		{"fits above init_size", typicalBzImage(), 24 * mib, 4 * mib, 20 * mib, nil},
		{"larger than memory", guestELF(), 32 * mib, 64 * mib, 0, ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img, err := ParseImage(tt.data)
			if err != nil {
				t.Fatal(err)
			}
			low := make([]byte, tt.memSize)
			l, err := Load(low, tt.data, img, Params{Initrd: pattern(tt.size, 7), MemSize: uint64(tt.memSize)})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Load error = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if l.InitrdAddr != tt.wantAddr || l.InitrdSize != uint64(tt.size) {
				t.Errorf("initrd at %#x size %#x, want %#x size %#x", l.InitrdAddr, l.InitrdSize, tt.wantAddr, tt.size)
			}
			if u32(low, ZeroPageAddr+hdrRamdiskImage) != uint32(tt.wantAddr) {
				t.Errorf("zero page ramdisk_image = %#x", u32(low, ZeroPageAddr+hdrRamdiskImage))
			}
		})
	}
}

func TestLoadCmdline(t *testing.T) {
	tests := []struct {
		name    string
		data    []byte
		cmdline string
		wantErr bool
	}{
		{"empty", guestELF(), "", false},
		{"bzImage limit", makeBzImage(bzOpts{cmdlineSize: 10, initSize: 1}), "0123456789", false},
		{"beyond bzImage cmdline_size", makeBzImage(bzOpts{cmdlineSize: 10, initSize: 1}), "0123456789a", true},
		{"old bzImage default 255", makeBzImage(bzOpts{initSize: 1}), strings.Repeat("a", 256), true},
		{"ELF fills CmdlineMax", guestELF(), strings.Repeat("a", CmdlineMax-1), false},
		{"ELF beyond CmdlineMax", guestELF(), strings.Repeat("a", CmdlineMax), true},
		{"kernel allows more than CmdlineMax", makeBzImage(bzOpts{cmdlineSize: 0x7fffffff, initSize: 1}), strings.Repeat("a", CmdlineMax), true},
		{"NUL inside", guestELF(), "a\x00b", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img, err := ParseImage(tt.data)
			if err != nil {
				t.Fatal(err)
			}
			low := make([]byte, 32*mib)
			copy(low[CmdlineAddr:], strings.Repeat("z", CmdlineMax)) // stale bytes from a previous boot
			_, err = Load(low, tt.data, img, Params{Cmdline: tt.cmdline})
			if (err != nil) != tt.wantErr {
				t.Fatalf("Load error = %v, want error: %v", err, tt.wantErr)
			}
			if err == nil && cstring(low, CmdlineAddr) != tt.cmdline {
				t.Errorf("command line = %.40q, want %.40q", cstring(low, CmdlineAddr), tt.cmdline)
			}
		})
	}
}

func TestLoadPageTables(t *testing.T) {
	low, _ := load(t, guestELF(), 32*mib, Params{})
	const flags = 0x7 // present, writable, user
	if got := u64(low, PML4Addr); got != 0xa000|flags {
		t.Errorf("PML4[0] = %#x", got)
	}
	if got := u64(low, PML4Addr+8); got != 0 {
		t.Errorf("PML4[1] = %#x, want not present", got)
	}
	for i := range uint64(4) {
		if got := u64(low, 0xa000+i*8); got != (0xb000+i*0x1000)|flags {
			t.Errorf("PDPT[%d] = %#x", i, got)
		}
	}
	if got := u64(low, 0xa000+4*8); got != 0 {
		t.Errorf("PDPT[4] = %#x, want not present", got)
	}
	// Walk a few addresses through the tables as the MMU would.
	for _, va := range []uint64{0, 0x100000, 0x1234567, MMIOGapStart, 0xd0000000, 0xfee00000, MMIOGapEnd - 1} {
		pml4e := u64(low, PML4Addr+(va>>39&0x1ff)*8)
		pdpte := u64(low, pml4e&^0xfff+(va>>30&0x1ff)*8)
		pde := u64(low, pdpte&^0xfff+(va>>21&0x1ff)*8)
		if pml4e&flags != flags || pdpte&flags != flags || pde&(flags|0x80) != flags|0x80 {
			t.Errorf("%#x: entries %#x %#x %#x lack P/RW/US/PS", va, pml4e, pdpte, pde)
		}
		if pa := pde&^0x1fffff&(1<<52-1) | va&0x1fffff; pa != va {
			t.Errorf("%#x maps to %#x, want identity", va, pa)
		}
	}
}

func TestLoadGDTAndSregs(t *testing.T) {
	for _, mode := range []EntryMode{EntryLinux64, EntryPVH} {
		t.Run(mode.String(), func(t *testing.T) {
			low, l := load(t, vmlinuxELF(), 32*mib, Params{Entry: mode})
			gdt := low[GDTAddr : GDTAddr+gdtSize]
			want := map[uint64]uint64{ // selector → descriptor, as Linux and Firecracker spell them
				0x00: 0,
				0x08: 0x00cf9b000000ffff,
				0x10: 0x00af9b000000ffff,
				0x18: 0x00cf93000000ffff,
			}
			if mode == EntryPVH {
				want[0x20] = 0x00008b0000000067 // busy 32-bit TSS, base 0, limit 0x67
				want[0x28] = 0
			} else {
				want[0x20] = 0x00008b0005800067 // busy 64-bit TSS at BootTSSAddr
				want[0x28] = 0                  // base 63:32
			}
			for sel, d := range want {
				if got := u64(gdt, sel); got != d {
					t.Errorf("GDT[%#x] = %#016x, want %#016x", sel, got, d)
				}
			}

			in := kvm.Sregs{APICBase: 0xfee00900, CR8: 3}
			s := l.Sregs(in)
			if s.APICBase != in.APICBase || s.CR8 != in.CR8 {
				t.Error("Sregs changed fields it does not own")
			}
			if s.GDT.Base != GDTAddr || s.GDT.Limit != gdtSize-1 {
				t.Errorf("GDTR = %+v", s.GDT)
			}
			// Each loaded segment register matches its descriptor in memory.
			for name, seg := range map[string]kvm.Segment{"CS": s.CS, "DS": s.DS, "ES": s.ES, "FS": s.FS, "GS": s.GS, "SS": s.SS, "TR": s.TR} {
				if got := u64(gdt, uint64(seg.Selector)); got != descriptor(seg) {
					t.Errorf("%s %+v does not match GDT entry %#x", name, seg, got)
				}
			}
			if s.DS.Selector != SelectorData || s.SS.Selector != SelectorData || s.TR.Selector != SelectorTSS || s.TR.Type != 11 || s.TR.S != 0 {
				t.Errorf("data/TR segments: DS %+v TR %+v", s.DS, s.TR)
			}
			r := l.Regs()
			if mode == EntryPVH {
				if s.CS.Selector != SelectorCode32 || s.CS.L != 0 || s.CS.DB != 1 || s.CR0 != 0x11 || s.CR4 != 0 || s.EFER != 0 || s.TR.Base != 0 {
					t.Errorf("PVH sregs: CS %+v CR0 %#x CR4 %#x EFER %#x TR %+v", s.CS, s.CR0, s.CR4, s.EFER, s.TR)
				}
				if r != (kvm.Regs{RIP: 0x1000040, RBX: ZeroPageAddr, RFLAGS: 2}) {
					t.Errorf("PVH regs = %+v", r)
				}
				return
			}
			if s.CS.Selector != SelectorCode64 || s.CS.L != 1 || s.CS.DB != 0 || s.CS.DPL != 0 ||
				s.CR0 != 0x80000031 || s.CR4 != 0x20 || s.EFER != 0x500 || s.CR3 != PML4Addr || s.TR.Base != BootTSSAddr {
				t.Errorf("long mode sregs: CS %+v CR0 %#x CR3 %#x CR4 %#x EFER %#x TR %+v", s.CS, s.CR0, s.CR3, s.CR4, s.EFER, s.TR)
			}
			if r != (kvm.Regs{RIP: 0x1000000, RSI: ZeroPageAddr, RSP: BootStack, RBP: BootStack, RFLAGS: 2}) {
				t.Errorf("64-bit regs = %+v", r)
			}
		})
	}
}

func TestLoadPVH(t *testing.T) {
	data := vmlinuxELF()
	initrd := pattern(3000, 4)
	memSize := uint64(48 * mib)
	low, l := load(t, data, int(memSize), Params{Cmdline: "console=hvc0", Initrd: initrd, MemSize: memSize, Entry: EntryPVH})
	if l.Mode != EntryPVH || l.Entry != 0x1000040 || l.BootInfo != ZeroPageAddr {
		t.Fatalf("Loaded = %+v", *l)
	}
	si := low[ZeroPageAddr:]
	if u32(si, 0) != 0x336ec578 || u32(si, 4) != 1 || u32(si, 8) != 0 {
		t.Errorf("start_info magic/version/flags = %#x %d %#x", u32(si, 0), u32(si, 4), u32(si, 8))
	}
	if cstring(low, u64(si, 24)) != "console=hvc0" {
		t.Errorf("cmdline_paddr %#x holds %q", u64(si, 24), cstring(low, u64(si, 24)))
	}
	if u32(si, 12) != 1 {
		t.Fatalf("nr_modules = %d, want 1", u32(si, 12))
	}
	mod := low[u64(si, 16):]
	if u64(mod, 0) != l.InitrdAddr || u64(mod, 8) != 3000 || !bytes.Equal(low[l.InitrdAddr:l.InitrdAddr+3000], initrd) {
		t.Errorf("module 0 = %#x+%d, initrd at %#x", u64(mod, 0), u64(mod, 8), l.InitrdAddr)
	}
	want := E820(memSize)
	if int(u32(si, 48)) != len(want) {
		t.Fatalf("memmap_entries = %d, want %d", u32(si, 48), len(want))
	}
	mm := low[u64(si, 40):]
	for i, e := range want {
		b := mm[i*24:]
		if got := (E820Entry{u64(b, 0), u64(b, 8), u32(b, 16)}); got != e {
			t.Errorf("memmap[%d] = %+v, want %+v", i, got, e)
		}
	}

	// Without an initrd there are no modules.
	low, _ = load(t, data, int(memSize), Params{Entry: EntryPVH})
	if u32(low, ZeroPageAddr+12) != 0 || u64(low, ZeroPageAddr+16) != 0 {
		t.Error("modules listed without an initrd")
	}
}

func TestLoadEntryMode(t *testing.T) {
	tests := []struct {
		name    string
		data    []byte
		entry   EntryMode
		want    EntryMode
		wantErr error
	}{
		{"auto never picks PVH", vmlinuxELF(), EntryAuto, EntryLinux64, nil},
		{"linux64 on a PVH kernel", vmlinuxELF(), EntryLinux64, EntryLinux64, nil},
		{"PVH when asked", vmlinuxELF(), EntryPVH, EntryPVH, nil},
		{"PVH on an ELF without the note", guestELF(), EntryPVH, 0, ErrNoPVH},
		{"PVH on a bzImage", typicalBzImage(), EntryPVH, 0, ErrNoPVH},
		{"unknown mode", guestELF(), EntryMode(7), 0, errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img, err := ParseImage(tt.data)
			if err != nil {
				t.Fatal(err)
			}
			l, err := Load(make([]byte, 32*mib), tt.data, img, Params{Entry: tt.entry})
			switch {
			case tt.wantErr == errAny && err != nil:
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr), tt.wantErr == nil && err != nil:
				t.Fatalf("Load error = %v, want %v", err, tt.wantErr)
			case err == nil && l.Mode != tt.want:
				t.Errorf("mode = %v, want %v", l.Mode, tt.want)
			}
		})
	}
}

var errAny = errors.New("any error")

func TestLoadRejects(t *testing.T) {
	bz := typicalBzImage()
	img, err := ParseImage(bz)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		low  []byte
		data []byte
		img  *Image
		p    Params
		want error
	}{
		{"memory below the kernel's init_size", make([]byte, 16*mib), bz, img, Params{}, ErrTooLarge},
		{"MemSize smaller than the slice", make([]byte, 64*mib), bz, img, Params{MemSize: 8 * mib}, ErrTooLarge},
		{"no memory", nil, bz, img, Params{}, ErrTooLarge},
		{"data shorter than parsed", make([]byte, 64*mib), bz[:2000], img, Params{}, ErrTruncated},
		{"nil image", make([]byte, 64*mib), bz, nil, Params{}, errAny},
		{"zero image", make([]byte, 64*mib), bz, &Image{}, Params{}, errAny},
		{"too many CPUs", make([]byte, 64*mib), bz, img, Params{CPUs: 255}, errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := Load(tt.low, tt.data, tt.img, tt.p)
			if err == nil || tt.want != errAny && !errors.Is(err, tt.want) {
				t.Fatalf("Load = %+v, %v; want error %v", l, err, tt.want)
			}
		})
	}
}

// A guest of 1 MiB plus a little has room for the boot structures and a
// tiny kernel; everything written stays inside the slice.
func TestLoadSmallMemory(t *testing.T) {
	data := makeELF(elfOpts{entry: 0x100000, segs: []elfSeg{{typ: ptLoad, paddr: 0x100000, data: pattern(0x100, 1)}}})
	low, l := load(t, data, mib+0x2000, Params{Initrd: []byte("ab")})
	if l.InitrdAddr != mib+0x1000 || low[mib+0x1000] != 'a' {
		t.Errorf("initrd at %#x", l.InitrdAddr)
	}
}
