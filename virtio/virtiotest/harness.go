// Package virtiotest drives a vhostuser.DeviceModel through a real vhost-user session, as a guest driver would, for device tests.
package virtiotest

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sietch-vm/sietch/virtio/vhostuser"
)

// Guest RAM layout: one region at RAMBase in guest-physical space, which the
// front-end "maps" at FrontendVA. The two differ on purpose so that a device
// mixing them up fails.
const (
	RAMBase    = 0x4000_0000
	FrontendVA = 0x7f12_3400_0000
)

// Options configure a Harness. Zero values pick the defaults.
type Options struct {
	RAM       int    // guest RAM bytes; default 16 MiB
	QueueSize uint16 // entries per queue; default min(256, dev.MaxQueueSize())
	// Features the driver is willing to ack; it acks those the device
	// offers. 0 means everything offered. Clear virtio.FeatureEventIdx
	// (e.g. ^uint64(0) &^ virtio.FeatureEventIdx) to test without it.
	Features uint64
	Timeout  time.Duration // bound on every wait; default 30 s
	Log      *slog.Logger  // back-end log; default discard
	// Bench skips poisoning In buffers and copying them back (Used.In is
	// nil), so that benchmarks measure the device rather than the driver.
	Bench bool
}

// Harness is a vhost-user front-end plus guest driver serving one DeviceModel
// on the other end of a socket pair. Use it from the test goroutine; each
// Queue may be driven by its own goroutine.
type Harness struct {
	t        testing.TB
	opts     Options
	fe       *vhostuser.Frontend
	served   chan error
	ramFD    int
	ram      []byte
	arena    *arena
	features uint64
	queues   []*Queue
}

