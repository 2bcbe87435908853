package snapshot

import (
	"errors"
	"fmt"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/sietch-vm/sietch/uffd"
)

// This file is the prototype of restore mechanism (a) in docs/SNAPSHOTS.md,
// kept for its tests and benchmarks: a userfaultfd in MISSING mode on a
// MAP_SHARED mapping of the guest memfd that fills each page on first touch
// from the memory file with UFFDIO_COPY. A page filled through any mapping
// lands in the memfd's page cache, so every other mapping (a device
// process's) sees it. The vmm's pager (vmm/lazy.go) is the real thing.

// userfault is one userfaultfd filling registered ranges from src.
type userfault struct {
	u      *uffd.FD
	stop   int // eventfd that ends serve
	filled atomic.Uint64
	woken  atomic.Uint64 // faults another filler had already satisfied (EEXIST)
}

// newUserfault opens a userfaultfd; userModeOnly asks for
// UFFD_USER_MODE_ONLY (see uffd.NewUserModeOnly).
func newUserfault(userModeOnly bool) (*userfault, error) {
	open := uffd.New
	if userModeOnly {
		open = uffd.NewUserModeOnly
	}
	u, err := open()
	if err != nil {
		return nil, err
	}
	stop, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		u.Close()
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	return &userfault{u: u, stop: stop}, nil
}

func addrOf(b []byte) uint64 { return uffd.Addr(b) }

// register asks for MISSING faults on m (page-aligned, from mmap).
func (u *userfault) register(m []byte) error { return u.u.RegisterBytes(m) }

// fill resolves a fault at page address dst with the page at src.
func (u *userfault) fill(dst uint64, src []byte) error {
	existed, err := u.u.Copy(dst, src)
	switch {
	case err != nil:
		return err
	case existed:
		u.woken.Add(1)
	default:
		u.filled.Add(1)
	}
	return nil
}

// serve handles faults in dst (a registered mapping) by copying the same
// offset of src (the memory file, mapped) until shutdown is called.
func (u *userfault) serve(dst, src []byte) error {
	base := addrOf(dst)
	buf := make([]byte, 64*uffd.MsgSize)
	var faults []uint64
	fds := []unix.PollFd{{Fd: int32(u.u.Fd()), Events: unix.POLLIN}, {Fd: int32(u.stop), Events: unix.POLLIN}}
	for {
		if _, err := unix.Poll(fds, -1); err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("poll userfaultfd: %w", err)
		}
		if fds[1].Revents != 0 {
			return nil
		}
		var err error
		if faults, err = u.u.ReadFaults(buf, faults[:0]); err != nil {
			return err
		}
		for _, page := range faults {
			off := page - base
			if page < base || off >= uint64(len(dst)) || off+PageSize > uint64(len(src)) {
				return fmt.Errorf("fault at %#x outside the registered %#x+%#x", page, base, len(dst))
			}
			if err := u.fill(page, src[off:off+PageSize]); err != nil {
				return err
			}
		}
	}
}

// shutdown makes serve return.
func (u *userfault) shutdown() {
	var one [8]byte
	one[0] = 1
	unix.Write(u.stop, one[:])
}

func (u *userfault) close() {
	u.u.Close()
	if u.stop >= 0 {
		unix.Close(u.stop)
	}
}
