package vsock

import (
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sietch-vm/sietch/virtio/virtiotest"
)

// This file is the guest: a small virtio-vsock driver over the harness's
// rx and tx queues, enough to play Linux's part in the tests.

// rig is a running device with a guest driver and the host socket paths.
type rig struct {
	t   testing.TB
	dev *Device
	h   *virtiotest.Harness
	g   *guest
	uds string // host-initiated: connect here and write CONNECT
}

// newRig starts a device for CID testCID on <tmp>/v.sock. Guest-initiated
// streams to port P go to <tmp>/v.sock_P, as Firecracker lays them out.
func newRig(t testing.TB, rxBuf int) *rig {
	t.Helper()
	uds := filepath.Join(t.TempDir(), "v.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: uds, Net: "unix"})
	if err != nil {
		t.Fatalf("listen on %s: %v", uds, err)
	}
	dial := func(port uint32) (net.Conn, error) {
		return net.Dial("unix", fmt.Sprintf("%s_%d", uds, port))
	}
	dev, err := New(testCID, ln, dial)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := dev.Close(); err != nil {
			t.Errorf("close device: %v", err)
		}
	})
	h := virtiotest.Start(t, dev, virtiotest.Options{RAM: 32 << 20})
	g := startGuest(t, h, rxBuf)
	return &rig{t: t, dev: dev, h: h, g: g, uds: uds}
}

// hostListen listens on the socket for guest connections to host port p.
func (r *rig) hostListen(p uint32) *net.UnixListener {
	r.t.Helper()
	path := fmt.Sprintf("%s_%d", r.uds, p)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		r.t.Fatalf("listen on %s: %v", path, err)
	}
	r.t.Cleanup(func() { ln.Close() })
	return ln
}

// hostConnect connects to the vsock socket and sends CONNECT port; it
// returns the connection and the rest of the first line the device sent.
func (r *rig) hostConnect(port uint32) (*net.UnixConn, string, error) {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: r.uds, Net: "unix"})
	if err != nil {
		return nil, "", err
	}
	r.t.Cleanup(func() { c.Close() })
	if _, err := fmt.Fprintf(c, "CONNECT %d\n", port); err != nil {
		return nil, "", err
	}
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	line, err := readLine(c, 64)
	return c, line, err
}

type guest struct {
	t        testing.TB
	h        *virtiotest.Harness
	rxBuf    int
	txMu     sync.Mutex
	mu       sync.Mutex
	streams  map[connKey]*gstream
	listens  map[uint32]chan *gstream
	strays   chan Header
	nextPort uint32
	stop     chan struct{}
	done     chan struct{}
}

// gstream is the guest's end of one stream.
type gstream struct {
	g    *guest
	key  connKey
	mu   sync.Mutex
	cond *sync.Cond

	// receiving: buf_alloc and how eagerly to return credit
	bufAlloc    uint32
	creditEvery uint32
	rxCnt       uint32
	fwdCnt      uint32 // consumed by the "application"
	advFwd      uint32 // highest fwd_cnt sent to the device
	data        []byte
	overrun     error

	// sending
	peerBuf, peerFwd, txCnt uint32

	established, reset bool
	peerShut           uint32
}

const guestRxBuffers = 64

