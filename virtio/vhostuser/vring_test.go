package vhostuser_test

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sietch-vm/sietch/virtio"
	"github.com/sietch-vm/sietch/virtio/vhostuser"
	"github.com/sietch-vm/sietch/virtio/virtiotest"
)

// The Vring's behaviour as a device sees it, through a real vhost-user
// session (virtiotest): which device method gets which chain, what happens
// to malformed chains and broken rings, and what Stop waits for.

// toyDevice has one queue and no config space; the tests give it its
// behaviour.
type toyDevice struct {
	handle func(c *virtio.Chain, mem virtio.GuestMemory) uint32
}

func (d *toyDevice) Features() uint64 {
	return virtio.FeatureVersion1 | virtio.FeatureEventIdx | virtio.FeatureIndirectDesc
}
func (d *toyDevice) ProtocolFeatures() uint64                  { return vhostuser.ProtocolReplyAck }
func (d *toyDevice) NumQueues() int                            { return 1 }
func (d *toyDevice) MaxQueueSize() uint16                      { return 64 }
func (d *toyDevice) ReadConfig(off uint32, data []byte)        { clear(data) }
func (d *toyDevice) WriteConfig(off uint32, data []byte) error { return nil }
func (d *toyDevice) SetFeatures(uint64) error                  { return nil }
func (d *toyDevice) HandleChain(_ int, c *virtio.Chain, mem virtio.GuestMemory) (uint32, error) {
	return d.handle(c, mem), nil
}

// writeByte writes b as the chain's first device-writable byte.
func writeByte(c *virtio.Chain, mem virtio.GuestMemory, b byte) uint32 {
	n, _ := virtio.NewChainWriter(mem, c).Write([]byte{b})
	return uint32(n)
}

// batchDevice serves batches on goroutines that wait for release, and
// completes them in reverse order.
type batchDevice struct {
	toyDevice
	release chan struct{}
	batches chan int // sizes of the batches handed over
	inline  atomic.Int32
}

func (d *batchDevice) MaxInFlight(int) int { return 8 }

func (d *batchDevice) HandleBatch(r *vhostuser.Vring, chains []*virtio.Chain) {
	held := slices.Clone(chains)
	d.batches <- len(held)
	go func() {
		<-d.release
		for _, c := range slices.Backward(held) {
			r.Complete(c.Head, writeByte(c, r.Memory(), 'b'))
		}
	}()
}

func TestVringBatchesAndDeferredCompletion(t *testing.T) {
	d := &batchDevice{release: make(chan struct{}), batches: make(chan int, 8)}
	d.handle = func(c *virtio.Chain, mem virtio.GuestMemory) uint32 {
		d.inline.Add(1)
		return writeByte(c, mem, 'i')
	}
	h := virtiotest.Start(t, d, virtiotest.Options{QueueSize: 16})
	q := h.Queue(0)

	// A lone chain with nothing in flight is served inline.
	if u := q.Do(virtiotest.In(1)); string(u.Data()) != "i" || d.inline.Load() != 1 {
		t.Fatalf("lone chain: used %q, %d served inline; want it served inline", u.Data(), d.inline.Load())
	}

	var heads []uint16
	for range 4 {
		heads = append(heads, q.Post(virtiotest.In(1)))
	}
	q.Kick()
	select {
	case n := <-d.batches:
		if n != 4 {
			t.Fatalf("batch of %d chains, want the 4 posted", n)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no batch handed to the device")
	}

	// Stop (GET_VRING_BASE) waits for the chains in flight.
	based := make(chan uint16, 1)
	go func() { based <- h.GetVringBase(0) }()
	select {
	case b := <-based:
		t.Fatalf("GET_VRING_BASE returned %d with 4 chains in flight", b)
	case <-time.After(100 * time.Millisecond):
	}
	close(d.release)
	if b := <-based; b != 5 {
		t.Fatalf("GET_VRING_BASE = %d, want 5", b)
	}
	var got []uint16
	for range 4 {
		u, ok := q.Poll()
		if !ok || string(u.Data()) != "b" {
			t.Fatalf("after stop: used %+v (present %v), want each chain completed", u, ok)
		}
		got = append(got, u.Head)
	}
	if slices.Reverse(heads); !slices.Equal(got, heads) {
		t.Errorf("used order %v, want the device's completion order %v", got, heads)
	}
}

// countingHandler counts the log records with a given message.
type countingHandler struct {
	msg string
	n   atomic.Int32
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.n.Add(1)
	}
	return nil
}
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countingHandler) WithGroup(string) slog.Handler      { return h }

