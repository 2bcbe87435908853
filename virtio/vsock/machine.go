package vsock

// The connection machine: every stream's state, credit and buffers, driven
// by packets from the guest and events from the host sockets, and asked for
// the next packet to put on the rx queue. It does no I/O and takes no locks:
// the Device serialises calls and carries out the effects it records, which
// is what lets FuzzPacket drive it alone.

// connKey names a stream by its host-side and guest-side ports.
type connKey struct {
	HostPort  uint32
	GuestPort uint32
}

type connState uint8

const (
	stRequestSent connState = iota // host-initiated: waiting for the guest's RESPONSE
	stDialing                      // guest-initiated: waiting for the host socket
	stConnected
)

// Host-initiated streams get a host port from this range, round-robin, as
// Firecracker does: far from the ports host services listen on.
const (
	hostPortFirst = 1 << 30
	hostPortLast  = 1<<31 - 1
)

type effectKind uint8

const (
	effDial        effectKind = iota // connect to the host socket for key.HostPort
	effEstablished                   // start relaying; hostInit: write "OK <port>\n" first
	effClose                         // the stream is gone: close its host socket
	effWake                          // data, a shutdown or buffer space for the host side's goroutines
)

// effect is something the I/O layer must do after a machine call.
type effect struct {
	kind     effectKind
	key      connKey
	hostInit bool
}

// limits bound what the guest and the host can make the machine hold.
type limits struct {
	bufAlloc   uint32 // guest→host buffer per stream, advertised as buf_alloc
	toGuestCap int    // host→guest buffer per stream
	maxConns   int
	maxCtl     int // RSTs for packets that belong to no stream, waiting for rx buffers
}

var defaultLimits = limits{bufAlloc: 256 << 10, toGuestCap: 64 << 10, maxConns: 1024, maxCtl: 1024}

type conn struct {
	key      connKey
	state    connState
	hostInit bool
	gone     bool // removed from the machine

	// guest → host (virtio 1.2 §5.10.6.3: we are the receiver)
	toHost  byteQueue
	rxCnt   uint32 // bytes received from the guest
	fwdCnt  uint32 // bytes written to the host socket
	sentFwd uint32 // fwd_cnt the guest last saw from us

	// host → guest (we are the sender)
	toGuest     byteQueue
	txCnt       uint32 // bytes sent to the guest
	peerBuf     uint32 // the guest's buf_alloc
	peerFwd     uint32 // the guest's fwd_cnt
	creditAsked bool   // CREDIT_REQUEST sent since the guest last gave credit

	sendRequest, sendResponse, sendCreditUpdate, sendCreditRequest bool

	queued          bool   // in machine.ready
	guestShut       uint32 // SHUTDOWN flags received
	hostShut        uint32 // SHUTDOWN flags sent
	hostEOF         bool   // the host socket's read side ended
	hostWriteClosed bool   // the host socket's write side was shut after a guest SHUTDOWN SEND
}

// peerCredit is how many more bytes the guest can take (§5.10.6.3). A
// guest that reports more forwarded than we sent, or shrinks buf_alloc,
// gets no credit rather than a wrapped-around huge one.
func (c *conn) peerCredit() uint32 {
	inFlight := c.txCnt - c.peerFwd
	if inFlight >= c.peerBuf {
		return 0
	}
	return c.peerBuf - inFlight
}

type machine struct {
	cid      uint64
	lim      limits
	conns    map[connKey]*conn
	used     map[uint32]bool // host ports of host-initiated streams
	lastPort uint32
	ready    []connKey // streams with something to send, each once
	ctl      []Header  // RSTs for stray packets
	fx       []effect
}

func newMachine(cid uint64, lim limits) *machine {
	return &machine{
		cid: cid, lim: lim,
		conns:    make(map[connKey]*conn),
		used:     make(map[uint32]bool),
		lastPort: hostPortFirst - 1,
	}
}

// effects returns and forgets what the last calls recorded.
func (m *machine) effects() []effect {
	fx := m.fx
	m.fx = nil
	return fx
}

func (m *machine) emitFx(kind effectKind, c *conn) {
	m.fx = append(m.fx, effect{kind: kind, key: c.key, hostInit: c.hostInit})
}