// Start negotiates features (GET_FEATURES ∧ Options.Features, plus
// PROTOCOL_FEATURES with REPLY_ACK, CONFIG and MQ), shares guest RAM with
// SET_MEM_TABLE and sets up and enables every queue of dev. Everything is
// torn down by t.Cleanup; a back-end that ends with an error fails t.
func Start(t testing.TB, dev vhostuser.DeviceModel, o Options) *Harness {
	t.Helper()
	if o.RAM <= 0 {
		o.RAM = 16 << 20
	}
	if o.QueueSize == 0 {
		o.QueueSize = min(256, dev.MaxQueueSize())
	}
	if o.Features == 0 {
		o.Features = ^uint64(0)
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.QueueSize == 0 || o.QueueSize&(o.QueueSize-1) != 0 || o.QueueSize > dev.MaxQueueSize() {
		t.Fatalf("virtiotest: queue size %d must be a power of two at most the device's %d", o.QueueSize, dev.MaxQueueSize())
	}
	h := &Harness{t: t, opts: o, served: make(chan error, 1), ramFD: -1}

	fc, bc := socketPair(t)
	go func() { h.served <- vhostuser.NewBackend(dev, o.Log).Serve(bc) }()
	h.fe = vhostuser.NewFrontend(fc)
	t.Cleanup(h.close)

	h.mapRAM()
	h.negotiate()
	n := dev.NumQueues()
	if n <= 0 {
		t.Fatalf("virtiotest: device has %d queues", n)
	}
	ringBytes := uint64(0)
	for i := range n {
		q := newQueue(h, i, ringBytes)
		ringBytes += q.ringBytes()
		h.queues = append(h.queues, q)
	}
	if ringBytes >= uint64(len(h.ram)) {
		t.Fatalf("virtiotest: %d queues of %d entries need %d bytes of rings, RAM is %d", n, o.QueueSize, ringBytes, len(h.ram))
	}
	h.arena = newArena(ringBytes, uint64(len(h.ram))-ringBytes)
	region := vhostuser.MemoryRegion{GuestPhysAddr: RAMBase, MemorySize: uint64(len(h.ram)), UserspaceAddr: FrontendVA}
	if err := h.fe.SetMemTable([]vhostuser.MemoryRegion{region}, []int{h.ramFD}); err != nil {
		t.Fatalf("virtiotest: SET_MEM_TABLE: %v", err)
	}
	for i := range h.queues {
		h.SetupQueue(i, 0)
	}
	return h
}

func (h *Harness) mapRAM() {
	fd, err := unix.MemfdCreate("virtiotest-guest-ram", unix.MFD_CLOEXEC)
	if err != nil {
		h.t.Fatalf("virtiotest: memfd_create: %v", err)
	}
	h.ramFD = fd
	if err := unix.Ftruncate(fd, int64(h.opts.RAM)); err != nil {
		h.t.Fatalf("virtiotest: size guest RAM to %d bytes: %v", h.opts.RAM, err)
	}
	mem, err := unix.Mmap(fd, 0, h.opts.RAM, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		h.t.Fatalf("virtiotest: map guest RAM: %v", err)
	}
	h.ram = mem
}

func (h *Harness) negotiate() {
	t := h.t
	offered, err := h.fe.GetFeatures()
	if err != nil {
		t.Fatalf("virtiotest: GET_FEATURES: %v", err)
	}
	h.features = offered & h.opts.Features &^ vhostuser.FeatureProtocolFeatures
	ack := h.features
	if offered&vhostuser.FeatureProtocolFeatures != 0 {
		ack |= vhostuser.FeatureProtocolFeatures
	}
	if err := h.fe.SetFeatures(ack); err != nil {
		t.Fatalf("virtiotest: SET_FEATURES %#x: %v", ack, err)
	}
	if offered&vhostuser.FeatureProtocolFeatures != 0 {
		pf, err := h.fe.GetProtocolFeatures()
		if err != nil {
			t.Fatalf("virtiotest: GET_PROTOCOL_FEATURES: %v", err)
		}
		pf &= vhostuser.ProtocolReplyAck | vhostuser.ProtocolConfig | vhostuser.ProtocolMQ
		if err := h.fe.SetProtocolFeatures(pf); err != nil {
			t.Fatalf("virtiotest: SET_PROTOCOL_FEATURES %#x: %v", pf, err)
		}
	}
	if err := h.fe.SetOwner(); err != nil {
		t.Fatalf("virtiotest: SET_OWNER: %v", err)
	}
}

// close ends the session and waits for Serve: by then the device has
// stopped every queue and no longer touches guest RAM.
func (h *Harness) close() {
	if h.fe != nil {
		h.fe.Close()
		select {
		case err := <-h.served:
			if err != nil {
				h.t.Errorf("virtiotest: vhost-user back-end ended with: %v", err)
			}
		case <-time.After(h.opts.Timeout):
			h.t.Errorf("virtiotest: back-end still serving %v after the front-end closed", h.opts.Timeout)
		}
	}
	for _, q := range h.queues {
		q.kick.Close()
		q.call.Close()
	}
	if h.ram != nil {
		unix.Munmap(h.ram)
	}
	if h.ramFD >= 0 {
		unix.Close(h.ramFD)
	}
}

// SetupQueue (re)starts queue i at available index base: SET_VRING_NUM,
// _BASE, _ADDR, _KICK, _CALL, _ENABLE. Start calls it for every queue with
// base 0; call it after GetVringBase to resume, as a vmm does on restore.
func (h *Harness) SetupQueue(i int, base uint16) {
	h.t.Helper()
	q := h.Queue(i)
	if err := h.fe.SetupVring(i, vhostuser.VringSetup{
		Size: q.size, Base: base,
		Addr: vhostuser.VringAddr{Desc: FrontendVA + q.descOff, Avail: FrontendVA + q.availOff, Used: FrontendVA + q.usedOff},
		Kick: q.kick.fd, Call: q.call.fd, Enable: true,
	}); err != nil {
		h.t.Fatalf("virtiotest: %v", err)
	}
}

// Queue returns the driver of queue i.
func (h *Harness) Queue(i int) *Queue {
	h.t.Helper()
	if i < 0 || i >= len(h.queues) {
		h.t.Fatalf("virtiotest: no queue %d (device has %d)", i, len(h.queues))
	}
	return h.queues[i]
}

// Features returns the features acked (without PROTOCOL_FEATURES).
func (h *Harness) Features() uint64 { return h.features }

// Frontend is the vhost-user front-end, for requests the harness does not
// wrap.
func (h *Harness) Frontend() *vhostuser.Frontend { return h.fe }

// Config reads n bytes of the device's config space at off (GET_CONFIG).
func (h *Harness) Config(off, n uint32) []byte {
	h.t.Helper()
	b, err := h.fe.GetConfig(off, n)
	if err != nil {
		h.t.Fatalf("virtiotest: GET_CONFIG %d bytes at %d: %v", n, off, err)
	}
	return b
}

// GetVringBase stops queue i and returns its next available index. The
// queue runs again after SetupQueue.
func (h *Harness) GetVringBase(i int) uint16 {
	h.t.Helper()
	b, err := h.fe.GetVringBase(i)
	if err != nil {
		h.t.Fatalf("virtiotest: GET_VRING_BASE %d: %v", i, err)
	}
	return b
}

// RAM is guest RAM: RAM()[0] is guest-physical RAMBase. Writes are seen by
// the device at once; use it for malformed rings and buffers.
func (h *Harness) RAM() []byte { return h.ram }

// Bytes returns guest-physical [gpa, gpa+n) of RAM; it fails the test if
// that is not RAM.
func (h *Harness) Bytes(gpa uint64, n int) []byte {
	h.t.Helper()
	if gpa < RAMBase || n < 0 || gpa-RAMBase > uint64(len(h.ram)) || uint64(n) > uint64(len(h.ram))-(gpa-RAMBase) {
		h.t.Fatalf("virtiotest: [%#x, +%#x) is not guest RAM", gpa, n)
	}
	off := gpa - RAMBase
	return h.ram[off : off+uint64(n)]
}

// Alloc reserves n bytes of guest RAM and returns their guest-physical
// address; they are never reused. For hand-built descriptors.
func (h *Harness) Alloc(n int) uint64 {
	h.t.Helper()
	off, err := h.arena.alloc(uint64(n))
	if err != nil {
		h.t.Fatalf("virtiotest: %v", err)
	}
	return RAMBase + off
}

func socketPair(t testing.TB) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("virtiotest: socketpair: %v", err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "vhost-user socketpair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatalf("virtiotest: socketpair: %v", err)
		}
		return c.(*net.UnixConn)
	}
	a, b := conn(fds[0]), conn(fds[1])
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// eventFD is the driver's end of a kick or call doorbell. Reads go through
// Go's poller so that they can time out.
type eventFD struct {
	fd int
	f  *os.File
}

func newEventFD(t testing.TB, name string) *eventFD {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatalf("virtiotest: create %s eventfd: %v", name, err)
	}
	return &eventFD{fd: fd, f: os.NewFile(uintptr(fd), name)}
}

func (e *eventFD) signal() error {
	_, err := e.f.Write([]byte{1, 0, 0, 0, 0, 0, 0, 0})
	return err
}

// wait returns true once the counter is non-zero (and resets it), false at
// the deadline.
func (e *eventFD) wait(deadline time.Time) (bool, error) {
	if err := e.f.SetReadDeadline(deadline); err != nil {
		return false, err
	}
	var b [8]byte
	_, err := e.f.Read(b[:])
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s: %w", e.f.Name(), err)
	}
	return true, nil
}

func (e *eventFD) Close() error { return e.f.Close() }