func waitCount(t *testing.T, n *atomic.Int32, want int32) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); n.Load() != want; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("count %d, want %d", n.Load(), want)
		}
	}
}

// A broken ring stops the queue until the driver mends it and kicks; it is
// logged once per breakage, however often the driver kicks meanwhile.
func TestVringBrokenRing(t *testing.T) {
	d := &toyDevice{handle: func(c *virtio.Chain, mem virtio.GuestMemory) uint32 { return writeByte(c, mem, 'x') }}
	logged := &countingHandler{msg: "vhost-user queue unusable until the driver fixes it"}
	h := virtiotest.Start(t, d, virtiotest.Options{QueueSize: 8, Log: slog.New(logged)})
	q := h.Queue(0)
	for round := int32(1); round <= 2; round++ {
		q.CorruptAvailIdx()
		q.ForceKick()
		waitCount(t, &logged.n, round)
		for range 3 {
			q.ForceKick()
		}
		if _, ok := q.WaitUsedFor(50 * time.Millisecond); ok {
			t.Fatal("a broken ring used a chain")
		}
		q.MendAvailIdx()
		if u := q.Do(virtiotest.In(1)); string(u.Data()) != "x" {
			t.Fatalf("after the ring was mended: used %q", u.Data())
		}
		if n := logged.n.Load(); n != round {
			t.Fatalf("broken ring logged %d times in %d breakages", n, round)
		}
	}
}

// fillDevice fills its queue with messages from the host, which Wake it.
type fillDevice struct {
	toyDevice
	mu   sync.Mutex
	msgs []byte
	r    *vhostuser.Vring
	bad  atomic.Int32
}

func (d *fillDevice) Fills(int) bool { return true }

func (d *fillDevice) FillVring(r *vhostuser.Vring) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for len(d.msgs) > 0 {
		c, ok := r.Next()
		if !ok {
			return
		}
		r.Push(c.Head, writeByte(c, r.Memory(), d.msgs[0]))
		d.msgs = d.msgs[1:]
	}
}

func (d *fillDevice) StartVring(r *vhostuser.Vring) error {
	d.mu.Lock()
	d.r = r
	d.mu.Unlock()
	return nil
}
func (d *fillDevice) InterruptVring(*vhostuser.Vring) {}
func (d *fillDevice) StopVring(*vhostuser.Vring) {
	d.mu.Lock()
	d.r = nil
	d.mu.Unlock()
}
func (d *fillDevice) BadChain(int, *virtio.ChainError) { d.bad.Add(1) }

// send gives the device a message from a host goroutine.
func (d *fillDevice) send(b byte) {
	d.mu.Lock()
	d.msgs = append(d.msgs, b)
	r := d.r
	d.mu.Unlock()
	if r != nil {
		r.Wake()
	}
}

func TestVringFilledByDevice(t *testing.T) {
	d := &fillDevice{}
	d.handle = func(*virtio.Chain, virtio.GuestMemory) uint32 {
		t.Error("HandleChain called for a queue the device fills")
		return 0
	}
	h := virtiotest.Start(t, d, virtiotest.Options{QueueSize: 8})
	q := h.Queue(0)

	// A message waits for a buffer; the driver's kick brings it.
	d.send('a')
	q.Post(virtiotest.In(1))
	q.Kick()
	if u := q.WaitUsed(); string(u.Data()) != "a" {
		t.Fatalf("used %q, want a", u.Data())
	}
	// A buffer waits for a message; the device's Wake brings it.
	q.Post(virtiotest.In(1))
	q.Kick()
	if u, ok := q.WaitUsedFor(50 * time.Millisecond); ok {
		t.Fatalf("used %+v with no message", u)
	}
	d.send('b')
	if u := q.WaitUsed(); string(u.Data()) != "b" {
		t.Fatalf("used %q, want b", u.Data())
	}
	// Malformed chains go back unused and are counted; the queue goes on.
	q.PostRaw(virtiotest.RawDesc{Addr: 0x10, Len: 1, Flags: virtiotest.FlagWrite}) // not RAM
	q.Post(virtiotest.In(1))
	q.Kick()
	d.send('c')
	if u := q.WaitUsed(); u.Len != 0 {
		t.Fatalf("malformed chain used with length %d", u.Len)
	}
	if u := q.WaitUsed(); string(u.Data()) != "c" {
		t.Fatalf("used %q, want c", u.Data())
	}
	if n := d.bad.Load(); n != 1 {
		t.Errorf("%d malformed chains reported, want 1", n)
	}
}
