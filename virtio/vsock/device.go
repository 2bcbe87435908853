// Package vsock is the virtio-vsock device (virtio 1.2 §5.10), relaying guest streams to host unix sockets as Firecracker does.
package vsock

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sietch-vm/sietch/virtio"
	"github.com/sietch-vm/sietch/virtio/vhostuser"
)

// Queue indexes (virtio 1.2 §5.10.2).
const (
	QueueRx    = 0
	QueueTx    = 1
	QueueEvent = 2
)

const (
	features = virtio.FeatureVersion1 | virtio.FeatureEventIdx | virtio.FeatureIndirectDesc
	// configSize is struct virtio_vsock_config: le64 guest_cid (§5.10.4).
	configSize = 8
)

// Device is a virtio-vsock device serving one guest CID. Host programs
// reach guest port P by connecting to the listener and writing
// "CONNECT P\n"; the device answers "OK <host port>\n" once the guest
// accepts, or closes the connection if it refuses. A guest connecting to
// host port P is relayed to dial(P). Everything it needs arrives as open
// sockets or through dial, so it works in an empty root.
type Device struct {
	cid  uint64
	ln   *net.UnixListener
	dial func(port uint32) (net.Conn, error)
	log  atomic.Pointer[slog.Logger]

	mu        sync.Mutex // guards everything below, the rx and event queues and the machine
	m         *machine
	links     map[connKey]*link
	pending   map[net.Conn]bool // host connections still sending CONNECT
	runs      [3]*run
	rx, ev    *ring
	evPending bool
	closed    bool
	// fence holds host connections after a transport reset until the
	// guest has taken the reset event: a connection it accepted before
	// would be reset with the others. nil: no reset in progress.
	fence *resetFence

	wg sync.WaitGroup // accept loop and per-stream goroutines
}

// run is one started queue's goroutine.
type run struct {
	q    *virtio.Queue
	done chan struct{}
}

// ring is a started rx or event queue, used under Device.mu by whichever
// goroutine has something for the guest.
type ring struct {
	q     *virtio.Queue
	mem   virtio.GuestMemory
	call  *vhostuser.EventFD
	spare *virtio.Chain // popped, not yet filled
}

// New returns a device for guest cid that accepts host connections on ln
// (already bound to the vsock socket path) and dials host services with
// dial. It starts accepting at once; Close stops it.
func New(cid uint64, ln *net.UnixListener, dial func(port uint32) (net.Conn, error)) (*Device, error) {
	// CIDs 0-2 are reserved and the top one is VMADDR_CID_ANY (§5.10.4).
	if cid <= HostCID || cid >= 0xffff_ffff {
		return nil, fmt.Errorf("vsock: guest CID %d is reserved; use 3 to 4294967294", cid)
	}
	if ln == nil || dial == nil {
		return nil, errors.New("vsock: a listener and a dial function are required")
	}
	d := &Device{
		cid: cid, ln: ln, dial: dial,
		m:       newMachine(cid, defaultLimits),
		links:   make(map[connKey]*link),
		pending: make(map[net.Conn]bool),
	}
	d.log.Store(slog.New(slog.DiscardHandler))
	d.wg.Add(1)
	go d.accept()
	return d, nil
}

// SetLogger sends the device's messages to l.
func (d *Device) SetLogger(l *slog.Logger) {
	if l != nil {
		d.log.Store(l)
	}
}

// Close stops accepting host connections, closes every stream's host
// socket and waits for the device's goroutines. Queues are stopped by the
// vhost-user back-end, not here.
func (d *Device) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	d.m.resetAll()
	d.settle()
	for c := range d.pending {
		c.Close()
	}
	if f := d.fence; f != nil {
		d.fence = nil
		f.timer.Stop()
		for _, h := range f.held {
			h.c.Close()
		}
	}
	d.mu.Unlock()
	err := d.ln.Close()
	d.wg.Wait()
	if err != nil {
		return fmt.Errorf("vsock: close listener: %w", err)
	}
	return nil
}

// ResetTransport drops every stream and sends VIRTIO_VSOCK_EVENT_TRANSPORT_RESET
// (§5.10.6.6), as after a snapshot restore: the guest's sockets are reset
// and it re-reads guest_cid. The event waits for an event buffer if the
// queue has none.
//
// Host connections made meanwhile wait, and reach the guest once it has
// handled the event: the driver re-posts the event buffer after resetting
// its sockets and kicks the event queue (Linux
// virtio_transport_event_work), or after fenceTimeout for a driver that
// does not.
func (d *Device) ResetTransport() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.m.resetAll()
	d.settle()
	f := &resetFence{}
	f.timer = time.AfterFunc(fenceTimeout, func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.fence == f {
			d.log.Load().Warn("vsock: the guest did not take the transport reset event in time; letting host connections through", "after", fenceTimeout)
			d.liftFence()
		}
	})
	d.fence = f
	d.evPending = true
	d.pumpEvent()
}

// fenceTimeout bounds how long host connections wait for a guest to take a
// transport reset event.
const fenceTimeout = 2 * time.Second

