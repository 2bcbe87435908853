package snapshot

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Memory files are guest RAM in memfd order (file offset = memfd offset),
// as sparse files: a page that is all zeros is a hole, so a guest that
// touched 1% of its RAM makes a file that takes about 1% of it on disk.

var zeroPage [PageSize]byte

// WriteFull writes the first size bytes of mem (the guest memfd, with the
// vCPUs paused) to a new sparse file at path: only the memfd's data
// regions (SEEK_DATA/SEEK_HOLE) are read and only pages that are not all
// zeros are written. It fsyncs the file and returns the bytes written.
//
// Do not use it on a VM restored lazily whose pages are not all filled in
// yet: unfilled pages are holes in the memfd and would be saved as zeros.
// Take a diff against the snapshot it was restored from instead.
func WriteFull(path string, mem *os.File, size uint64) (written uint64, err error) {
	return writeSparse(path, mem, size, "full", func(src []byte, out *os.File) (uint64, error) {
		var written uint64
		err := dataRanges(mem, size, func(start, end uint64) error {
			n, err := writeNonZero(out, src, start, end)
			written += n
			return err
		})
		return written, err
	})
}

// WriteDiff writes a size-byte sparse file at path holding only the pages
// set in dirty (one bit per 4 KiB page of mem, from KVM_GET_DIRTY_LOG in
// memfd order, plus pages the vmm or devices wrote). Dirty pages that are
// all zeros stay holes too: store dirty in State.Memory.DirtyPages, since
// the file alone cannot tell "unchanged" from "now zero".
func WriteDiff(path string, mem *os.File, size uint64, dirty []uint64) (written uint64, err error) {
	if want := BitmapWords(size); len(dirty) != want {
		return 0, fmt.Errorf("diff memory snapshot: dirty bitmap has %d words, %d bytes of memory need %d", len(dirty), size, want)
	}
	return writeSparse(path, mem, size, "diff", func(src []byte, out *os.File) (uint64, error) {
		var written uint64
		err := Bitmap(dirty).runs(size/PageSize, func(first, n uint64) error {
			w, err := writeNonZero(out, src, first*PageSize, (first+n)*PageSize)
			written += w
			return err
		})
		return written, err
	})
}

// writeSparse maps mem, creates a size-byte sparse file at path, lets fill
// write its pages, then fsyncs; on any error the file is removed. kind
// names the snapshot in errors.
func writeSparse(path string, mem *os.File, size uint64, kind string, fill func(src []byte, out *os.File) (uint64, error)) (uint64, error) {
	src, err := mapMemory(mem, size)
	if err != nil {
		return 0, fmt.Errorf("%s memory snapshot: %w", kind, err)
	}
	defer unix.Munmap(src)
	out, err := createSparse(path, size)
	if err != nil {
		return 0, fmt.Errorf("%s memory snapshot: %w", kind, err)
	}
	written, err := fill(src, out)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return 0, fmt.Errorf("%s memory snapshot to %s: %w", kind, path, err)
	}
	return written, nil
}

