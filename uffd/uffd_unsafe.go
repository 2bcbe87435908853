package uffd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	apiVersion = 0xaa

	ioctlAPI        = 0xc018aa3f // _IOWR(0xAA, 0x3F, struct uffdio_api)
	ioctlRegister   = 0xc020aa00 // _IOWR(0xAA, 0x00, struct uffdio_register)
	ioctlUnregister = 0x8010aa01 // _IOR(0xAA, 0x01, struct uffdio_range)
	ioctlWake       = 0x8010aa02 // _IOR(0xAA, 0x02, struct uffdio_range)
	ioctlCopy       = 0xc028aa03 // _IOWR(0xAA, 0x03, struct uffdio_copy)
	ioctlDevNew     = 0xaa00     // _IO(0xAA, 0x00) on /dev/userfaultfd

	modeMissing         = 1 << 0
	featureMissingShmem = 1 << 5
	eventPagefault      = 0x12
	// MsgSize is the size of one struct uffd_msg.
	MsgSize     = 32
	copyIoctlOK = 1 << 0x03
)

// Register/Unregister/Wake/Copy ioctl request numbers, for seccomp policies.
const (
	IoctlRegister   = ioctlRegister
	IoctlUnregister = ioctlUnregister
)

type apiArg struct{ API, Features, Ioctls uint64 }
type rangeArg struct{ Start, Len uint64 }
type registerArg struct {
	Range        rangeArg
	Mode, Ioctls uint64
}
type copyArg struct {
	Dst, Src, Len, Mode uint64
	Copy                int64
}

// FD is a userfaultfd.
type FD struct{ fd int }

// New opens a userfaultfd that reports kernel-mode faults too (KVM's, and
// a system call's on guest buffers): it needs CAP_SYS_PTRACE, access to
// /dev/userfaultfd, or vm.unprivileged_userfaultfd=1. Open it before a jail
// drops privileges. The descriptor is non-blocking and close-on-exec.
func New() (*FD, error) {
	fd, _, errno := unix.Syscall(unix.SYS_USERFAULTFD, uintptr(uffdFlags), 0, 0)
	if errno == unix.EPERM {
		fd, errno = fromDevice(uffdFlags)
	}
	if errno != 0 {
		return nil, fmt.Errorf("userfaultfd: %w (needs CAP_SYS_PTRACE, access to /dev/userfaultfd, or vm.unprivileged_userfaultfd=1)", errno)
	}
	return setUp(int(fd))
}

const uffdFlags = unix.O_CLOEXEC | unix.O_NONBLOCK

// userModeOnly is userfaultfd(2)'s UFFD_USER_MODE_ONLY flag.
const userModeOnly = 1

// NewUserModeOnly opens a userfaultfd with UFFD_USER_MODE_ONLY, which an
// unprivileged process may get when vm.unprivileged_userfaultfd is 0. Its
// ranges fail kernel-mode accesses (KVM's, a read(2) into them) with
// EFAULT instead of reporting a fault, so it cannot serve guest memory.
func NewUserModeOnly() (*FD, error) {
	fd, _, errno := unix.Syscall(unix.SYS_USERFAULTFD, uintptr(uffdFlags|userModeOnly), 0, 0)
	if errno != 0 {
		return nil, fmt.Errorf("userfaultfd(UFFD_USER_MODE_ONLY): %w", errno)
	}
	return setUp(int(fd))
}

// DevicePath is the userfaultfd device (Linux 6.1+). Whoever may open it
// gets full userfaultfds without privileges: a privileged parent opens it
// and hands the open file to a confined child.
const DevicePath = "/dev/userfaultfd"

// OpenDevice opens DevicePath, to pass to a child that NewFromDevice.
func OpenDevice() (*os.File, error) {
	f, err := os.Open(DevicePath)
	if err != nil {
		return nil, fmt.Errorf("open %s (device processes get their userfaultfd through it; Linux 6.1+, root): %w", DevicePath, err)
	}
	return f, nil
}

// NewFromDevice makes a userfaultfd for this process through an open
// DevicePath (USERFAULTFD_IOC_NEW), which needs no capability.
func NewFromDevice(dev *os.File) (*FD, error) {
	fd, _, errno := unix.Syscall(unix.SYS_IOCTL, dev.Fd(), ioctlDevNew, uintptr(uffdFlags))
	if errno != 0 {
		return nil, fmt.Errorf("USERFAULTFD_IOC_NEW on %s: %w", dev.Name(), errno)
	}
	return setUp(int(fd))
}

func setUp(fd int) (*FD, error) {
	u := &FD{fd: fd}
	api := apiArg{API: apiVersion}
	if err := u.ioctl(ioctlAPI, unsafe.Pointer(&api)); err != nil {
		u.Close()
		return nil, fmt.Errorf("UFFDIO_API: %w", err)
	}
	if api.Features&featureMissingShmem == 0 {
		u.Close()
		return nil, errors.New("userfaultfd cannot handle missing pages of shared memory (no UFFD_FEATURE_MISSING_SHMEM; Linux 4.11+)")
	}
	return u, nil
}

