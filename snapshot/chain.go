package snapshot

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// MaxChain bounds how many diffs a restore follows back to a full snapshot:
// a longer chain (or a loop) is refused. Merge diffs to shorten a chain.
const MaxChain = 64

// ErrChain says a diff snapshot's chain of bases is broken: a base is
// missing, of another size, or the chain loops or is too long.
var ErrChain = errors.New("broken chain of diff snapshots")

// Layer is one memory file of a chain: the full base (Dirty nil) or a
// diff holding the pages in Dirty.
type Layer struct {
	Path  string
	Dirty Bitmap
	Sums  *Sums // the file's chunk checksums; nil: not checked
}

// Layers resolves the memory of the snapshot in dir (whose state is s) to
// its chain of memory files, oldest first: a full memory file, then each
// diff to apply on top of it. A full snapshot is a chain of one.
func Layers(dir string, s *State) ([]Layer, error) {
	var chain []Layer
	seen := map[string]bool{}
	cur, st := dir, s
	for {
		abs, err := filepath.Abs(cur)
		if err != nil {
			return nil, fmt.Errorf("snapshot %s: %w", cur, err)
		}
		if seen[abs] || len(chain) >= MaxChain {
			return nil, fmt.Errorf("snapshot %s: more than %d diffs or a loop at %s: %w", dir, MaxChain, cur, ErrChain)
		}
		seen[abs] = true
		mem := filepath.Join(cur, st.Memory.File)
		if st.Memory.Kind == KindFull {
			chain = append(chain, Layer{Path: mem, Sums: st.Memory.Sums})
			break
		}
		chain = append(chain, Layer{Path: mem, Dirty: st.Memory.DirtyPages, Sums: st.Memory.Sums})
		base := st.Memory.Base
		if base == "" {
			return nil, fmt.Errorf("diff snapshot %s names no base: %w", cur, ErrChain)
		}
		if !filepath.IsAbs(base) {
			base = filepath.Join(cur, base)
		}
		fi, err := os.Stat(base)
		if err != nil {
			return nil, fmt.Errorf("base of diff snapshot %s: %v: %w", cur, err, ErrChain)
		}
		if !fi.IsDir() { // a bare full memory file
			if uint64(fi.Size()) != s.Memory.Size {
				return nil, fmt.Errorf("base %s holds %d bytes, the diff %d: %w", base, fi.Size(), s.Memory.Size, ErrMemorySize)
			}
			chain = append(chain, Layer{Path: base})
			break
		}
		next, err := Read(base)
		if err != nil {
			return nil, fmt.Errorf("base of diff snapshot %s: %w", cur, err)
		}
		if next.Memory.Size != s.Memory.Size {
			return nil, fmt.Errorf("base %s holds %d bytes of memory, the diff %d: %w", base, next.Memory.Size, s.Memory.Size, ErrMemorySize)
		}
		cur, st = base, next
	}
	for i, j := 0, len(chain)-1; i < j; i, j = i+1, j-1 {
		chain[i], chain[j] = chain[j], chain[i]
	}
	return chain, nil
}

// ApplyDiff copies the pages set in dirty from the diff memory file at path
// into dst (guest memory holding the diff's base) and returns the bytes
// read. With sums, the chunks those pages are in are checked first.
func ApplyDiff(dst []byte, path string, dirty Bitmap, sums *Sums) (uint64, error) {
	size := uint64(len(dst))
	f, err := OpenMemory(path, size)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if want := BitmapWords(size); len(dirty) != want {
		return 0, fmt.Errorf("apply memory diff %s: dirty bitmap has %d words, %d bytes of memory need %d", path, len(dirty), size, want)
	}
	if sums != nil {
		// Every chunk a page comes from is checked before any is copied.
		l := Layer{Path: path, Dirty: dirty}
		if err := sums.verifyFile(f, size, l.chunkDirty); err != nil {
			return 0, fmt.Errorf("apply memory diff: %w", err)
		}
	}
	var read uint64
	err = dirty.runs(size/PageSize, func(first, n uint64) error {
		off, end := first*PageSize, (first+n)*PageSize
		if _, err := f.ReadAt(dst[off:end], int64(off)); err != nil {
			return fmt.Errorf("read %#x-%#x: %w", off, end, err)
		}
		read += end - off
		return nil
	})
	if err != nil {
		return read, fmt.Errorf("apply memory diff %s: %w", path, err)
	}
	return read, nil
}

