package snapshot

import (
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// corrupt flips one bit of the file at off.
func corrupt(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x10
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// A full memory file and a diff on it, with their checksums: they load as
// they are, and each kind of damage on disk (a flipped bit in a data page,
// a data page punched to a hole, a flipped bit in a diff page, a bit in a
// zero page of a hole chunk) is refused naming the file and the offset,
// by Fill, by Flatten and by the lazy path's per-chunk check.
func TestMemorySums(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	mem, m := newMemfd(t, memSize)
	first := touch(m, 200, r)
	st := captureState(t)
	st.Machine.MemSize, st.Memory.Size = memSize, memSize
	st.Memory.Regions = []Region{{GPA: 0, Size: memSize}}
	state := func(m Memory) *State {
		s := *st
		m.Regions = st.Memory.Regions
		s.Memory = m
		return &s
	}
	base := snapshotDir(t, state(Memory{File: "memory", Size: memSize, Kind: KindFull}))
	basePath := filepath.Join(base, "memory")
	if _, err := WriteFull(basePath, mem, memSize); err != nil {
		t.Fatal(err)
	}
	sums, err := SumMemory(basePath, memSize)
	if err != nil {
		t.Fatal(err)
	}
	if err := Write(base, state(Memory{File: "memory", Size: memSize, Kind: KindFull, Sums: sums})); err != nil {
		t.Fatal(err)
	}
	dirty := touch(m, 50, r)
	diff := filepath.Join(filepath.Dir(base), "diff")
	os.MkdirAll(diff, 0o700)
	if _, err := WriteDiff(filepath.Join(diff, "memory"), mem, memSize, dirty); err != nil {
		t.Fatal(err)
	}
	dsums, err := SumMemory(filepath.Join(diff, "memory"), memSize)
	if err != nil {
		t.Fatal(err)
	}
	if err := Write(diff, state(Memory{File: "memory", Size: memSize, Kind: KindDiff, Base: "../snap", DirtyPages: dirty, Sums: dsums})); err != nil {
		t.Fatal(err)
	}
	load := func(dir string) error {
		s, err := Read(dir)
		if err != nil {
			return err
		}
		chain, err := Layers(dir, s)
		if err != nil {
			return err
		}
		_, dst := newMemfd(t, memSize)
		if _, err := Fill(dst, chain); err != nil {
			return err
		}
		for p := uint64(0); p < memSize/PageSize; p++ {
			if string(dst[p*PageSize:(p+1)*PageSize]) != string(m[p*PageSize:(p+1)*PageSize]) && dir == diff {
				t.Fatalf("page %d differs after loading the chain", p)
			}
		}
		return nil
	}
	if err := load(diff); err != nil {
		t.Fatalf("an intact chain: %v", err)
	}

	// A page of the base that the diff does not replace.
	var page uint64
	for p := uint64(0); ; p++ {
		if first.Has(p) && !dirty.Has(p) {
			page = p
			break
		}
	}
	wantRefused := func(what, file string, off uint64) {
		t.Helper()
		err := load(diff)
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), file) {
			t.Fatalf("%s: %v; want ErrCorrupt naming %s", what, err, file)
		}
		chunk := off / SumChunk * SumChunk
		if !strings.Contains(err.Error(), "0x"+strconvHex(chunk)) {
			t.Errorf("%s: %v; want the chunk at %#x named", what, err, chunk)
		}
		if err := Flatten(diff); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: Flatten: %v; want ErrCorrupt", what, err)
		}
	}
	off := page*PageSize + 123
	corrupt(t, basePath, int64(off))
	wantRefused("a flipped bit in the base", basePath, off)
	corrupt(t, basePath, int64(off)) // repaired
	if err := load(diff); err != nil {
		t.Fatalf("the repaired chain: %v", err)
	}

	// The page punched out: data lost to a hole.
	if err := punchHole(mustOpenRW(t, basePath), page*PageSize, PageSize); err != nil {
		t.Fatal(err)
	}
	wantRefused("a data page turned into a hole", basePath, page*PageSize)
	copy(mustMap(t, basePath)[page*PageSize:(page+1)*PageSize], m[page*PageSize:(page+1)*PageSize])

	// A page of the diff.
	var dp uint64
	for p := uint64(0); ; p++ {
		if dirty.Has(p) {
			dp = p
			break
		}
	}
	diffPath := filepath.Join(diff, "memory")
	corrupt(t, diffPath, int64(dp*PageSize+7))
	wantRefused("a flipped bit in the diff", diffPath, dp*PageSize+7)
	corrupt(t, diffPath, int64(dp*PageSize+7))

	// The lazy path's check of one chunk.
	data := mustMap(t, basePath)
	c := page * PageSize / SumChunk
	if err := sums.Verify(basePath, c, data[c*SumChunk:(c+1)*SumChunk]); err != nil {
		t.Fatalf("intact chunk: %v", err)
	}
	data[page*PageSize+1] ^= 1
	if err := sums.Verify(basePath, c, data[c*SumChunk:(c+1)*SumChunk]); !errors.Is(err, ErrCorrupt) {
		t.Errorf("damaged chunk: %v; want ErrCorrupt", err)
	}
	data[page*PageSize+1] ^= 1

	// Checksums that do not fit the memory are refused when read.
	bad := *sums
	bad.CRC = bad.CRC[:8]
	if err := Write(base, state(Memory{File: "memory", Size: memSize, Kind: KindFull, Sums: &bad})); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(base); err == nil || !strings.Contains(err.Error(), "checksums") {
		t.Errorf("short checksums: %v; want them refused", err)
	}
}

func strconvHex(v uint64) string {
	const digits = "0123456789abcdef"
	if v == 0 {
		return "0"
	}
	var b []byte
	for ; v > 0; v >>= 4 {
		b = append([]byte{digits[v&15]}, b...)
	}
	return string(b)
}

func mustOpenRW(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func mustMap(t *testing.T, path string) []byte {
	t.Helper()
	f := mustOpenRW(t, path)
	fi, _ := f.Stat()
	b, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(b) })
	return b
}

// BenchmarkSumMemory is the cost of checksumming at snapshot time and of
// checking at an eager restore: 64 MiB with 10% of its pages written.
func BenchmarkSumMemory(b *testing.B) {
	mem, m := newMemfd(b, memSize)
	touch(m, memSize/PageSize/10, rand.New(rand.NewPCG(1, 2)))
	path := filepath.Join(b.TempDir(), "memory")
	if _, err := WriteFull(path, mem, memSize); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(memSize)
	for b.Loop() {
		if _, err := SumMemory(path, memSize); err != nil {
			b.Fatal(err)
		}
	}
}