// Merge applies the diff memory file at diffPath, whose pages are those set
// in dirty, onto the memory file at basePath in place: afterwards basePath
// holds exactly what a full snapshot taken at the diff's time would (dirty
// pages that became zero are punched out). basePath is changed, so it no
// longer matches its own state file; copy it first if that snapshot must
// stay usable. An interrupted Merge leaves basePath a mix: redo it.
func Merge(basePath, diffPath string, dirty []uint64) error {
	base, err := os.OpenFile(basePath, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("merge memory diff: open base: %w", err)
	}
	defer base.Close()
	diff, err := os.Open(diffPath)
	if err != nil {
		return fmt.Errorf("merge memory diff: open diff: %w", err)
	}
	defer diff.Close()
	bi, err := base.Stat()
	if err != nil {
		return fmt.Errorf("merge memory diff: %w", err)
	}
	di, err := diff.Stat()
	if err != nil {
		return fmt.Errorf("merge memory diff: %w", err)
	}
	size := uint64(di.Size())
	if bi.Size() != di.Size() || size%PageSize != 0 {
		return fmt.Errorf("merge memory diff %s onto %s: sizes %d and %d differ or are not whole pages: %w",
			diffPath, basePath, di.Size(), bi.Size(), ErrMemorySize)
	}
	if want := BitmapWords(size); len(dirty) != want {
		return fmt.Errorf("merge memory diff %s: dirty bitmap has %d words, %d bytes of memory need %d", diffPath, len(dirty), size, want)
	}
	buf := make([]byte, 1<<20)
	err = Bitmap(dirty).runs(size/PageSize, func(first, n uint64) error {
		for off, end := first*PageSize, (first+n)*PageSize; off < end; {
			chunk := buf[:min(uint64(len(buf)), end-off)]
			if _, err := diff.ReadAt(chunk, int64(off)); err != nil {
				return fmt.Errorf("read diff at %#x: %w", off, err)
			}
			if err := applyChunk(base, chunk, off); err != nil {
				return err
			}
			off += uint64(len(chunk))
		}
		return nil
	})
	if err == nil {
		err = base.Sync()
	}
	if err != nil {
		return fmt.Errorf("merge memory diff %s onto %s: %w", diffPath, basePath, err)
	}
	return nil
}

// applyChunk writes chunk's non-zero pages to f at off and punches holes
// where its pages are zero.
func applyChunk(f *os.File, chunk []byte, off uint64) error {
	n := uint64(len(chunk))
	for i := uint64(0); i < n; {
		zero := isZero(chunk[i : i+PageSize])
		j := i + PageSize
		for j < n && isZero(chunk[j:j+PageSize]) == zero {
			j += PageSize
		}
		if zero {
			if err := punchHole(f, off+i, j-i); err != nil {
				return err
			}
		} else if _, err := f.WriteAt(chunk[i:j], int64(off+i)); err != nil {
			return fmt.Errorf("write at %#x: %w", off+i, err)
		}
		i = j
	}
	return nil
}

// OpenMemory opens a memory file for restore, read-only, and checks that it
// holds size bytes.
func OpenMemory(path string, size uint64) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open memory file: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open memory file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("memory file %s is not a regular file: %w", path, ErrIncomplete)
	}
	if uint64(fi.Size()) != size {
		f.Close()
		return nil, fmt.Errorf("memory file %s is %d bytes, the state says %d: %w", path, fi.Size(), size, ErrMemorySize)
	}
	return f, nil
}

// Populate copies the memory file src into dst (a fresh, all-zero guest
// memfd mapping of the same size) eagerly, reading only the file's data
// regions, and returns the bytes read. This is restore mechanism (b) of
// docs/SNAPSHOTS.md.
func Populate(dst []byte, src *os.File) (uint64, error) {
	fi, err := src.Stat()
	if err != nil {
		return 0, fmt.Errorf("populate guest memory: %w", err)
	}
	size := uint64(len(dst))
	if uint64(fi.Size()) != size {
		return 0, fmt.Errorf("populate guest memory from %s: file is %d bytes, memory %d: %w", src.Name(), fi.Size(), size, ErrMemorySize)
	}
	var read uint64
	err = dataRanges(src, size, func(start, end uint64) error {
		if _, err := src.ReadAt(dst[start:end], int64(start)); err != nil {
			return fmt.Errorf("read %#x-%#x: %w", start, end, err)
		}
		read += end - start
		return nil
	})
	if err != nil {
		return read, fmt.Errorf("populate guest memory from %s: %w", src.Name(), err)
	}
	return read, nil
}