// resetFence is a transport reset the guest has not handled yet.
type resetFence struct {
	held      []heldConn // host connections that arrived meanwhile, in order
	timer     *time.Timer
	delivered bool   // the event is in the driver's hands
	availIdx  uint16 // the event queue's avail->idx when it was
}

type heldConn struct {
	c    *net.UnixConn
	port uint32
}

// eventKicked runs on every kick of the event queue. The driver handles
// a reset event, then posts its buffer again: avail->idx moving past where
// it was when the event went out means the reset is done in the guest.
func (d *Device) eventKicked() {
	if f := d.fence; f != nil && f.delivered && d.ev != nil && d.ev.q.AvailIdx() != f.availIdx {
		d.liftFence()
	}
	d.pumpEvent()
}

// liftFence lets held host connections through; the caller holds mu.
func (d *Device) liftFence() {
	f := d.fence
	if f == nil {
		return
	}
	d.fence = nil
	f.timer.Stop()
	for _, h := range f.held {
		d.hostConnect(h.c, h.port)
	}
}

func (d *Device) Features() uint64 { return features }
func (d *Device) ProtocolFeatures() uint64 {
	return vhostuser.ProtocolMQ | vhostuser.ProtocolReplyAck | vhostuser.ProtocolConfig
}
func (d *Device) NumQueues() int       { return 3 }
func (d *Device) MaxQueueSize() uint16 { return 1024 }

// ReadConfig reads struct virtio_vsock_config; bytes past it read as zero.
func (d *Device) ReadConfig(off uint32, data []byte) {
	var cfg [configSize]byte
	binary.LittleEndian.PutUint64(cfg[:], d.cid)
	for i := range data {
		data[i] = 0
		if o := uint64(off) + uint64(i); o < configSize {
			data[i] = cfg[o]
		}
	}
}

// WriteConfig refuses: guest_cid is read-only for the driver.
func (d *Device) WriteConfig(off uint32, data []byte) error {
	return fmt.Errorf("vsock config is read-only (write of %d bytes at %d)", len(data), off)
}

func (d *Device) SetFeatures(acked uint64) error { return nil }