// hdr starts a packet on c. Every packet carries our credit, so it also
// serves as a credit update.
func (m *machine) hdr(c *conn, op uint16) Header {
	c.sentFwd, c.sendCreditUpdate = c.fwdCnt, false
	return Header{
		SrcCID: HostCID, DstCID: m.cid, SrcPort: c.key.HostPort, DstPort: c.key.GuestPort,
		Type: TypeStream, Op: op, BufAlloc: m.lim.bufAlloc, FwdCnt: c.fwdCnt,
	}
}

// rstTo queues an RST answering h, which belongs to no stream.
func (m *machine) rstTo(h Header) {
	if h.Op == OpRst || len(m.ctl) >= m.lim.maxCtl {
		return // never answer an RST; a guest flooding us with strays loses some answers
	}
	m.ctl = append(m.ctl, Header{
		SrcCID: HostCID, DstCID: m.cid, SrcPort: h.DstPort, DstPort: h.SrcPort,
		Type: TypeStream, Op: OpRst,
	})
}

// remove forgets c and closes its host socket.
func (m *machine) remove(c *conn) {
	if c.gone {
		return
	}
	c.gone = true
	delete(m.conns, c.key)
	if c.queued { // keep ready no longer than conns
		for i, k := range m.ready {
			if k == c.key {
				m.ready = append(m.ready[:i], m.ready[i+1:]...)
				break
			}
		}
	}
	if c.hostInit {
		delete(m.used, c.key.HostPort)
	}
	c.toHost.Reset()
	c.toGuest.Reset()
	m.emitFx(effClose, c)
}

// reset ends c abruptly: RST to the guest, host socket closed.
func (m *machine) reset(c *conn) {
	m.remove(c)
	m.rstTo(Header{SrcPort: c.key.GuestPort, DstPort: c.key.HostPort, Op: OpRequest})
}

// schedule puts c in the ready list if it has something to send.
func (m *machine) schedule(c *conn) {
	if c.gone || c.queued {
		return
	}
	if c.state == stConnected && c.toGuest.Len() > 0 && c.peerCredit() == 0 && !c.creditAsked {
		c.sendCreditRequest, c.creditAsked = true, true
	}
	if m.wants(c) {
		c.queued = true
		m.ready = append(m.ready, c.key)
	}
}

func (m *machine) wants(c *conn) bool {
	switch {
	case c.sendRequest, c.sendResponse, c.sendCreditUpdate, c.sendCreditRequest:
		return true
	case c.state != stConnected:
		return false
	case c.toGuest.Len() > 0:
		return c.peerCredit() > 0
	}
	return c.hostEOF && c.hostShut&ShutdownSend == 0
}

// maybeFinish ends a stream both sides have finished with: the guest will
// send no more and all it sent reached the host, and the guest will
// receive no more or we told it the host will send no more. Linux expects
// the RST (virtio_transport_close waits for it).
func (m *machine) maybeFinish(c *conn) {
	if c.guestShut&ShutdownSend != 0 && c.hostWriteClosed &&
		(c.guestShut&ShutdownRcv != 0 || c.hostShut&ShutdownSend != 0) {
		m.reset(c)
	}
}

// hasRx reports whether nextRx has a packet.
func (m *machine) hasRx() bool { return len(m.ctl) > 0 || len(m.ready) > 0 }

// nextRx returns the next packet for the guest, with at most space payload
// bytes. The payload aliases the machine's buffers: copy it before the next
// call.
func (m *machine) nextRx(space int) (Header, []byte, bool) {
	if len(m.ctl) > 0 {
		h := m.ctl[0]
		m.ctl = m.ctl[1:]
		if len(m.ctl) == 0 {
			m.ctl = nil
		}
		return h, nil, true
	}
	// Round-robin; a stream that cannot send now (no room for data) goes
	// to the back, and each stream is looked at once per call.
	for n := len(m.ready); n > 0; n-- {
		key := m.ready[0]
		m.ready = m.ready[1:]
		c := m.conns[key]
		if c == nil || !c.queued {
			continue
		}
		c.queued = false
		h, p, ok := m.emit(c, space)
		m.schedule(c)
		if ok {
			return h, p, true
		}
	}
	if len(m.ready) == 0 {
		m.ready = nil
	}
	return Header{}, nil, false
}