// dataRanges calls f for each data region [start, end) of the first size
// bytes of file, page-aligned, as SEEK_DATA/SEEK_HOLE report them. It moves
// the file offset.
func dataRanges(file *os.File, size uint64, f func(start, end uint64) error) error {
	for off := uint64(0); off < size; {
		d, err := file.Seek(int64(off), unix.SEEK_DATA)
		if errors.Is(err, syscall.ENXIO) {
			return nil // no data after off
		}
		if err != nil {
			return fmt.Errorf("find data after %#x: %w", off, err)
		}
		h, err := file.Seek(d, unix.SEEK_HOLE)
		if err != nil {
			return fmt.Errorf("find hole after %#x: %w", d, err)
		}
		start := uint64(d) &^ (PageSize - 1)
		end := min((uint64(h)+PageSize-1)&^(PageSize-1), size)
		if start >= size {
			return nil
		}
		if end <= off {
			return fmt.Errorf("SEEK_HOLE went back from %#x to %#x", off, end)
		}
		if err := f(start, end); err != nil {
			return err
		}
		off = end
	}
	return nil
}

// writeNonZero writes the non-zero pages of src[start:end] to out at the
// same offsets and returns how many bytes it wrote.
func writeNonZero(out *os.File, src []byte, start, end uint64) (uint64, error) {
	var written uint64
	for i := start; i < end; {
		if isZero(src[i : i+PageSize]) {
			i += PageSize
			continue
		}
		j := i + PageSize
		for j < end && !isZero(src[j:j+PageSize]) {
			j += PageSize
		}
		if _, err := out.WriteAt(src[i:j], int64(i)); err != nil {
			return written, fmt.Errorf("write at %#x: %w", i, err)
		}
		written += j - i
		i = j
	}
	return written, nil
}

func isZero(p []byte) bool { return bytes.Equal(p, zeroPage[:len(p)]) }

// createSparse creates (or truncates) path as a size-byte file of holes.
func createSparse(path string, size uint64) (*os.File, error) {
	out, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create memory file: %w", err)
	}
	if err := out.Truncate(int64(size)); err != nil {
		out.Close()
		os.Remove(path)
		return nil, fmt.Errorf("size memory file %s to %d bytes: %w", path, size, err)
	}
	return out, nil
}

// mapMemory maps the first size bytes of mem read-only.
func mapMemory(mem *os.File, size uint64) ([]byte, error) {
	if size == 0 || size%PageSize != 0 {
		return nil, fmt.Errorf("memory size %d is not a positive multiple of %d", size, PageSize)
	}
	fi, err := mem.Stat()
	if err != nil {
		return nil, fmt.Errorf("guest memory: %w", err)
	}
	if uint64(fi.Size()) < size {
		return nil, fmt.Errorf("guest memory file holds %d bytes, asked to save %d", fi.Size(), size)
	}
	rc, err := mem.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("guest memory: %w", err)
	}
	var m []byte
	var merr error
	if err := rc.Control(func(fd uintptr) {
		m, merr = unix.Mmap(int(fd), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	}); err != nil {
		return nil, fmt.Errorf("guest memory: %w", err)
	}
	if merr != nil {
		return nil, fmt.Errorf("map guest memory (%d MiB) to read it: %w", size>>20, merr)
	}
	return m, nil
}

// punchHole deallocates [off, off+n) of f so that it reads as zeros; where
// the file system cannot punch holes it writes zeros.
func punchHole(f *os.File, off, n uint64) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) {
		ferr = unix.Fallocate(int(fd), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, int64(off), int64(n))
	}); err != nil {
		return err
	}
	if ferr == nil {
		return nil
	}
	if !errors.Is(ferr, unix.EOPNOTSUPP) {
		return fmt.Errorf("punch hole at %#x+%#x: %w", off, n, ferr)
	}
	for done := uint64(0); done < n; done += PageSize {
		if _, err := f.WriteAt(zeroPage[:], int64(off+done)); err != nil {
			return fmt.Errorf("zero page at %#x: %w", off+done, err)
		}
	}
	return nil
}