// Start runs queue i: a goroutine waits for kicks. The rx and event queues
// are also filled by whichever goroutine has a packet or event, under mu.
func (d *Device) Start(i int, q *virtio.Queue, mem virtio.GuestMemory, kick, call *vhostuser.EventFD) error {
	if i < 0 || i >= len(d.runs) {
		return fmt.Errorf("vsock has queues 0-2, not %d", i)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.runs[i] != nil {
		return fmt.Errorf("vsock queue %d is already running", i)
	}
	r := &run{q: q, done: make(chan struct{})}
	d.runs[i] = r
	switch i {
	case QueueRx:
		d.rx = &ring{q: q, mem: mem, call: call}
		go d.kicked(r, kick, d.pumpRx)
	case QueueEvent:
		d.ev = &ring{q: q, mem: mem, call: call}
		go d.kicked(r, kick, d.eventKicked)
	case QueueTx:
		go d.runTx(r, q, mem, kick, call)
	}
	return nil
}

// Stop waits for queue i's goroutine (the back-end closed kick) and takes
// the queue away from the other goroutines.
func (d *Device) Stop(i int) (virtio.QueueState, error) {
	if i < 0 || i >= len(d.runs) {
		return virtio.QueueState{}, fmt.Errorf("vsock has queues 0-2, not %d", i)
	}
	d.mu.Lock()
	r := d.runs[i]
	d.mu.Unlock()
	if r == nil {
		return virtio.QueueState{}, fmt.Errorf("vsock queue %d is not running", i)
	}
	<-r.done
	d.mu.Lock()
	defer d.mu.Unlock()
	if i == QueueRx && d.rx != nil {
		if c := d.rx.spare; c != nil {
			// A buffer we popped must go back; an empty packet is one
			// the driver drops (Linux: "bad length") and refills.
			d.rx.q.Push(c.Head, 0)
			if d.rx.q.NeedsNotify() {
				d.rx.call.Signal()
			}
		}
		d.rx = nil
	}
	if i == QueueEvent {
		d.ev = nil
	}
	d.runs[i] = nil
	return r.q.State(), nil
}

// kicked runs pump under mu after every kick until kick is closed.
func (d *Device) kicked(r *run, kick *vhostuser.EventFD, pump func()) {
	defer close(r.done)
	for {
		if _, err := kick.Wait(); err != nil {
			if !errors.Is(err, vhostuser.ErrEventFDClosed) {
				d.log.Load().Error("vsock: wait for kick", "err", err)
			}
			return
		}
		d.mu.Lock()
		pump()
		d.mu.Unlock()
	}
}

// settle carries out the machine's effects and hands the guest whatever is
// now ready. Called with mu held after every machine call.
func (d *Device) settle() {
	for _, fx := range d.m.effects() {
		d.apply(fx)
	}
	d.pumpRx()
}

// pumpRx fills rx buffers with packets from the machine (§5.10.6.2).
func (d *Device) pumpRx() {
	r := d.rx
	if r == nil {
		return
	}
	pushed := false
	defer func() {
		if pushed && r.q.NeedsNotify() {
			if err := r.call.Signal(); err != nil {
				d.log.Load().Error("vsock: signal rx queue", "err", err)
			}
		}
	}()
	for d.m.hasRx() {
		c := r.spare
		r.spare = nil
		if c == nil {
			var ok bool
			var err error
			c, ok, err = r.q.Pop()
			if err != nil {
				if !returnBadChain(r.q, err) {
					d.log.Load().Error("vsock: rx queue", "err", err)
					return
				}
				pushed = true
				continue
			}
			if !ok {
				return
			}
		}
		w := virtio.NewChainWriter(r.mem, c)
		if w.Remaining() < HeaderSize {
			r.q.Push(c.Head, 0) // too small for any packet: the driver's mistake
			pushed = true
			continue
		}
		space := int(min(w.Remaining()-HeaderSize, MaxPayload))
		h, p, ok := d.m.nextRx(space)
		if !ok {
			if space == 0 {
				r.q.Push(c.Head, 0) // data is all that is left and it cannot fit
				pushed = true
				continue
			}
			r.spare = c // streams are waiting for credit
			return
		}
		var hb [HeaderSize]byte
		h.Marshal(hb[:])
		w.Write(hb[:])
		if _, err := w.Write(p); err != nil {
			d.log.Load().Error("vsock: write rx packet", "packet", h, "err", err)
		}
		r.q.Push(c.Head, w.Written())
		pushed = true
	}
}

// returnBadChain gives a malformed chain back unused and reports whether
// it did; any other error means the ring itself is broken.
func returnBadChain(q *virtio.Queue, err error) bool {
	var ce *virtio.ChainError
	if errors.As(err, &ce) && ce.Head < q.Size() {
		q.Push(ce.Head, 0)
		return true
	}
	return false
}

// pumpEvent posts a pending transport-reset event (§5.10.6.6).
func (d *Device) pumpEvent() {
	r := d.ev
	if r == nil || !d.evPending {
		return
	}
	for {
		c, ok, err := r.q.Pop()
		if err != nil {
			if !returnBadChain(r.q, err) {
				d.log.Load().Error("vsock: event queue", "err", err)
				return
			}
			continue
		}
		if !ok {
			return
		}
		w := virtio.NewChainWriter(r.mem, c)
		var ev [4]byte // struct virtio_vsock_event: le32 id
		binary.LittleEndian.PutUint32(ev[:], EventTransportReset)
		_, err = w.Write(ev[:])
		r.q.Push(c.Head, w.Written())
		if err == nil {
			d.evPending = false
			if f := d.fence; f != nil {
				// The driver re-posts the buffer once it has handled the
				// event; have that kick us even though other event
				// buffers are still posted.
				r.q.KickOnNextAdd()
				f.delivered, f.availIdx = true, r.q.AvailIdx()
			}
		}
		if r.q.NeedsNotify() {
			r.call.Signal()
		}
		if !d.evPending {
			return
		}
	}
}

// runTx takes the guest's packets off the tx queue (§5.10.6.1).
func (d *Device) runTx(r *run, q *virtio.Queue, mem virtio.GuestMemory, kick, call *vhostuser.EventFD) {
	defer close(r.done)
	payload := make([]byte, MaxPayload)
	for {
		if _, err := kick.Wait(); err != nil {
			if !errors.Is(err, vhostuser.ErrEventFDClosed) {
				d.log.Load().Error("vsock: wait for tx kick", "err", err)
			}
			return
		}
		for {
			c, ok, err := q.Pop()
			if err != nil {
				if !returnBadChain(q, err) {
					d.log.Load().Error("vsock: tx queue", "err", err)
					break
				}
				continue
			}
			if !ok {
				break
			}
			h, p, ok := readPacket(mem, c, payload)
			q.Push(c.Head, 0)
			if ok {
				d.mu.Lock()
				if !d.closed {
					d.m.handleTx(h, p)
					d.settle()
				}
				d.mu.Unlock()
			}
		}
		if q.NeedsNotify() {
			call.Signal()
		}
	}
}

// readPacket reads a tx chain's header and payload into buf. A chain too
// short for a header is dropped (ok false: there is nobody to answer); a
// payload that is too long or not all there comes back nil, which the
// machine answers with RST.
func readPacket(mem virtio.GuestMemory, c *virtio.Chain, buf []byte) (Header, []byte, bool) {
	r := virtio.NewChainReader(mem, c)
	var hb [HeaderSize]byte
	if _, err := io.ReadFull(r, hb[:]); err != nil {
		return Header{}, nil, false
	}
	var h Header
	h.Unmarshal(hb[:])
	if h.Len > MaxPayload || uint64(h.Len) > r.Remaining() || int(h.Len) > len(buf) {
		return h, nil, true
	}
	if _, err := io.ReadFull(r, buf[:h.Len]); err != nil {
		return h, nil, true
	}
	return h, buf[:h.Len], true
}
