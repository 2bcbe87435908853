package snapshot

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// touch writes a random non-zero pattern into n pseudo-random distinct pages
// of m and returns their indexes as a bitmap.
func touch(m []byte, n int, r *rand.Rand) Bitmap {
	pages := uint64(len(m)) / PageSize
	b := make(Bitmap, BitmapWords(uint64(len(m))))
	for b.Count() < n {
		p := r.Uint64N(pages)
		if b.Has(p) {
			continue
		}
		b.Set(p)
		page := m[p*PageSize : (p+1)*PageSize]
		for i := range page {
			page[i] = byte(r.Uint32()) | 1
		}
	}
	return b
}

// onDisk is the space a file takes: st_blocks, not its length.
func onDisk(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return uint64(fi.Sys().(*syscall.Stat_t).Blocks) * 512
}

func sameContent(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%s is %d bytes, want %d", path, len(got), len(want))
	}
	if !bytes.Equal(got, want) {
		for p := 0; p < len(got); p += PageSize {
			if !bytes.Equal(got[p:p+PageSize], want[p:p+PageSize]) {
				t.Fatalf("%s differs from guest memory first at page %d", path, p/PageSize)
			}
		}
	}
}

const memSize = 64 << 20

// TestFullDiffMerge follows a guest through a full snapshot, 1% of its pages
// changing (some to zero), a diff snapshot and a merge: the full file and
// the diff each take ~1% of the guest's size on disk, and the merge equals
// a full snapshot taken after the changes, byte for byte.
func TestFullDiffMerge(t *testing.T) {
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(4, 2))
	mem, m := newMemfd(t, memSize)
	pages := memSize / PageSize
	onePct := pages / 100
	first := touch(m, onePct, r)
	// A page the guest wrote and then zeroed is data in the memfd but must
	// be a hole in the file.
	m[5*PageSize] = 1
	m[5*PageSize] = 0

	full := filepath.Join(dir, "full")
	n, err := WriteFull(full, mem, memSize)
	if err != nil {
		t.Fatal(err)
	}
	if want := uint64(first.Count()) * PageSize; n != want {
		t.Errorf("WriteFull wrote %d bytes; %d pages are non-zero (%d bytes)", n, first.Count(), want)
	}
	sameContent(t, full, m)
	if used := onDisk(t, full); used > memSize/100*3/2 {
		t.Errorf("full snapshot of a guest with 1%% of pages touched takes %d bytes on disk (%.2f%% of %d)", used, 100*float64(used)/memSize, memSize)
	}

	// The guest runs on: 1% new pages, and some of the old ones zeroed.
	dirty := touch(m, onePct, r)
	zeroed := 0
	for p := uint64(0); p < uint64(pages) && zeroed < 10; p++ {
		if first.Has(p) && !dirty.Has(p) {
			clear(m[p*PageSize : (p+1)*PageSize])
			dirty.Set(p)
			zeroed++
		}
	}
	diffPath := filepath.Join(dir, "diff")
	dn, err := WriteDiff(diffPath, mem, memSize, dirty)
	if err != nil {
		t.Fatal(err)
	}
	if want := uint64(dirty.Count()-zeroed) * PageSize; dn > want {
		t.Errorf("WriteDiff wrote %d bytes for %d dirty pages (%d zeroed)", dn, dirty.Count(), zeroed)
	}
	if used := onDisk(t, diffPath); used > memSize/100*3/2 {
		t.Errorf("diff of 1%% dirty pages takes %d bytes on disk (%.2f%%)", used, 100*float64(used)/memSize)
	}

	after := filepath.Join(dir, "after")
	if _, err := WriteFull(after, mem, memSize); err != nil {
		t.Fatal(err)
	}
	if err := Merge(full, diffPath, dirty); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(after)
	if err != nil {
		t.Fatal(err)
	}
	sameContent(t, full, want)
	sameContent(t, full, m)
	t.Logf("guest %d MiB, %d pages touched: full file %d KiB on disk, diff (%d dirty pages) %d KiB, merged %d KiB",
		memSize>>20, first.Count(), onDisk(t, after)>>10, dirty.Count(), onDisk(t, diffPath)>>10, onDisk(t, full)>>10)
	if a, b := onDisk(t, full), onDisk(t, after); a > b+256<<10 {
		t.Errorf("merged file takes %d bytes on disk, a fresh full snapshot %d: zeroed pages were not punched out", a, b)
	}
}

