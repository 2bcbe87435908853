package blk

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"testing"

	"github.com/sietch-vm/sietch/virtio"
)

// flatMem is guest RAM [flatBase, flatBase+len(b)).
type flatMem struct{ b []byte }

const flatBase = 0x10000

func (m *flatMem) Slice(gpa, n uint64) ([]byte, error) {
	if gpa < flatBase || gpa-flatBase > uint64(len(m.b)) || n > uint64(len(m.b))-(gpa-flatBase) {
		return nil, fmt.Errorf("[%#x, +%#x) is not RAM", gpa, n)
	}
	o := gpa - flatBase
	return m.b[o : o+n], nil
}

// FuzzBlkRequest runs arbitrary request headers and payloads in arbitrary
// chain shapes straight through the request handler. shape holds two bytes
// per descriptor: a length (low 14 bits) and the WRITE flag (top bit).
// Whatever the input: no panic; the used length covers only writable bytes
// and is 0 exactly for chains without header or status; the status is a
// defined value; a read-only disk never changes; the disk never grows.
func FuzzBlkRequest(f *testing.F) {
	shape := func(lens ...int) []byte {
		var b []byte
		for _, l := range lens {
			b = binary.LittleEndian.AppendUint16(b, uint16(l))
		}
		return b
	}
	const w = 0x8000
	f.Add(false, hdr(TypeOut, 2), bytes.Repeat([]byte{1}, 1024), shape(16, 1024, w|1))
	f.Add(false, hdr(TypeIn, 0), []byte{}, shape(16, w|512, w|513))
	f.Add(true, hdr(TypeOut, 0), make([]byte, 512), shape(8, 520, w|1))
	f.Add(false, hdr(TypeDiscard, 0), append(seg(4, 8, 0), seg(60, 10, 0)...), shape(48, w|1))
	f.Add(false, hdr(TypeWriteZeroes, 0), seg(0, 64, flagUnmap), shape(32, w|1))
	f.Add(false, hdr(TypeGetID, 0), []byte{}, shape(16, w|5))
	f.Add(false, hdr(TypeFlush, 0), []byte{}, shape(16))
	f.Add(false, hdr(77, 1<<60), []byte{}, shape(4, 12, w|0, w|1))

	const sectors = 64
	dir := f.TempDir()
	disks := map[bool]*Device{}
	files := map[bool]string{}
	for _, ro := range []bool{false, true} {
		path := fmt.Sprintf("%s/disk-%v.img", dir, ro)
		if err := os.WriteFile(path, bytes.Repeat([]byte{0x5a}, sectors*SectorSize), 0o600); err != nil {
			f.Fatal(err)
		}
		flag := os.O_RDWR
		if ro {
			flag = os.O_RDONLY
		}
		file, err := os.OpenFile(path, flag, 0)
		if err != nil {
			f.Fatal(err)
		}
		f.Cleanup(func() { file.Close() })
		d, err := New(file, Options{ReadOnly: ro, ID: "fuzz"})
		if err != nil {
			f.Fatal(err)
		}
		disks[ro], files[ro] = d, path
	}
	roBefore, _ := os.ReadFile(files[true])

	f.Fuzz(func(t *testing.T, ro bool, header, payload, shape []byte) {
		if len(shape) > 2*64 {
			shape = shape[:2*64]
		}
		readable := append(append([]byte{}, header...), payload...)
		mem := &flatMem{b: make([]byte, 0, 64<<10)}
		var rd, wr []virtio.Desc
		var wrLen uint64
		for i := 0; i+1 < len(shape); i += 2 {
			v := binary.LittleEndian.Uint16(shape[i:])
			n := int(v & 0x3fff)
			if len(mem.b)+n > cap(mem.b) {
				break
			}
			d := virtio.Desc{Addr: flatBase + uint64(len(mem.b)), Len: uint32(n), Write: v&0x8000 != 0}
			chunk := make([]byte, n)
			if d.Write {
				wr, wrLen = append(wr, d), wrLen+uint64(n)
				for j := range chunk {
					chunk[j] = 0xee
				}
			} else {
				rd = append(rd, d)
				readable = readable[copy(chunk, readable):]
			}
			mem.b = append(mem.b, chunk...)
		}
		var rdLen uint64
		for _, d := range rd {
			rdLen += uint64(d.Len)
		}
		c := &virtio.Chain{Head: 0, Descs: append(rd, wr...)}
		written := disks[ro].handle(mem, c, false)

		malformed := rdLen < headerSize || wrLen == 0
		if malformed != (written == 0) {
			t.Fatalf("used len %d for a chain with %d readable, %d writable bytes", written, rdLen, wrLen)
		}
		if uint64(written) > wrLen {
			t.Fatalf("used len %d > %d writable bytes", written, wrLen)
		}
		if !malformed {
			last := wr[len(wr)-1]
			for i := len(wr) - 1; last.Len == 0; i-- {
				last = wr[i-1]
			}
			st := mem.b[last.Addr-flatBase+uint64(last.Len)-1]
			if st != StatusOK && st != StatusIOErr && st != StatusUnsupp {
				t.Fatalf("status byte %#x", st)
			}
		}
		if fi, err := os.Stat(files[ro]); err != nil || fi.Size() != sectors*SectorSize {
			t.Fatalf("disk size changed: %v, %v", fi.Size(), err)
		}
		if ro {
			if b, _ := os.ReadFile(files[true]); !bytes.Equal(b, roBefore) {
				t.Fatal("read-only disk changed")
			}
		}
	})
}