func fromDevice(flags int) (uintptr, unix.Errno) {
	dev, err := os.Open("/dev/userfaultfd")
	if err != nil {
		return 0, unix.EPERM
	}
	defer dev.Close()
	fd, _, errno := unix.Syscall(unix.SYS_IOCTL, dev.Fd(), ioctlDevNew, uintptr(flags))
	return fd, errno
}

// FromFD adopts a userfaultfd received from another process (UFFDIO_API
// was done there).
func FromFD(fd int) *FD { return &FD{fd: fd} }

// Fd is the descriptor, to send to another process.
func (u *FD) Fd() int { return u.fd }

// Close closes the descriptor; pending faults are woken and retried
// without the userfaultfd (a shared-memory page then reads as zeros).
func (u *FD) Close() error {
	if u == nil || u.fd < 0 {
		return nil
	}
	err := unix.Close(u.fd)
	u.fd = -1
	return err
}

func (u *FD) ioctl(req uintptr, arg unsafe.Pointer) error {
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(u.fd), req, uintptr(arg)); errno != 0 {
		return errno
	}
	return nil
}

// Register asks for MISSING faults on [addr, addr+n) of this process's
// address space (page-aligned; a shared-memory mapping).
func (u *FD) Register(addr, n uint64) error {
	r := registerArg{Range: rangeArg{Start: addr, Len: n}, Mode: modeMissing}
	if err := u.ioctl(ioctlRegister, unsafe.Pointer(&r)); err != nil {
		return fmt.Errorf("UFFDIO_REGISTER %#x+%#x: %w", addr, n, err)
	}
	if r.Ioctls&copyIoctlOK == 0 {
		return errors.New("UFFDIO_REGISTER: UFFDIO_COPY is not available on this range")
	}
	return nil
}

// RegisterBytes registers a mapping of this process.
func (u *FD) RegisterBytes(m []byte) error { return u.Register(Addr(m), uint64(len(m))) }

// Unregister stops fault reporting for [addr, addr+n).
func (u *FD) Unregister(addr, n uint64) error {
	r := rangeArg{Start: addr, Len: n}
	if err := u.ioctl(ioctlUnregister, unsafe.Pointer(&r)); err != nil {
		return fmt.Errorf("UFFDIO_UNREGISTER %#x+%#x: %w", addr, n, err)
	}
	return nil
}

// Wake lets threads blocked on faults in [addr, addr+n) retry.
func (u *FD) Wake(addr, n uint64) error {
	r := rangeArg{Start: addr, Len: n}
	if err := u.ioctl(ioctlWake, unsafe.Pointer(&r)); err != nil {
		return fmt.Errorf("UFFDIO_WAKE %#x+%#x: %w", addr, n, err)
	}
	return nil
}

// Copy fills the missing page(s) at dst in the registering process's
// address space with src (a whole number of pages) and wakes the faulting
// threads. existed reports that the page was already there (another
// mapping of the same memory filled it): then only the wake is done.
func (u *FD) Copy(dst uint64, src []byte) (existed bool, err error) {
	for {
		c := copyArg{Dst: dst, Src: Addr(src), Len: uint64(len(src))}
		err := u.ioctl(ioctlCopy, unsafe.Pointer(&c))
		switch {
		case err == nil:
			return false, nil
		case errors.Is(err, unix.EAGAIN):
			continue // the address space changed under the copy; retry
		case errors.Is(err, unix.EEXIST):
			return true, u.Wake(dst, uint64(len(src)))
		default:
			return false, fmt.Errorf("UFFDIO_COPY %d bytes to %#x: %w", len(src), dst, err)
		}
	}
}

// ReadFaults reads pending fault messages into buf (a multiple of MsgSize)
// and appends the faulting page addresses to out. It returns out unchanged
// when nothing is pending (EAGAIN). Messages other than page faults are
// skipped.
func (u *FD) ReadFaults(buf []byte, out []uint64) ([]uint64, error) {
	n, err := unix.Read(u.fd, buf)
	if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
		return out, nil
	}
	if err != nil {
		return out, fmt.Errorf("read userfaultfd: %w", err)
	}
	for msg := buf[:n]; len(msg) >= MsgSize; msg = msg[MsgSize:] {
		if msg[0] != eventPagefault {
			continue
		}
		out = append(out, binary.LittleEndian.Uint64(msg[16:])&^(pageSize-1))
	}
	return out, nil
}

// Addr is the address of a mapping's first byte.
func Addr(b []byte) uint64 { return uint64(uintptr(unsafe.Pointer(&b[0]))) }

const pageSize = 4096
