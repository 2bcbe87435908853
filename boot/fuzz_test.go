package boot

import (
	"errors"
	"testing"
)

func fuzzSeeds() [][]byte {
	return [][]byte{
		smallBzImage(), typicalBzImage(), guestELF(), vmlinuxELF(),
		makeBzImage(bzOpts{version: 0x205}),
		guestELF()[:100],
		nil,
	}
}

func FuzzParseImage(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		img, err := ParseImage(data)
		if err != nil {
			for _, kind := range []error{ErrTruncated, ErrNotX86, ErrProtocolTooOld, ErrTooLarge, ErrBadImage} {
				if errors.Is(err, kind) {
					return
				}
			}
			t.Fatalf("error %v wraps no sentinel", err)
		}
		if img.KernelEnd > MMIOGapStart || img.Entry64 >= img.KernelEnd || img.Entry64 < HighMemStart {
			t.Fatalf("accepted image with entry %#x, end %#x", img.Entry64, img.KernelEnd)
		}
	})
}

func FuzzLoad(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s, "console=ttyS0", uint16(100), uint8(0), uint8(1))
		f.Add(s, "", uint16(0), uint8(2), uint8(255))
	}
	f.Fuzz(func(t *testing.T, data []byte, cmdline string, initrdLen uint16, entry, cpus uint8) {
		img, err := ParseImage(data)
		if err != nil {
			return
		}
		const size = 4 * mib
		low := make([]byte, size+1)
		low[size] = 0x5a // a guard byte: Load must not write past MemSize
		l, err := Load(low[:size], data, img, Params{
			Cmdline: cmdline, Initrd: make([]byte, initrdLen), MemSize: size,
			CPUs: int(cpus), Entry: EntryMode(entry % 4),
		})
		if low[size] != 0x5a {
			t.Fatal("Load wrote past the end of guest memory")
		}
		if err != nil {
			return
		}
		if l.InitrdSize > 0 && (l.InitrdAddr < l.KernelEnd || l.InitrdAddr+l.InitrdSize > size || l.InitrdAddr%4096 != 0) {
			t.Fatalf("initrd placed at %#x+%#x with kernel end %#x", l.InitrdAddr, l.InitrdSize, l.KernelEnd)
		}
	})
}