func (m *machine) emit(c *conn, space int) (Header, []byte, bool) {
	switch {
	case c.sendRequest:
		c.sendRequest = false
		return m.hdr(c, OpRequest), nil, true
	case c.sendResponse:
		c.sendResponse = false
		return m.hdr(c, OpResponse), nil, true
	}
	if c.state == stConnected {
		if n := min(c.toGuest.Len(), int(min(c.peerCredit(), MaxPayload)), space); n > 0 {
			h := m.hdr(c, OpRW)
			h.Len = uint32(n)
			p := c.toGuest.Peek(n)
			c.toGuest.Discard(n)
			c.txCnt += uint32(n)
			m.emitFx(effWake, c) // the host reader has room again
			return h, p, true
		}
		if c.hostEOF && c.toGuest.Len() == 0 && c.hostShut&ShutdownSend == 0 {
			h := m.hdr(c, OpShutdown)
			h.Flags = ShutdownSend
			c.hostShut |= ShutdownSend
			m.maybeFinish(c)
			return h, nil, true
		}
	}
	switch {
	case c.sendCreditUpdate:
		return m.hdr(c, OpCreditUpdate), nil, true
	case c.sendCreditRequest:
		c.sendCreditRequest = false
		return m.hdr(c, OpCreditRequest), nil, true
	}
	return Header{}, nil, false
}

// handleTx applies one packet from the guest's tx queue. payload must be
// exactly h.Len bytes; the I/O layer passes nil for a payload it refused to
// read (too long, or past the chain's end), which makes the packet invalid.
func (m *machine) handleTx(h Header, payload []byte) {
	key := connKey{HostPort: h.DstPort, GuestPort: h.SrcPort}
	c := m.conns[key]
	if h.Type != TypeStream || h.SrcCID != m.cid || h.DstCID != HostCID || uint32(len(payload)) != h.Len {
		if c != nil && h.Op != OpRst {
			m.reset(c)
		} else {
			m.rstTo(h)
		}
		return
	}
	if c == nil {
		if h.Op == OpRequest && len(m.conns) < m.lim.maxConns {
			c = &conn{key: key, state: stDialing, peerBuf: h.BufAlloc, peerFwd: h.FwdCnt}
			m.conns[key] = c
			m.emitFx(effDial, c)
			return
		}
		m.rstTo(h) // includes a REQUEST over the stream limit
		return
	}
	hadCredit := c.peerCredit() > 0
	c.peerBuf, c.peerFwd = h.BufAlloc, h.FwdCnt
	if !hadCredit && c.peerCredit() > 0 {
		c.creditAsked = false
	}
	switch h.Op {
	case OpRst:
		m.remove(c)
		return
	case OpResponse:
		if c.state != stRequestSent {
			m.reset(c)
			return
		}
		c.state = stConnected
		m.emitFx(effEstablished, c)
	case OpRW:
		if c.state != stConnected || c.guestShut&ShutdownSend != 0 {
			m.reset(c)
			return
		}
		if uint32(len(payload)) > m.lim.bufAlloc-(c.rxCnt-c.fwdCnt) {
			m.reset(c) // the guest overran the credit we gave it (§5.10.6.3.1)
			return
		}
		if len(payload) > 0 {
			c.toHost.Write(payload)
			c.rxCnt += uint32(len(payload))
			m.emitFx(effWake, c)
		}
	case OpCreditUpdate:
		// The credit fields were taken above.
	case OpCreditRequest:
		c.sendCreditUpdate = true
	case OpShutdown:
		if c.state != stConnected {
			m.reset(c)
			return
		}
		c.guestShut |= h.Flags & (ShutdownRcv | ShutdownSend)
		if c.guestShut&ShutdownRcv != 0 {
			c.toGuest.Reset() // nobody will read it
		}
		m.emitFx(effWake, c)
		m.maybeFinish(c)
	default: // REQUEST on a live stream, unknown operations
		m.reset(c)
		return
	}
	m.schedule(c)
}

