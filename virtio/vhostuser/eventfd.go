package vhostuser

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// EventFD is a Linux eventfd: the kick (driver → device) and call
// (device → driver) doorbells of a queue. It is used through Go's poller,
// so Close wakes a goroutine blocked in Wait.
type EventFD struct {
	fd int
	f  *os.File
}

// NewEventFD creates an eventfd with a zero counter.
func NewEventFD() (*EventFD, error) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("create eventfd: %w", err)
	}
	return wrapEventFD(fd, "eventfd"), nil
}

// eventFDFrom takes ownership of fd, an eventfd received from a peer.
func eventFDFrom(fd int, name string) (*EventFD, error) {
	// The poller needs non-blocking mode. The flag lives on the shared file
	// description, which is harmless for the sender: kick writes never block
	// and KVM does not care.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("set %s non-blocking: %w", name, err)
	}
	return wrapEventFD(fd, name), nil
}

// dupEventFD opens a second handle on fd so that closing it stops only its
// users, not the ring's long-lived descriptor.
func dupEventFD(fd int, name string) (*EventFD, error) {
	d, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("duplicate %s: %w", name, err)
	}
	return eventFDFrom(d, name)
}

func wrapEventFD(fd int, name string) *EventFD {
	return &EventFD{fd: fd, f: os.NewFile(uintptr(fd), name)}
}

// Fd returns the descriptor, for sending it to a peer or handing it to KVM.
// It stays valid until Close.
func (e *EventFD) Fd() int { return e.fd }

// ErrEventFDClosed is returned by Wait once the EventFD is closed; a queue
// goroutine takes it as its signal to return.
var ErrEventFDClosed = errors.New("eventfd closed")

// Wait blocks until the counter is non-zero, then returns and resets it.
func (e *EventFD) Wait() (uint64, error) {
	var b [8]byte
	n, err := e.f.Read(b[:])
	if err != nil {
		if errors.Is(err, os.ErrClosed) {
			return 0, ErrEventFDClosed
		}
		return 0, fmt.Errorf("read eventfd: %w", err)
	}
	if n != len(b) {
		return 0, fmt.Errorf("read eventfd: short read of %d bytes", n)
	}
	return binary.NativeEndian.Uint64(b[:]), nil
}

// Signal adds one to the counter, waking a waiter.
func (e *EventFD) Signal() error {
	var b [8]byte
	binary.NativeEndian.PutUint64(b[:], 1)
	if _, err := e.f.Write(b[:]); err != nil {
		if errors.Is(err, os.ErrClosed) {
			return ErrEventFDClosed
		}
		return fmt.Errorf("write eventfd: %w", err)
	}
	return nil
}

// Close releases the descriptor and wakes any Wait with ErrEventFDClosed.
func (e *EventFD) Close() error {
	return e.f.Close()
}
