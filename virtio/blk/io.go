package blk

import (
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// iovMax is Linux's IOV_MAX; longer vectors are issued in parts.
const iovMax = 1024

// rwFull reads (or writes) all of bufs at off with preadv/pwritev,
// carrying on after short transfers. Reading past the end of the file is
// an error: the disk shrank under us.
func rwFull(fd int, bufs [][]byte, off int64, write bool) error {
	for len(bufs) > 0 {
		vec := bufs[:min(len(bufs), iovMax)]
		var n int
		var err error
		if write {
			n, err = unix.Pwritev(fd, vec, off)
		} else {
			n, err = unix.Preadv(fd, vec, off)
		}
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("%s at offset %d: %w", opName(write), off, err)
		}
		if n == 0 {
			return fmt.Errorf("%s at offset %d: %w", opName(write), off, io.ErrUnexpectedEOF)
		}
		off += int64(n)
		bufs = advance(bufs, n)
	}
	return nil
}

func opName(write bool) string {
	if write {
		return "pwritev"
	}
	return "preadv"
}

// advance drops the first n bytes of bufs.
func advance(bufs [][]byte, n int) [][]byte {
	for len(bufs) > 0 && n >= len(bufs[0]) {
		n -= len(bufs[0])
		bufs = bufs[1:]
	}
	if len(bufs) > 0 && n > 0 {
		bufs = append([][]byte{bufs[0][n:]}, bufs[1:]...)
	}
	return bufs
}

func fdatasync(fd int) error {
	for {
		err := unix.Fdatasync(fd)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// zeroer discards and zeroes ranges with fallocate, falling back to
// writing zeros where the file system cannot (no fallocate modes on some
// file systems; ZERO_RANGE is missing on others).
type zeroer struct {
	fd          int
	noFallocate atomic.Bool // fallocate said EOPNOTSUPP once: write zeros
}

// zeroChunk is the most zeros written by one pwrite in the fallback.
var zeroChunk [64 << 10]byte

// discard punches a hole. Discard is a hint (§5.2.6.2), so a file system
// that cannot punch holes makes it a successful no-op.
func (z *zeroer) discard(off, n int64) error {
	err := fallocate(z.fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
	if unsupported(err) {
		return nil
	}
	return err
}

// zero makes [off, off+n) read as zeros: a hole if unmap is allowed, else
// ZERO_RANGE, else written zeros.
func (z *zeroer) zero(off, n int64, unmap bool) error {
	if !z.noFallocate.Load() {
		mode := unix.FALLOC_FL_ZERO_RANGE | unix.FALLOC_FL_KEEP_SIZE
		if unmap {
			mode = unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE
		}
		err := fallocate(z.fd, uint32(mode), off, n)
		if !unsupported(err) {
			return err
		}
		if !unmap {
			z.noFallocate.Store(true)
		}
	}
	for n > 0 {
		k := min(n, int64(len(zeroChunk)))
		w, err := unix.Pwrite(z.fd, zeroChunk[:k], off)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("write zeros at offset %d: %w", off, err)
		}
		if w == 0 {
			return fmt.Errorf("write zeros at offset %d: %w", off, io.ErrShortWrite)
		}
		off, n = off+int64(w), n-int64(w)
	}
	return nil
}

func fallocate(fd int, mode uint32, off, n int64) error {
	for {
		err := unix.Fallocate(fd, mode, off, n)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("fallocate mode %#x at offset %d, %d bytes: %w", mode, off, n, err)
		}
		return nil
	}
}

func unsupported(err error) bool {
	return errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS)
}