func startGuest(t testing.TB, h *virtiotest.Harness, rxBuf int) *guest {
	g := &guest{
		t: t, h: h, rxBuf: rxBuf,
		streams:  map[connKey]*gstream{},
		listens:  map[uint32]chan *gstream{},
		strays:   make(chan Header, 64),
		nextPort: 40000,
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	rxq := h.Queue(QueueRx)
	for range guestRxBuffers {
		rxq.Post(virtiotest.In(HeaderSize + rxBuf))
	}
	rxq.Kick()
	go g.rxLoop()
	t.Cleanup(func() { close(g.stop); <-g.done })
	return g
}

func (g *guest) rxLoop() {
	defer close(g.done)
	q := g.h.Queue(QueueRx)
	for {
		select {
		case <-g.stop:
			return
		default:
		}
		u, ok := q.WaitUsedFor(20 * time.Millisecond)
		if !ok {
			continue
		}
		n := 0
		for ok {
			g.receive(u.Data())
			n++
			u, ok = q.Poll()
		}
		for range n {
			q.Post(virtiotest.In(HeaderSize + g.rxBuf))
		}
		q.Kick()
	}
}

// receive handles one packet from the device, as Linux's
// virtio_transport_recv_pkt would.
func (g *guest) receive(b []byte) {
	var h Header
	if err := h.Unmarshal(b); err != nil {
		g.t.Errorf("guest: rx packet: %v", err)
		return
	}
	if int(h.Len) != len(b)-HeaderSize {
		g.t.Errorf("guest: rx packet %v carries %d payload bytes", h, len(b)-HeaderSize)
		return
	}
	if h.SrcCID != HostCID || h.DstCID != testCID || h.Type != TypeStream {
		g.t.Errorf("guest: rx packet %v is misaddressed", h)
	}
	payload := b[HeaderSize:]
	key := connKey{HostPort: h.SrcPort, GuestPort: h.DstPort}
	g.mu.Lock()
	s := g.streams[key]
	if s == nil && h.Op == OpRequest {
		if ch := g.listens[h.DstPort]; ch != nil {
			s = g.newStream(key, 256<<10)
			s.established = true
			s.peerBuf, s.peerFwd = h.BufAlloc, h.FwdCnt
			g.mu.Unlock()
			g.send(s, OpResponse, 0, nil)
			ch <- s
			return
		}
	}
	g.mu.Unlock()
	if s == nil {
		if h.Op != OpRst {
			g.sendRaw(Header{SrcPort: h.DstPort, DstPort: h.SrcPort, Op: OpRst})
		}
		select {
		case g.strays <- h:
		default:
			g.t.Errorf("guest: too many stray packets; last %v", h)
		}
		return
	}
	s.mu.Lock()
	s.peerBuf, s.peerFwd = h.BufAlloc, h.FwdCnt
	answer := uint16(0)
	switch h.Op {
	case OpResponse:
		s.established = true
	case OpRst:
		s.reset = true
		g.drop(s)
	case OpRW:
		// The credit check of §5.10.6.3: the device knows at most advFwd.
		if s.rxCnt+h.Len-s.advFwd > s.bufAlloc {
			s.overrun = fmt.Errorf("device sent %d bytes with %d in flight, buf_alloc %d",
				h.Len, s.rxCnt-s.advFwd, s.bufAlloc)
		}
		s.rxCnt += h.Len
		s.data = append(s.data, payload...)
	case OpShutdown:
		s.peerShut |= h.Flags
	case OpCreditRequest:
		answer = OpCreditUpdate
	case OpCreditUpdate:
	default:
		g.t.Errorf("guest: unexpected packet %v", h)
	}
	s.cond.Broadcast()
	s.mu.Unlock()
	if answer != 0 {
		g.send(s, answer, 0, nil)
	}
}

func (g *guest) newStream(key connKey, bufAlloc uint32) *gstream {
	s := &gstream{g: g, key: key, bufAlloc: bufAlloc, creditEvery: bufAlloc / 2}
	s.cond = sync.NewCond(&s.mu)
	g.streams[key] = s
	return s
}

func (g *guest) drop(s *gstream) {
	g.mu.Lock()
	if g.streams[s.key] == s {
		delete(g.streams, s.key)
	}
	g.mu.Unlock()
}

// send sends one packet on s, carrying s's credit.
func (g *guest) send(s *gstream, op uint16, flags uint32, payload []byte) {
	g.txMu.Lock()
	defer g.txMu.Unlock()
	s.mu.Lock()
	h := Header{SrcPort: s.key.GuestPort, DstPort: s.key.HostPort, Op: op, Flags: flags,
		Len: uint32(len(payload)), BufAlloc: s.bufAlloc, FwdCnt: s.fwdCnt}
	s.advFwd = s.fwdCnt
	s.mu.Unlock()
	g.post(h, payload)
}

// sendRaw sends h with the addressing fields filled in.
func (g *guest) sendRaw(h Header) {
	g.txMu.Lock()
	defer g.txMu.Unlock()
	g.post(h, nil)
}

// post puts a packet on the tx queue as Linux does (header, then payload
// in its own buffer) and reclaims used chains. Call with txMu held.
func (g *guest) post(h Header, payload []byte) {
	h.SrcCID, h.DstCID = testCID, HostCID
	if h.Type == 0 {
		h.Type = TypeStream
	}
	if h.Len == 0 {
		h.Len = uint32(len(payload))
	}
	var hb [HeaderSize]byte
	h.Marshal(hb[:])
	q := g.h.Queue(QueueTx)
	for q.InFlight() > int(q.Size())/2-2 {
		if _, ok := q.Poll(); !ok {
			q.WaitUsed()
		}
	}
	if len(payload) > 0 {
		q.Post(virtiotest.Out(hb[:]), virtiotest.Out(payload))
	} else {
		q.Post(virtiotest.Out(hb[:]))
	}
	q.Kick()
	for {
		if _, ok := q.Poll(); !ok {
			return
		}
	}
}

func (g *guest) listen(port uint32) chan *gstream {
	ch := make(chan *gstream, 64)
	g.mu.Lock()
	g.listens[port] = ch
	g.mu.Unlock()
	return ch
}

// accept waits for a host-initiated stream on ch.
func (g *guest) accept(ch chan *gstream) (*gstream, error) {
	select {
	case s := <-ch:
		return s, nil
	case <-time.After(30 * time.Second):
		return nil, errors.New("guest: no connection in 30s")
	}
}

// connect opens a stream to host port p and waits for the answer.
func (g *guest) connect(p uint32, bufAlloc uint32) (*gstream, error) {
	g.mu.Lock()
	g.nextPort++
	s := g.newStream(connKey{HostPort: p, GuestPort: g.nextPort}, bufAlloc)
	g.mu.Unlock()
	g.send(s, OpRequest, 0, nil)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.waitLocked(func() bool { return s.established || s.reset }) {
		return nil, fmt.Errorf("guest: no answer to REQUEST to port %d", p)
	}
	if s.reset {
		return nil, fmt.Errorf("guest: connect to port %d: %w", p, errRefused)
	}
	return s, nil
}

var errRefused = errors.New("connection reset")

// waitLocked waits for cond with s.mu held, up to 30 s.
func (s *gstream) waitLocked(cond func() bool) bool {
	deadline := time.Now().Add(30 * time.Second)
	t := time.AfterFunc(30*time.Second, func() { s.mu.Lock(); s.cond.Broadcast(); s.mu.Unlock() })
	defer t.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		s.cond.Wait()
	}
	return true
}

