package snapshot

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// This file is the prototype of restore mechanism (a) in docs/SNAPSHOTS.md:
// a userfaultfd in MISSING mode on a MAP_SHARED mapping of the guest memfd
// that fills each page on first touch from the memory file with
// UFFDIO_COPY. A page filled through any mapping lands in the memfd's page
// cache, so every other mapping (a device process's) sees it. x/sys/unix
// has no userfaultfd ABI, so it is spelled out here from
// include/uapi/linux/userfaultfd.h.

const (
	uffdAPI = 0xaa

	// ioctl numbers: _IOWR/_IOR(0xAA, nr, struct).
	uffdioAPI        = 0xc018aa3f // _IOWR(0xAA, 0x3F, struct uffdio_api)
	uffdioRegister   = 0xc020aa00 // _IOWR(0xAA, 0x00, struct uffdio_register)
	uffdioUnregister = 0x8010aa01 // _IOR(0xAA, 0x01, struct uffdio_range)
	uffdioWake       = 0x8010aa02 // _IOR(0xAA, 0x02, struct uffdio_range)
	uffdioCopy       = 0xc028aa03 // _IOWR(0xAA, 0x03, struct uffdio_copy)
	userfaultfdNew   = 0xaa00     // _IO(0xAA, 0x00) on /dev/userfaultfd

	uffdRegisterModeMissing = 1 << 0
	uffdFeatureMissingShmem = 1 << 5
	uffdUserModeOnly        = 1 // userfaultfd(2) flag UFFD_USER_MODE_ONLY
	uffdEventPagefault      = 0x12
	uffdMsgSize             = 32
	uffdCopyIoctlBit        = 1 << 0x03
)

type uffdioAPIArg struct{ API, Features, Ioctls uint64 }
type uffdioRange struct{ Start, Len uint64 }
type uffdioRegisterArg struct {
	Range        uffdioRange
	Mode, Ioctls uint64
}
type uffdioCopyArg struct {
	Dst, Src, Len, Mode uint64
	Copy                int64
}

// userfault is one userfaultfd filling registered ranges from src.
type userfault struct {
	fd     int
	stop   int // eventfd that ends serve
	filled atomic.Uint64
	woken  atomic.Uint64 // faults another filler had already satisfied (EEXIST)
}

// newUserfault opens a userfaultfd. userModeOnly asks for UFFD_USER_MODE_ONLY,
// which an unprivileged process may get when vm.unprivileged_userfaultfd is
// 0, but whose ranges then fail kernel-mode accesses (KVM's, read(2) into
// them) with EFAULT instead of reporting a fault.
func newUserfault(userModeOnly bool) (*userfault, error) {
	flags := unix.O_CLOEXEC | unix.O_NONBLOCK
	if userModeOnly {
		flags |= uffdUserModeOnly
	}
	fd, _, errno := unix.Syscall(unix.SYS_USERFAULTFD, uintptr(flags), 0, 0)
	if errno == unix.EPERM && !userModeOnly {
		// Without CAP_SYS_PTRACE, /dev/userfaultfd (if its mode allows) still
		// hands out full userfaultfds.
		fd, errno = userfaultFromDevice(flags)
	}
	if errno != 0 {
		return nil, fmt.Errorf("userfaultfd: %w (needs CAP_SYS_PTRACE, access to /dev/userfaultfd, or vm.unprivileged_userfaultfd=1)", errno)
	}
	u := &userfault{fd: int(fd), stop: -1}
	api := uffdioAPIArg{API: uffdAPI}
	if err := u.ioctl(uffdioAPI, unsafe.Pointer(&api)); err != nil {
		u.close()
		return nil, fmt.Errorf("UFFDIO_API: %w", err)
	}
	if api.Features&uffdFeatureMissingShmem == 0 {
		u.close()
		return nil, errors.New("userfaultfd cannot handle missing pages of shared memory (no UFFD_FEATURE_MISSING_SHMEM)")
	}
	stop, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		u.close()
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	u.stop = stop
	return u, nil
}

func userfaultFromDevice(flags int) (uintptr, unix.Errno) {
	dev, err := os.Open("/dev/userfaultfd")
	if err != nil {
		return 0, unix.EPERM
	}
	defer dev.Close()
	fd, _, errno := unix.Syscall(unix.SYS_IOCTL, dev.Fd(), userfaultfdNew, uintptr(flags))
	return fd, errno
}

func (u *userfault) ioctl(req uintptr, arg unsafe.Pointer) error {
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(u.fd), req, uintptr(arg)); errno != 0 {
		return errno
	}
	return nil
}

func addrOf(b []byte) uint64 { return uint64(uintptr(unsafe.Pointer(&b[0]))) }

// register asks for MISSING faults on m (page-aligned, from mmap).
func (u *userfault) register(m []byte) error {
	r := uffdioRegisterArg{Range: uffdioRange{Start: addrOf(m), Len: uint64(len(m))}, Mode: uffdRegisterModeMissing}
	if err := u.ioctl(uffdioRegister, unsafe.Pointer(&r)); err != nil {
		return fmt.Errorf("UFFDIO_REGISTER %d bytes: %w", len(m), err)
	}
	if r.Ioctls&uffdCopyIoctlBit == 0 {
		return errors.New("UFFDIO_REGISTER: UFFDIO_COPY is not available on this range")
	}
	return nil
}

// fill resolves a fault at page address dst with the page at src.
func (u *userfault) fill(dst uint64, src []byte) error {
	for {
		c := uffdioCopyArg{Dst: dst, Src: addrOf(src), Len: PageSize}
		err := u.ioctl(uffdioCopy, unsafe.Pointer(&c))
		switch {
		case err == nil:
			u.filled.Add(1)
			return nil
		case errors.Is(err, unix.EAGAIN):
			continue
		case errors.Is(err, unix.EEXIST):
			// Another mapping's filler got there first: the page is in
			// the page cache, so just let the faulting thread go on.
			u.woken.Add(1)
			w := uffdioRange{Start: dst, Len: PageSize}
			if err := u.ioctl(uffdioWake, unsafe.Pointer(&w)); err != nil {
				return fmt.Errorf("UFFDIO_WAKE %#x: %w", dst, err)
			}
			return nil
		default:
			return fmt.Errorf("UFFDIO_COPY to %#x: %w", dst, err)
		}
	}
}

// serve handles faults in dst (a registered mapping) by copying the same
// offset of src (the memory file, mapped) until shutdown is called.
func (u *userfault) serve(dst, src []byte) error {
	base := addrOf(dst)
	buf := make([]byte, 64*uffdMsgSize)
	fds := []unix.PollFd{{Fd: int32(u.fd), Events: unix.POLLIN}, {Fd: int32(u.stop), Events: unix.POLLIN}}
	for {
		if _, err := unix.Poll(fds, -1); err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("poll userfaultfd: %w", err)
		}
		if fds[1].Revents != 0 {
			return nil
		}
		n, err := unix.Read(u.fd, buf)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read userfaultfd: %w", err)
		}
		for msg := buf[:n]; len(msg) >= uffdMsgSize; msg = msg[uffdMsgSize:] {
			if msg[0] != uffdEventPagefault {
				continue
			}
			page := binary.LittleEndian.Uint64(msg[16:]) &^ (PageSize - 1)
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
	unix.Close(u.fd)
	if u.stop >= 0 {
		unix.Close(u.stop)
	}
}