// TestPopulate restores a full memory file eagerly into a fresh memfd.
func TestPopulate(t *testing.T) {
	mem, m := newMemfd(t, memSize)
	touch(m, 300, rand.New(rand.NewPCG(7, 7)))
	path := filepath.Join(t.TempDir(), "memory")
	if _, err := WriteFull(path, mem, memSize); err != nil {
		t.Fatal(err)
	}
	f, err := OpenMemory(path, memSize)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, dst := newMemfd(t, memSize)
	read, err := Populate(dst, f)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dst, m) {
		t.Fatal("populated memory differs from the snapshotted memory")
	}
	if read > 300*PageSize*2 {
		t.Errorf("Populate read %d bytes for 300 data pages; it should skip holes", read)
	}
}

func TestMemoryRefusals(t *testing.T) {
	dir := t.TempDir()
	mem, _ := newMemfd(t, memSize)
	path := filepath.Join(dir, "memory")
	if _, err := WriteFull(path, mem, memSize); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		err  error
		msg  string
	}{
		{"OpenMemory wrong size", func() error { _, err := OpenMemory(path, memSize*2); return err }(), "is 67108864 bytes, the state says 134217728"},
		{"OpenMemory missing", func() error { _, err := OpenMemory(filepath.Join(dir, "nope"), memSize); return err }(), "no such file"},
		{"WriteFull beyond memfd", func() error { _, err := WriteFull(filepath.Join(dir, "x"), mem, memSize*2); return err }(), "holds 67108864 bytes, asked to save 134217728"},
		{"WriteFull unaligned", func() error { _, err := WriteFull(filepath.Join(dir, "x"), mem, 1000); return err }(), "not a positive multiple"},
		{"WriteDiff short bitmap", func() error {
			_, err := WriteDiff(filepath.Join(dir, "x"), mem, memSize, make([]uint64, 3))
			return err
		}(), "has 3 words"},
		{"Merge short bitmap", Merge(path, path, make([]uint64, 3)), "has 3 words"},
		{"Merge size mismatch", func() error {
			other := filepath.Join(dir, "small")
			os.WriteFile(other, make([]byte, PageSize), 0o600)
			return Merge(path, other, make([]uint64, 1))
		}(), "differ"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.err == nil || !strings.Contains(tc.err.Error(), tc.msg) {
				t.Fatalf("error %v; want one saying %q", tc.err, tc.msg)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "x")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed write left its file behind: %v", err)
	}
	if _, err := OpenMemory(path, memSize*2); !errors.Is(err, ErrMemorySize) {
		t.Errorf("OpenMemory of the wrong size: %v, want ErrMemorySize", err)
	}
}

func TestBitmapRuns(t *testing.T) {
	b := make(Bitmap, 3)
	for _, p := range []uint64{0, 1, 2, 63, 64, 65, 130, 191} {
		b.Set(p)
	}
	var got [][2]uint64
	b.runs(190, func(first, n uint64) error { got = append(got, [2]uint64{first, n}); return nil })
	want := [][2]uint64{{0, 3}, {63, 3}, {130, 1}}
	if len(got) != len(want) {
		t.Fatalf("runs %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("runs %v, want %v", got, want)
		}
	}
	stop := errors.New("stop")
	if err := b.runs(192, func(uint64, uint64) error { return stop }); err != stop {
		t.Fatalf("runs did not pass f's error: %v", err)
	}
}