// Write sends p in packets of at most chunk bytes, waiting for credit.
func (s *gstream) Write(p []byte) (int, error) {
	const chunk = 16 << 10
	n := 0
	for n < len(p) {
		s.mu.Lock()
		credit := func() uint32 { return s.peerBuf - (s.txCnt - s.peerFwd) }
		if !s.waitLocked(func() bool { return s.reset || credit() > 0 }) {
			s.mu.Unlock()
			return n, errors.New("guest: no credit in 30s")
		}
		if s.reset {
			s.mu.Unlock()
			return n, errRefused
		}
		k := min(len(p)-n, chunk, int(credit()))
		s.txCnt += uint32(k)
		s.mu.Unlock()
		s.g.send(s, OpRW, 0, p[n:n+k])
		n += k
	}
	return n, nil
}

// Read returns buffered data, io.EOF after the device's SHUTDOWN SEND (or
// RST) once everything is read. Consumption is reported to the device
// every creditEvery bytes.
func (s *gstream) Read(p []byte) (int, error) {
	s.mu.Lock()
	if !s.waitLocked(func() bool { return len(s.data) > 0 || s.reset || s.peerShut&ShutdownSend != 0 }) {
		s.mu.Unlock()
		return 0, errors.New("guest: nothing to read in 30s")
	}
	if s.overrun != nil {
		err := s.overrun
		s.mu.Unlock()
		return 0, err
	}
	if len(s.data) == 0 {
		s.mu.Unlock()
		return 0, io.EOF
	}
	n := copy(p, s.data)
	s.data = s.data[n:]
	s.fwdCnt += uint32(n)
	update := s.fwdCnt-s.advFwd >= s.creditEvery && !s.reset
	s.mu.Unlock()
	if update {
		s.g.send(s, OpCreditUpdate, 0, nil)
	}
	return n, nil
}

func (s *gstream) shutdown(flags uint32) { s.g.send(s, OpShutdown, flags, nil) }

// waitReset waits for the device's RST.
func (s *gstream) waitReset() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.waitLocked(func() bool { return s.reset })
}

func (s *gstream) overrunErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.overrun
}

// stray waits for a packet that belonged to no guest stream.
func (g *guest) stray() (Header, bool) {
	select {
	case h := <-g.strays:
		return h, true
	case <-time.After(10 * time.Second):
		return Header{}, false
	}
}