// Fill loads a chain from Layers into dst, a fresh all-zero guest memory
// mapping: the full base's data regions, then each diff's pages.
func Fill(dst []byte, chain []Layer) (uint64, error) {
	if len(chain) == 0 || chain[0].Dirty != nil {
		return 0, fmt.Errorf("fill guest memory: the chain does not start with a full memory file: %w", ErrChain)
	}
	f, err := OpenMemory(chain[0].Path, uint64(len(dst)))
	if err != nil {
		return 0, err
	}
	n, err := Populate(dst, f)
	if err == nil && chain[0].Sums != nil {
		// dst holds exactly the file (it was all zeros before).
		if err = chain[0].Sums.verifyLoaded(f, dst); err != nil {
			clear(dst)
			err = fmt.Errorf("fill guest memory: %w", err)
		}
	}
	f.Close()
	if err != nil {
		return n, err
	}
	for _, l := range chain[1:] {
		m, err := ApplyDiff(dst, l.Path, l.Dirty, l.Sums)
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// Flatten turns the diff snapshot in dir into a full one that no longer
// needs its bases: the chain's memory is merged into a new sparse memory
// file in dir, which replaces the diff, and the state is rewritten as full.
// The bases are not changed. A crash midway leaves the diff as it was or
// the full snapshot, never a mix (the state file is written last).
func Flatten(dir string) error {
	s, err := Read(dir)
	if err != nil {
		return fmt.Errorf("flatten: %w", err)
	}
	if s.Memory.Kind == KindFull {
		return nil
	}
	chain, err := Layers(dir, s)
	if err != nil {
		return fmt.Errorf("flatten %s: %w", dir, err)
	}
	// Checked first: a corrupted layer must not become a new full file
	// with checksums of its own.
	for _, l := range chain {
		if err := l.verify(s.Memory.Size); err != nil {
			return fmt.Errorf("flatten %s: %w", dir, err)
		}
	}
	merged := filepath.Join(dir, s.Memory.File+".full")
	defer os.Remove(merged)
	if err := copySparse(chain[0].Path, merged, s.Memory.Size); err != nil {
		return fmt.Errorf("flatten %s: %w", dir, err)
	}
	for _, l := range chain[1:] {
		if err := Merge(merged, l.Path, l.Dirty); err != nil {
			return fmt.Errorf("flatten %s: %w", dir, err)
		}
	}
	full := *s
	full.Memory.Kind, full.Memory.Base, full.Memory.DirtyPages = KindFull, "", nil
	if full.Memory.Sums, err = SumMemory(merged, s.Memory.Size); err != nil {
		return fmt.Errorf("flatten %s: %w", dir, err)
	}
	full.Memory.File = "memory-full"
	if s.Memory.File == full.Memory.File {
		full.Memory.File = "memory"
	}
	if err := os.Rename(merged, filepath.Join(dir, full.Memory.File)); err != nil {
		return fmt.Errorf("flatten %s: %w", dir, err)
	}
	if err := Write(dir, &full); err != nil {
		return fmt.Errorf("flatten %s: %w", dir, err)
	}
	os.Remove(filepath.Join(dir, s.Memory.File))
	return nil
}

// copySparse copies the data regions of the memory file src to a new
// sparse file dst of size bytes.
func copySparse(src, dst string, size uint64) error {
	in, err := OpenMemory(src, size)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := createSparse(dst, size)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	err = dataRanges(in, size, func(start, end uint64) error {
		for off := start; off < end; {
			chunk := buf[:min(uint64(len(buf)), end-off)]
			if _, err := in.ReadAt(chunk, int64(off)); err != nil {
				return fmt.Errorf("read %s at %#x: %w", src, off, err)
			}
			if _, err := out.WriteAt(chunk, int64(off)); err != nil {
				return fmt.Errorf("write %s at %#x: %w", dst, off, err)
			}
			off += uint64(len(chunk))
		}
		return nil
	})
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// verify checks the chunks of the layer's file that a restore would read:
// all of a full file, the chunks holding a diff's pages.
func (l Layer) verify(size uint64) error {
	if l.Sums == nil {
		return nil
	}
	f, err := OpenMemory(l.Path, size)
	if err != nil {
		return err
	}
	defer f.Close()
	return l.Sums.verifyFile(f, size, func(c uint64) bool { return l.Dirty == nil || l.chunkDirty(c) })
}

// chunkDirty reports whether the diff holds a page of chunk c.
func (l Layer) chunkDirty(c uint64) bool {
	const pagesPerChunk = SumChunk / PageSize
	for p := c * pagesPerChunk; p < (c+1)*pagesPerChunk; p++ {
		if l.Dirty.Has(p) {
			return true
		}
	}
	return false
}
