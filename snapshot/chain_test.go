package snapshot

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// TestChainFillAndFlatten takes a full snapshot and two diffs of a
// changing memory, as the vmm does; filling memory from the newest diff's
// chain, and from the same diff flattened, both give the memory as it was
// at that diff, and the bases stay usable.
func TestChainFillAndFlatten(t *testing.T) {
	root := t.TempDir()
	r := rand.New(rand.NewPCG(7, 7))
	mem, m := newMemfd(t, memSize)
	touch(m, 100, r)
	write := func(name string, base string, dirty Bitmap) string {
		t.Helper()
		dir := filepath.Join(root, name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		s := captureState(t)
		s.Machine.MemSize = memSize
		s.Memory = Memory{File: "memory", Size: memSize, Kind: KindFull,
			Regions: []Region{{GPA: 0, Size: memSize}}}
		var err error
		if dirty == nil {
			_, err = WriteFull(filepath.Join(dir, "memory"), mem, memSize)
		} else {
			s.Memory.Kind, s.Memory.Base, s.Memory.DirtyPages = KindDiff, base, dirty
			_, err = WriteDiff(filepath.Join(dir, "memory"), mem, memSize, dirty)
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := Write(dir, s); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	full := write("full", "", nil)
	atFull := bytes.Clone(m)
	d1 := write("d1", "../full", touch(m, 50, r))
	atD1 := bytes.Clone(m)
	dirty2 := touch(m, 50, r)
	clear(m[0:PageSize]) // a page that becomes zero must be zero after the fill
	dirty2.Set(0)
	d2 := write("d2", filepath.Join(root, "d1"), dirty2)

	fillFrom := func(dir string) []byte {
		t.Helper()
		s, err := Read(dir)
		if err != nil {
			t.Fatal(err)
		}
		chain, err := Layers(dir, s)
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, memSize)
		if _, err := Fill(got, chain); err != nil {
			t.Fatal(err)
		}
		return got
	}
	for _, c := range []struct {
		dir  string
		want []byte
	}{{full, atFull}, {d1, atD1}, {d2, m}} {
		if !bytes.Equal(fillFrom(c.dir), c.want) {
			t.Errorf("memory filled from %s differs from the memory at that snapshot", filepath.Base(c.dir))
		}
	}
	if err := Flatten(d2); err != nil {
		t.Fatal(err)
	}
	s, err := Read(d2)
	if err != nil {
		t.Fatal(err)
	}
	if s.Memory.Kind != KindFull || s.Memory.Base != "" {
		t.Fatalf("flattened snapshot is %q with base %q, want full without base", s.Memory.Kind, s.Memory.Base)
	}
	os.RemoveAll(d1) // the flattened snapshot needs no base
	if !bytes.Equal(fillFrom(d2), m) {
		t.Error("memory filled from the flattened snapshot differs")
	}
	if !bytes.Equal(fillFrom(full), atFull) {
		t.Error("flattening changed the full base")
	}
	// d1 is gone: a diff on it cannot be resolved.
	d3 := write("d3", "../d1", touch(m, 1, r))
	s3, err := Read(d3)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Layers(d3, s3); !errors.Is(err, ErrChain) {
		t.Errorf("Layers with a missing base: err = %v, want ErrChain", err)
	}
	// A diff whose base is itself forms a loop.
	loop := write("loop", ".", touch(m, 1, r))
	sl, _ := Read(loop)
	if _, err := Layers(loop, sl); !errors.Is(err, ErrChain) {
		t.Errorf("Layers of a self-based diff: err = %v, want ErrChain", err)
	}
}
