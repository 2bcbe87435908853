package boot

import (
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseImageGood(t *testing.T) {
	// setup_sects 0: the protected-mode part starts at 5*512.
	zero := makeBzImage(bzOpts{setupSects: 4, initSize: 1})
	zero[hdrStart] = 0
	pvh4 := make([]byte, 4)
	binary.LittleEndian.PutUint32(pvh4, 0x100010)
	tests := []struct {
		name string
		data []byte
		want Image
	}{
		{"typical bzImage", typicalBzImage(), Image{Kind: KindBzImage, Entry64: 0x100200, Version: 0x20f,
			InitrdAddrMax: 0x7fffffff, CmdlineSize: 2047, KernelEnd: 0x1400000}},
		{"bzImage running in place, old defaults", makeBzImage(bzOpts{initSize: 0x2000}), Image{Kind: KindBzImage, Entry64: 0x100200,
			Version: 0x20f, InitrdAddrMax: 0x37ffffff, CmdlineSize: 255, KernelEnd: 0x102000}},
		{"bzImage setup_sects 0 means 4", zero, Image{Kind: KindBzImage, Entry64: 0x100200, Version: 0x20f,
			InitrdAddrMax: 0x37ffffff, CmdlineSize: 255, KernelEnd: 0x101000}},
		{"non-relocatable bzImage runs at pref_address", makeBzImage(bzOpts{notReloc: true, pref: 0x2000000, initSize: 0x100000}),
			Image{Kind: KindBzImage, Entry64: 0x100200, Version: 0x20f, InitrdAddrMax: 0x37ffffff, CmdlineSize: 255, KernelEnd: 0x2100000}},
		{"relocatable bzImage without pref_address rounds up", makeBzImage(bzOpts{align: 0x400000, initSize: 0x1000}),
			Image{Kind: KindBzImage, Entry64: 0x100200, Version: 0x20f, InitrdAddrMax: 0x37ffffff, CmdlineSize: 255, KernelEnd: 0x401000}},
		{"test guest ELF", guestELF(), Image{Kind: KindELF, Entry64: 0x100000, InitrdAddrMax: 0x7fffffff,
			CmdlineSize: CmdlineMax - 1, KernelEnd: 0x202000}},
		{"vmlinux with PVH note", vmlinuxELF(), Image{Kind: KindELF, Entry64: 0x1000000, PVHEntry: 0x1000040,
			InitrdAddrMax: 0x7fffffff, CmdlineSize: CmdlineMax - 1, KernelEnd: 0x1210000}},
		{"high virtual entry is translated", makeELF(elfOpts{entry: 0xffffffff81000010, segs: []elfSeg{
			{typ: ptLoad, paddr: 0x1000000, vaddr: 0xffffffff81000000, data: pattern(0x100, 1)}}}),
			Image{Kind: KindELF, Entry64: 0x1000010, InitrdAddrMax: 0x7fffffff, CmdlineSize: CmdlineMax - 1, KernelEnd: 0x1000100}},
		{"32-bit PVH note", makeELF(elfOpts{entry: 0x100000, segs: []elfSeg{
			{typ: ptNote, data: elfNote("Xen\x00", xenNotePhys32Entry, pvh4)},
			{typ: ptLoad, paddr: 0x100000, data: pattern(0x100, 1)}}}),
			Image{Kind: KindELF, Entry64: 0x100000, PVHEntry: 0x100010, InitrdAddrMax: 0x7fffffff, CmdlineSize: CmdlineMax - 1, KernelEnd: 0x100100}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img, err := ParseImage(tt.data)
			if err != nil {
				t.Fatalf("ParseImage: %v", err)
			}
			got := *img
			got.segments, got.setupHeader = nil, nil
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
	img, _ := ParseImage(zero)
	if img.segments[0].fileOff != 5*512 {
		t.Errorf("setup_sects 0: kernel starts at byte %d, want %d", img.segments[0].fileOff, 5*512)
	}
}

func TestParseImageErrors(t *testing.T) {
	bz := typicalBzImage()
	pmOff := 3 * 512
	elf := guestELF()
	set := func(b []byte, off int, v ...byte) []byte {
		c := append([]byte(nil), b...)
		copy(c[off:], v)
		return c
	}
	tests := []struct {
		name    string
		data    []byte
		want    error
		message string // a part of the error text
	}{
		{"empty", nil, ErrNotX86, "neither a bzImage"},
		{"text", []byte(strings.Repeat("hello ", 200)), ErrNotX86, ""},
		{"bzImage cut before HdrS", bz[:0x204], ErrNotX86, ""},
		{"bzImage cut in version", bz[:0x207], ErrTruncated, "ends at byte 520 but the file has 519 bytes"},
		{"bzImage cut in setup header", bz[:0x240], ErrTruncated, "setup header ends at byte 616"},
		{"bzImage cut in setup code", bz[:pmOff], ErrTruncated, "setup code"},
		{"bzImage cut in protected-mode part", bz[:pmOff+0x800], ErrTruncated, "syssize"},
		{"bzImage protocol 2.05", makeBzImage(bzOpts{version: 0x205}), ErrProtocolTooOld, "boot protocol 2.05; sietch needs 2.12"},
		{"bzImage protocol 2.11", makeBzImage(bzOpts{version: 0x20b}), ErrProtocolTooOld, "2.11"},
		{"bzImage without 64-bit entry", makeBzImage(bzOpts{xloadflags: 0x2}), ErrProtocolTooOld, "XLF_KERNEL_64"},
		{"zImage", makeBzImage(bzOpts{loadflags: 0x20}), ErrBadImage, "zImage"},
		{"bad boot flag", makeBzImage(bzOpts{bootFlag: 0x1234}), ErrBadImage, "boot_flag"},
		{"bzImage with no 64-bit entry code", makeBzImage(bzOpts{pmSize: 0x100}), ErrTruncated, "64-bit entry"},
		{"bzImage init_size beyond 3 GiB", makeBzImage(bzOpts{pref: 0x1000000, initSize: 0xc0000000}), ErrTooLarge, "MMIO gap"},
		{"bzImage pref_address beyond 3 GiB", makeBzImage(bzOpts{notReloc: true, pref: 0xfffff00000000000, initSize: 0x1000}), ErrTooLarge, ""},

		{"ELF cut in identification", elf[:10], ErrTruncated, "ELF identification"},
		{"ELF cut in header", elf[:40], ErrTruncated, "ELF header ends at byte 64 but the file has 40 bytes"},
		{"ELF cut in program header 1", elf[:elfHeaderSize+elfPhdrSize+10], ErrTruncated, "ELF program header 1 ends at byte 176 but the file has 130 bytes"},
		{"ELF cut in segment 1", elf[:len(elf)-1], ErrTruncated, "ELF segment 1 ends at byte"},
		{"ELF 32-bit", set(elf, 4, 1), ErrNotX86, "32-bit"},
		{"ELF big-endian", set(elf, 5, 2), ErrNotX86, "little-endian"},
		{"ELF for ARM64", set(elf, 18, 183, 0), ErrNotX86, "machine is 183"},
		{"ELF shared object", set(elf, 16, 3, 0), ErrBadImage, "not an executable"},
		{"ELF without program headers", set(elf, 56, 0, 0), ErrBadImage, "no program headers"},
		{"ELF odd program header size", set(elf, 54, 32, 0), ErrBadImage, "program header size"},
		{"ELF program headers far away", set(elf, 32, 0, 0, 0, 0, 0, 0, 0, 0xff), ErrTruncated, "program header 0"},
		{"ELF segment offset far away", set(elf, elfHeaderSize+8, 0, 0, 0, 0, 0, 0, 0, 0xff), ErrTruncated, "segment 0"},
		{"ELF below 1 MiB", makeELF(elfOpts{entry: 0x7000, segs: []elfSeg{{typ: ptLoad, paddr: 0x7000, data: pattern(16, 0)}}}), ErrBadImage, "below 1 MiB"},
		{"ELF segment bigger than memory", makeELF(elfOpts{entry: 0x100000, segs: []elfSeg{{typ: ptLoad, paddr: 0x100000, data: pattern(16, 0), memSize: 0x100000000}}}), ErrTooLarge, "MMIO gap"},
		{"ELF segment wraps", makeELF(elfOpts{entry: 0x100000, segs: []elfSeg{{typ: ptLoad, paddr: 0x100000, data: pattern(16, 0), memSize: 1 << 63}, {typ: ptLoad, paddr: 1 << 63, memSize: 1 << 63}}}), ErrTooLarge, ""},
		{"ELF overlapping segments", makeELF(elfOpts{entry: 0x100000, segs: []elfSeg{
			{typ: ptLoad, paddr: 0x100000, data: pattern(0x100, 0)}, {typ: ptLoad, paddr: 0x1000f0, data: pattern(0x100, 0)}}}), ErrBadImage, "overlap"},
		{"ELF filesz > memsz", set(elf, elfHeaderSize+40, 0, 1), ErrBadImage, "more bytes in the file"},
		{"ELF entry outside segments", makeELF(elfOpts{entry: 0x500000, segs: []elfSeg{{typ: ptLoad, paddr: 0x100000, data: pattern(16, 0)}}}), ErrBadImage, "entry point 0x500000"},
		{"ELF without PT_LOAD", makeELF(elfOpts{entry: 0x100000, segs: []elfSeg{{typ: ptNote, data: elfNote("GNU\x00", 1, nil)}}}), ErrBadImage, "no loadable"},
		{"ELF note overruns", makeELF(elfOpts{entry: 0x100000, segs: []elfSeg{
			{typ: ptNote, data: elfNote("Xen\x00", xenNotePhys32Entry, pattern(8, 0))[:16]},
			{typ: ptLoad, paddr: 0x100000, data: pattern(16, 0)}}}), ErrBadImage, "overruns"},
		{"ELF PVH entry outside segments", makeELF(elfOpts{entry: 0x100000, segs: []elfSeg{
			{typ: ptNote, data: elfNote("Xen\x00", xenNotePhys32Entry, []byte{0, 0, 0x90, 0})},
			{typ: ptLoad, paddr: 0x100000, data: pattern(16, 0)}}}), ErrBadImage, "PVH entry point 0x900000"},
		{"ELF PVH note of 2 bytes", makeELF(elfOpts{entry: 0x100000, segs: []elfSeg{
			{typ: ptNote, data: elfNote("Xen\x00", xenNotePhys32Entry, []byte{1, 2})},
			{typ: ptLoad, paddr: 0x100000, data: pattern(16, 0)}}}), ErrBadImage, "2-byte"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img, err := ParseImage(tt.data)
			if !errors.Is(err, tt.want) {
				t.Fatalf("ParseImage = %+v, %v; want error %v", img, err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.message) {
				t.Errorf("error %q does not say %q", err, tt.message)
			}
		})
	}
}

// Every prefix of a good image is rejected with an error, never accepted
// with pieces missing.
func TestParseImageEveryPrefix(t *testing.T) {
	for _, data := range [][]byte{smallBzImage(), guestELF(), vmlinuxELF()} {
		for n := range len(data) {
			if img, err := ParseImage(data[:n]); err == nil {
				t.Fatalf("ParseImage of the first %d of %d bytes succeeded: %+v", n, len(data), img)
			}
		}
	}
}