// hostConnect starts a host-initiated stream to guestPort and returns its
// key, or false when the stream limit is reached.
func (m *machine) hostConnect(guestPort uint32) (connKey, bool) {
	if len(m.conns) >= m.lim.maxConns {
		return connKey{}, false
	}
	p := m.lastPort
	for {
		p++
		if p > hostPortLast || p < hostPortFirst {
			p = hostPortFirst
		}
		key := connKey{HostPort: p, GuestPort: guestPort}
		if !m.used[p] && m.conns[key] == nil {
			break
		}
	}
	m.lastPort = p
	m.used[p] = true
	c := &conn{key: connKey{HostPort: p, GuestPort: guestPort}, state: stRequestSent, hostInit: true, sendRequest: true}
	m.conns[c.key] = c
	m.schedule(c)
	return c.key, true
}

// dialed records the outcome of effDial. It reports whether the stream
// still wants the socket; if not the caller closes it.
func (m *machine) dialed(key connKey, ok bool) bool {
	c := m.conns[key]
	if c == nil || c.state != stDialing {
		return false
	}
	if !ok {
		m.reset(c) // nobody listens on that port
		return false
	}
	c.state, c.sendResponse = stConnected, true
	m.emitFx(effEstablished, c)
	m.schedule(c)
	return true
}

// toGuestSpace is how many bytes hostData will take now; alive is false
// once the stream is gone.
func (m *machine) toGuestSpace(key connKey) (space int, alive bool) {
	c := m.conns[key]
	if c == nil {
		return 0, false
	}
	return max(m.lim.toGuestCap-c.toGuest.Len(), 0), true
}

// hostData queues bytes read from the host socket for the guest.
func (m *machine) hostData(key connKey, p []byte) {
	c := m.conns[key]
	if c == nil || c.state != stConnected || c.guestShut&ShutdownRcv != 0 {
		return
	}
	n := min(len(p), max(m.lim.toGuestCap-c.toGuest.Len(), 0))
	c.toGuest.Write(p[:n])
	m.schedule(c)
}

// hostEOF records that the host will send no more; the guest hears it as
// SHUTDOWN SEND after the buffered data.
func (m *machine) hostEOF(key connKey) {
	if c := m.conns[key]; c != nil {
		c.hostEOF = true
		m.schedule(c)
	}
}

// hostFailed resets a stream whose host socket broke.
func (m *machine) hostFailed(key connKey) {
	if c := m.conns[key]; c != nil {
		m.reset(c)
	}
}

// takeToHost copies guest data for the host socket into dst. shut says
// the guest will send no more and everything has been taken: the caller
// shuts the socket's write side and calls wroteClosed.
func (m *machine) takeToHost(key connKey, dst []byte) (n int, shut, alive bool) {
	c := m.conns[key]
	if c == nil {
		return 0, false, false
	}
	n = copy(dst, c.toHost.Peek(min(len(dst), c.toHost.Len())))
	c.toHost.Discard(n)
	shut = c.toHost.Len() == 0 && c.guestShut&ShutdownSend != 0 && !c.hostWriteClosed
	return n, shut, true
}

// consumed records n bytes written to the host socket, freeing credit. A
// CREDIT_UPDATE goes out once the guest's view of our free space is below
// half, so a sender waiting for credit always hears about it.
func (m *machine) consumed(key connKey, n int) {
	c := m.conns[key]
	if c == nil || n <= 0 {
		return
	}
	c.fwdCnt += uint32(n)
	if seen := m.lim.bufAlloc - (c.rxCnt - c.sentFwd); seen < m.lim.bufAlloc/2 && c.sentFwd != c.fwdCnt {
		c.sendCreditUpdate = true
		m.schedule(c)
	}
}

// wroteClosed records that the host socket's write side was shut.
func (m *machine) wroteClosed(key connKey) {
	if c := m.conns[key]; c != nil {
		c.hostWriteClosed = true
		m.maybeFinish(c)
	}
}

// resetAll drops every stream without telling the guest, for a transport
// reset: the event itself tells the driver its connections are gone
// (§5.10.6.6).
func (m *machine) resetAll() {
	for _, c := range m.conns {
		m.remove(c)
	}
	m.ready, m.ctl = nil, nil
}
