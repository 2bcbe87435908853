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

	mu sync.Mutex // guards everything below and the machine
	// budget bounds the host sockets the device holds at once (see
	// budgetFor): past it a host connection is closed at once and a
	// guest's connection to the host is reset.
	budget    int
	m         *machine
	links     map[connKey]*link
	pending   map[net.Conn]bool // host connections still sending CONNECT
	rx, ev    *vhostuser.Vring  // while the queue runs: Wake it when there is something for the guest
	spare     *virtio.Chain     // an rx chain popped but not filled yet: streams are waiting for credit
	evPending bool
	closed    bool
	// fence holds host connections after a transport reset until the
	// guest has taken the reset event: a connection it accepted before
	// would be reset with the others. nil: no reset in progress.
	fence *resetFence

	wg sync.WaitGroup // accept loop and per-stream goroutines

	txBuf []byte // a tx packet's payload; the tx queue's worker's
}

var (
	_ vhostuser.DeviceModel    = (*Device)(nil)
	_ vhostuser.VringFiller    = (*Device)(nil)
	_ vhostuser.VringLifecycle = (*Device)(nil)
)

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
		cid: cid, ln: ln, dial: dial, budget: budgetFor(DefaultFDLimit),
		m:       newMachine(cid, defaultLimits),
		links:   make(map[connKey]*link),
		pending: make(map[net.Conn]bool),
		txBuf:   make([]byte, MaxPayload),
	}
	d.log.Store(slog.New(slog.DiscardHandler))
	d.wg.Add(1)
	go d.accept()
	return d, nil
}

// fdReserve is the descriptors kept back from host sockets for the
// vhost-user session: its socket, the memory regions, a kick, call and
// error eventfd per queue, the dirty log, a userfaultfd, the listener,
// stdio and the runtime's own.
const fdReserve = 32

// DefaultFDLimit is the descriptor limit New assumes (a device jail's);
// SetFDLimit gives the real one.
const DefaultFDLimit = 64

// budgetFor is how many host sockets (connections from the host, dials
// for the guest) a device with descriptor limit fds may hold: fds less
// fdReserve. Without the bound, host clients that kept connecting while
// the guest had not set its driver up (a slow boot) used up the
// descriptors, and the next SET_MEM_TABLE could not receive guest
// memory's: the device process died.
func budgetFor(fds uint64) int {
	if fds > 1<<16 {
		fds = 1 << 16
	}
	return max(int(fds)-fdReserve, 4)
}

// SetFDLimit tells the device its process's RLIMIT_NOFILE (a confined
// device cannot ask getrlimit itself; see jail.NoFileLimit).
func (d *Device) SetFDLimit(fds uint64) {
	d.mu.Lock()
	d.budget = budgetFor(fds)
	d.mu.Unlock()
}

// hostSockets is how many host sockets the device holds or is about to
// (a dial in progress), with mu held.
func (d *Device) hostSockets() int {
	n := len(d.pending) + len(d.links)
	if d.fence != nil {
		n += len(d.fence.held)
	}
	return n
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
	if d.ev != nil {
		d.ev.Wake()
	}
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

// eventKicked runs on every kick of the event queue r (and Wake), with mu
// held. The driver handles a reset event, then posts its buffer again:
// avail->idx moving past where it was when the event went out means the
// reset is done in the guest.
func (d *Device) eventKicked(r *vhostuser.Vring) {
	if f := d.fence; f != nil && f.delivered && r.AvailIdx() != f.availIdx {
		d.liftFence()
	}
	d.pumpEvent(r)
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

// StartVring lets the other goroutines wake the rx and event queues when
// they have something for the guest.
func (d *Device) StartVring(r *vhostuser.Vring) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch r.Index() {
	case QueueRx:
		d.rx = r
	case QueueEvent:
		d.ev = r
	}
	return nil
}

// InterruptVring does nothing: the device waits for nothing on a worker.
func (d *Device) InterruptVring(*vhostuser.Vring) {}

// StopVring takes the queue away from the other goroutines and gives back
// the rx chain the device holds.
func (d *Device) StopVring(r *vhostuser.Vring) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch r.Index() {
	case QueueRx:
		if c := d.spare; c != nil {
			// An empty packet is one the driver drops (Linux: "bad
			// length") and refills.
			r.Push(c.Head, 0)
			d.spare = nil
		}
		d.rx = nil
	case QueueEvent:
		d.ev = nil
	}
}

// Fills: the rx and event queues carry what the device has for the guest.
func (d *Device) Fills(queue int) bool { return queue == QueueRx || queue == QueueEvent }

// FillVring puts packets (rx) or the pending event (event queue) into the
// guest's buffers.
func (d *Device) FillVring(r *vhostuser.Vring) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if r.Index() == QueueRx {
		d.pumpRx(r)
		// What the packets taken changed (room for the host readers,
		// finished streams) is carried out now, not at the next event.
		d.applyEffects()
	} else {
		d.eventKicked(r)
	}
}

// settle carries out the machine's effects and has the rx queue hand the
// guest whatever is now ready. Called with mu held after every machine call.
func (d *Device) settle() {
	d.applyEffects()
	if d.rx != nil && d.m.hasRx() {
		d.rx.Wake()
	}
}

// applyEffects carries out the machine's effects, with mu held.
func (d *Device) applyEffects() {
	for _, fx := range d.m.effects() {
		d.apply(fx)
	}
}

// pumpRx fills rx buffers with packets from the machine (§5.10.6.2), with
// mu held.
func (d *Device) pumpRx(r *vhostuser.Vring) {
	for d.m.hasRx() {
		c := d.spare
		d.spare = nil
		if c == nil {
			var ok bool
			if c, ok = r.Next(); !ok {
				return
			}
		}
		w := virtio.NewChainWriter(r.Memory(), c)
		if w.Remaining() < HeaderSize {
			r.Push(c.Head, 0) // too small for any packet: the driver's mistake
			continue
		}
		space := int(min(w.Remaining()-HeaderSize, MaxPayload))
		h, p, ok := d.m.nextRx(space)
		if !ok {
			if space == 0 {
				r.Push(c.Head, 0) // data is all that is left and it cannot fit
				continue
			}
			d.spare = c // streams are waiting for credit
			return
		}
		var hb [HeaderSize]byte
		h.Marshal(hb[:])
		w.Write(hb[:])
		if _, err := w.Write(p); err != nil {
			d.log.Load().Error("vsock: write rx packet", "packet", h, "err", err)
		}
		r.Push(c.Head, w.Written())
	}
}

// pumpEvent posts a pending transport-reset event (§5.10.6.6), with mu held.
func (d *Device) pumpEvent(r *vhostuser.Vring) {
	for d.evPending {
		c, ok := r.Next()
		if !ok {
			return
		}
		w := virtio.NewChainWriter(r.Memory(), c)
		var ev [4]byte // struct virtio_vsock_event: le32 id
		binary.LittleEndian.PutUint32(ev[:], EventTransportReset)
		_, err := w.Write(ev[:])
		r.Push(c.Head, w.Written())
		if err == nil {
			d.evPending = false
			if f := d.fence; f != nil {
				// The driver re-posts the buffer once it has handled the
				// event; have that kick us even though other event
				// buffers are still posted.
				r.KickOnNextAdd()
				f.delivered, f.availIdx = true, r.AvailIdx()
			}
		}
	}
}

// HandleChain takes one of the guest's packets off the tx queue
// (§5.10.6.1); the chain goes back with nothing written into it.
func (d *Device) HandleChain(queue int, c *virtio.Chain, mem virtio.GuestMemory) (uint32, error) {
	if queue != QueueTx {
		return 0, fmt.Errorf("vsock: queue %d is filled by the device, not served", queue)
	}
	h, p, ok := readPacket(mem, c, d.txBuf)
	if !ok {
		return 0, nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.closed {
		d.m.handleTx(h, p)
		d.settle()
	}
	return 0, nil
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
