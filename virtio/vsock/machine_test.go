package vsock

import (
	"bytes"
	"encoding/binary"
	"testing"
)

const testCID = 3

// pkt is a guest packet on the stream (hostPort, guestPort).
func pkt(op uint16, hostPort, guestPort uint32, payload []byte) Header {
	return Header{
		SrcCID: testCID, DstCID: HostCID, SrcPort: guestPort, DstPort: hostPort,
		Len: uint32(len(payload)), Type: TypeStream, Op: op, BufAlloc: 1 << 20,
	}
}

// drain takes every packet the machine has for the guest, with room for
// space payload bytes in each.
func drain(m *machine, space int) (hs []Header, data []byte) {
	for {
		h, p, ok := m.nextRx(space)
		if !ok {
			return hs, data
		}
		hs = append(hs, h)
		data = append(data, p...)
	}
}

func ops(hs []Header) []uint16 {
	var o []uint16
	for _, h := range hs {
		o = append(o, h.Op)
	}
	return o
}

func kinds(fx []effect) []effectKind {
	var k []effectKind
	for _, e := range fx {
		k = append(k, e.kind)
	}
	return k
}

func wantOps(t *testing.T, got []Header, want ...uint16) {
	t.Helper()
	if !equal(ops(got), want) {
		t.Fatalf("packets to guest: %v, want ops %v", got, want)
	}
}

func equal[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestMachineGuestConnect(t *testing.T) {
	for _, tc := range []struct {
		name    string
		dialOK  bool
		wantOps []uint16
		wantFx  []effectKind
	}{
		{"listening", true, []uint16{OpResponse}, []effectKind{effEstablished}},
		{"nobody listening", false, []uint16{OpRst}, []effectKind{effClose}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMachine(testCID, defaultLimits)
			m.handleTx(pkt(OpRequest, 52, 1000, nil), nil)
			if fx := m.effects(); !equal(kinds(fx), []effectKind{effDial}) || fx[0].key != (connKey{52, 1000}) {
				t.Fatalf("REQUEST to port 52: effects %v, want one dial of 52", fx)
			}
			wantOps(t, first(drain(m, 4096))) // nothing until the host socket answers
			m.dialed(connKey{52, 1000}, tc.dialOK)
			if got := kinds(m.effects()); !equal(got, tc.wantFx) {
				t.Errorf("effects %v, want %v", got, tc.wantFx)
			}
			hs, _ := drain(m, 4096)
			wantOps(t, hs, tc.wantOps...)
			if h := hs[0]; h.SrcPort != 52 || h.DstPort != 1000 || h.DstCID != testCID || h.SrcCID != HostCID {
				t.Errorf("answer %v is not addressed from host:52 to %d:1000", h, testCID)
			}
		})
	}
}

func TestMachineHostConnect(t *testing.T) {
	m := newMachine(testCID, defaultLimits)
	k1, ok1 := m.hostConnect(1234)
	k2, ok2 := m.hostConnect(1234)
	if !ok1 || !ok2 || k1.HostPort < hostPortFirst || k2.HostPort == k1.HostPort {
		t.Fatalf("host ports %d, %d: want distinct ports from %d", k1.HostPort, k2.HostPort, hostPortFirst)
	}
	hs, _ := drain(m, 4096)
	wantOps(t, hs, OpRequest, OpRequest)
	if hs[0].BufAlloc != defaultLimits.bufAlloc || hs[0].DstPort != 1234 {
		t.Errorf("REQUEST %v: want buf_alloc %d to port 1234", hs[0], defaultLimits.bufAlloc)
	}
	m.handleTx(pkt(OpResponse, k1.HostPort, 1234, nil), nil)
	if fx := m.effects(); !equal(kinds(fx), []effectKind{effEstablished}) || !fx[0].hostInit {
		t.Fatalf("RESPONSE: effects %v, want established (host-initiated)", fx)
	}
	m.handleTx(pkt(OpRst, k2.HostPort, 1234, nil), nil)
	if got := kinds(m.effects()); !equal(got, []effectKind{effClose}) {
		t.Fatalf("RST: effects %v, want close", got)
	}
	hs, _ = drain(m, 4096)
	wantOps(t, hs) // an RST is never answered
}

// TestMachineInvalid: every packet that fits no stream is answered with
// RST from the port it was sent to; an RST is not answered.
func TestMachineInvalid(t *testing.T) {
	bad := func(f func(*Header)) Header {
		h := pkt(OpRW, 77, 1000, nil)
		f(&h)
		return h
	}
	for _, tc := range []struct {
		name    string
		h       Header
		payload []byte
		rst     bool
	}{
		{"RW to no stream", pkt(OpRW, 77, 1000, []byte("x")), []byte("x"), true},
		{"SHUTDOWN to no stream", pkt(OpShutdown, 77, 1000, nil), nil, true},
		{"CREDIT_UPDATE to no stream", pkt(OpCreditUpdate, 77, 1000, nil), nil, true},
		{"RST to no stream", pkt(OpRst, 77, 1000, nil), nil, false},
		{"seqpacket type", bad(func(h *Header) { h.Type = 2; h.Op = OpRequest }), nil, true},
		{"wrong destination CID", bad(func(h *Header) { h.DstCID = 7; h.Op = OpRequest }), nil, true},
		{"wrong source CID", bad(func(h *Header) { h.SrcCID = 9; h.Op = OpRequest }), nil, true},
		{"payload not read", bad(func(h *Header) { h.Len = 10 }), nil, true},
		{"unknown op", bad(func(h *Header) { h.Op = 99 }), nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMachine(testCID, defaultLimits)
			m.handleTx(tc.h, tc.payload)
			if fx := m.effects(); len(fx) != 0 {
				t.Errorf("effects %v, want none", fx)
			}
			hs, _ := drain(m, 4096)
			if !tc.rst {
				wantOps(t, hs)
				return
			}
			wantOps(t, hs, OpRst)
			if hs[0].SrcPort != tc.h.DstPort || hs[0].DstPort != tc.h.SrcPort {
				t.Errorf("RST %v does not answer %v", hs[0], tc.h)
			}
		})
	}
}

// connected returns a machine with one established guest-initiated stream
// to host port 52 from guest port 1000 whose guest side has peerBuf bytes
// of buffer.
func connected(t *testing.T, lim limits, peerBuf uint32) (*machine, connKey) {
	t.Helper()
	m := newMachine(testCID, lim)
	h := pkt(OpRequest, 52, 1000, nil)
	h.BufAlloc = peerBuf
	m.handleTx(h, nil)
	key := connKey{52, 1000}
	m.dialed(key, true)
	m.effects()
	hs, _ := drain(m, 4096)
	wantOps(t, hs, OpResponse)
	return m, key
}

// TestMachineCredit: the device never sends more than the guest's credit,
// asks for credit once when stuck, and resumes when the guest reports
// consumption.
func TestMachineCredit(t *testing.T) {
	m, key := connected(t, defaultLimits, 10000)
	data := bytes.Repeat([]byte("abcdefgh"), 4096) // 32 KiB
	m.hostData(key, data)
	hs, got := drain(m, 4096)
	if len(got) != 10000 {
		t.Fatalf("sent %d bytes with 10000 of credit", len(got))
	}
	if last := hs[len(hs)-1]; last.Op != OpCreditRequest {
		t.Errorf("last packet %v, want CREDIT_REQUEST when out of credit", last)
	}
	for _, h := range hs[:len(hs)-1] {
		if h.Op != OpRW || h.Len > 4096 {
			t.Fatalf("packet %v: want RW of at most the 4096-byte buffer", h)
		}
	}
	// The guest consumed 6000: 6000 more may go.
	u := pkt(OpCreditUpdate, 52, 1000, nil)
	u.BufAlloc, u.FwdCnt = 10000, 6000
	m.handleTx(u, nil)
	_, more := drain(m, 65536)
	if len(more) != 6000 {
		t.Fatalf("after 6000 bytes of credit returned, sent %d", len(more))
	}
	if !bytes.Equal(append(got, more...), data[:16000]) {
		t.Fatal("stream bytes reordered or corrupted")
	}
	// A guest that claims to have forwarded more than it got gets nothing.
	u.FwdCnt = 1 << 31
	m.handleTx(u, nil)
	if _, p := drain(m, 65536); len(p) != 0 {
		t.Fatalf("sent %d bytes to a guest reporting an impossible fwd_cnt", len(p))
	}
}

// TestMachineReceiveCredit: the guest may send buf_alloc bytes; one more is
// an overrun that resets the stream; consumption is reported back.
func TestMachineReceiveCredit(t *testing.T) {
	lim := defaultLimits
	lim.bufAlloc = 1000
	m, key := connected(t, lim, 4096)
	m.handleTx(pkt(OpRW, 52, 1000, make([]byte, 600)), make([]byte, 600))
	m.handleTx(pkt(OpRW, 52, 1000, make([]byte, 400)), make([]byte, 400))
	buf := make([]byte, 2000)
	n, shut, alive := m.takeToHost(key, buf)
	if n != 1000 || shut || !alive {
		t.Fatalf("takeToHost = %d, %v, %v; want 1000 bytes", n, shut, alive)
	}
	m.consumed(key, 1000)
	hs, _ := drain(m, 4096)
	wantOps(t, hs, OpCreditUpdate)
	if hs[0].FwdCnt != 1000 || hs[0].BufAlloc != 1000 {
		t.Errorf("credit update %v: want fwd_cnt 1000, buf_alloc 1000", hs[0])
	}
	m.effects()
	m.handleTx(pkt(OpRW, 52, 1000, make([]byte, 1000)), make([]byte, 1000))
	m.handleTx(pkt(OpRW, 52, 1000, make([]byte, 1)), make([]byte, 1))
	if got := kinds(m.effects()); !equal(got, []effectKind{effWake, effClose}) {
		t.Fatalf("effects %v: want the overrun to close the stream", got)
	}
	hs, _ = drain(m, 4096)
	wantOps(t, hs, OpRst)
}

// TestMachineShutdown walks a graceful close: guest stops sending, the
// host socket is shut for writing, the host stops sending, then RST.
func TestMachineShutdown(t *testing.T) {
	m, key := connected(t, defaultLimits, 4096)
	m.handleTx(pkt(OpRW, 52, 1000, []byte("bye")), []byte("bye"))
	sh := pkt(OpShutdown, 52, 1000, nil)
	sh.Flags = ShutdownSend
	m.handleTx(sh, nil)
	buf := make([]byte, 100)
	n, shut, _ := m.takeToHost(key, buf)
	if string(buf[:n]) != "bye" || !shut {
		t.Fatalf("takeToHost = %q, shut %v; want \"bye\" then shut", buf[:n], shut)
	}
	m.consumed(key, n)
	m.wroteClosed(key)
	m.effects()
	wantOps(t, first(drain(m, 4096))) // half-closed: the host may still send
	m.hostData(key, []byte("last"))
	m.hostEOF(key)
	hs, data := drain(m, 4096)
	wantOps(t, hs, OpRW, OpShutdown, OpRst)
	if string(data) != "last" || hs[1].Flags != ShutdownSend {
		t.Errorf("got %q then %v; want \"last\" then SHUTDOWN SEND", data, hs[1])
	}
	if got := kinds(m.effects()); !equal(got, []effectKind{effWake, effClose}) {
		t.Errorf("effects %v: want the host socket closed", got)
	}
}

func first(hs []Header, _ []byte) []Header { return hs }

// TestMachineGuestClose: a guest close (SHUTDOWN RCV|SEND) drops data for
// it, flushes what it sent and ends with RST.
func TestMachineGuestClose(t *testing.T) {
	m, key := connected(t, defaultLimits, 4096)
	m.hostData(key, []byte("unread"))
	sh := pkt(OpShutdown, 52, 1000, nil)
	sh.Flags = ShutdownSend | ShutdownRcv
	m.handleTx(sh, nil)
	_, shut, _ := m.takeToHost(key, make([]byte, 10))
	if !shut {
		t.Fatal("guest close did not shut the host socket's write side")
	}
	m.wroteClosed(key)
	hs, data := drain(m, 4096)
	wantOps(t, hs, OpRst)
	if len(data) != 0 {
		t.Errorf("sent %q to a guest that closed", data)
	}
}

func TestMachineLimits(t *testing.T) {
	lim := limits{bufAlloc: 1000, toGuestCap: 100, maxConns: 2, maxCtl: 3}
	m := newMachine(testCID, lim)
	for p := uint32(1); p <= 3; p++ {
		m.handleTx(pkt(OpRequest, 52, p, nil), nil)
	}
	if len(m.conns) != 2 {
		t.Fatalf("%d streams, limit 2", len(m.conns))
	}
	if _, ok := m.hostConnect(9); ok {
		t.Error("host connection accepted past the stream limit")
	}
	for p := uint32(10); p < 20; p++ {
		m.handleTx(pkt(OpRW, 52, p, nil), nil)
	}
	if len(m.ctl) != 3 {
		t.Errorf("%d queued RSTs, limit 3", len(m.ctl))
	}
	m.dialed(connKey{52, 1}, true)
	m.hostData(connKey{52, 1}, make([]byte, 500))
	if n := m.conns[connKey{52, 1}].toGuest.Len(); n > 100 {
		t.Errorf("buffered %d bytes for the guest, limit 100", n)
	}
}

func TestMachineResetAll(t *testing.T) {
	m, _ := connected(t, defaultLimits, 4096)
	m.hostConnect(5)
	m.resetAll()
	if got := kinds(m.effects()); !equal(got, []effectKind{effClose, effClose}) {
		t.Errorf("effects %v, want both streams closed", got)
	}
	if hs, _ := drain(m, 4096); len(hs) != 0 {
		t.Errorf("packets %v after a transport reset, want none", hs)
	}
}

func TestHeaderRoundTrip(t *testing.T) {
	for _, h := range []Header{
		{},
		{SrcCID: 3, DstCID: 2, SrcPort: 1, DstPort: 2, Len: 3, Type: 1, Op: OpRW, Flags: 4, BufAlloc: 5, FwdCnt: 6},
		{SrcCID: ^uint64(0), DstCID: ^uint64(0), SrcPort: ^uint32(0), DstPort: ^uint32(0), Len: ^uint32(0),
			Type: ^uint16(0), Op: ^uint16(0), Flags: ^uint32(0), BufAlloc: ^uint32(0), FwdCnt: ^uint32(0)},
	} {
		var b [HeaderSize]byte
		h.Marshal(b[:])
		var g Header
		if err := g.Unmarshal(b[:]); err != nil || g != h {
			t.Errorf("round trip of %v = %v, %v", h, g, err)
		}
	}
	// Field offsets as in struct virtio_vsock_hdr.
	var b [HeaderSize]byte
	(&Header{SrcPort: 0x11223344, Op: OpCreditRequest, FwdCnt: 9}).Marshal(b[:])
	if binary.LittleEndian.Uint32(b[16:]) != 0x11223344 || binary.LittleEndian.Uint16(b[30:]) != 7 || b[40] != 9 {
		t.Errorf("header layout wrong: % x", b)
	}
	var h Header
	if err := h.Unmarshal(b[:43]); err == nil {
		t.Error("Unmarshal accepted a 43-byte header")
	}
}

func TestParseConnect(t *testing.T) {
	for _, tc := range []struct {
		line string
		port uint32
		ok   bool
	}{
		{"CONNECT 52", 52, true},
		{"connect 1024", 1024, true},
		{"CONNECT 4294967295", 4294967295, true},
		{"CONNECT 52\r", 52, true},
		{"CONNECT  7 ", 7, true},
		{"CONNECT 4294967296", 0, false},
		{"CONNECT -1", 0, false},
		{"CONNECT 0x10", 0, false},
		{"CONNECT", 0, false},
		{"CONNECT 1 2", 0, false},
		{"LISTEN 52", 0, false},
		{"", 0, false},
	} {
		p, err := parseConnect(tc.line)
		if (err == nil) != tc.ok || p != tc.port {
			t.Errorf("parseConnect(%q) = %d, %v; want %d, ok=%v", tc.line, p, err, tc.port, tc.ok)
		}
	}
}

func FuzzParseConnect(f *testing.F) {
	for _, s := range []string{"CONNECT 52", "connect 0", "CONNECT 99999999999", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := parseConnect(s)
		if err == nil {
			if again, err := parseConnect("CONNECT " + itoa(p)); err != nil || again != p {
				t.Fatalf("port %d from %q does not round-trip", p, s)
			}
		}
	})
}

func itoa(p uint32) string {
	var b []byte
	for {
		b = append([]byte{byte('0' + p%10)}, b...)
		p /= 10
		if p == 0 {
			return string(b)
		}
	}
}

// FuzzPacket feeds the machine guest packets interleaved with host events
// and rx pulls. It must not panic, must stay within its limits, and must
// never send a stream more than the credit the guest gave it.
func FuzzPacket(f *testing.F) {
	rec := func(op uint16, host, guest uint32, n int, flags uint32, fwd uint32) []byte {
		h := Header{SrcCID: testCID, DstCID: HostCID, SrcPort: guest, DstPort: host, Len: uint32(n),
			Type: TypeStream, Op: op, Flags: flags, BufAlloc: 3000, FwdCnt: fwd}
		b := make([]byte, 1+HeaderSize+n)
		b[0] = 0 // action: packet
		h.Marshal(b[1:])
		return b
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	f.Add(cat(rec(OpRequest, 52, 1, 0, 0, 0), []byte{1, 0}, rec(OpRW, 52, 1, 10, 0, 0), []byte{2, 0, 3, 0, 4, 0}))
	f.Add(cat(rec(OpRequest, 52, 1, 0, 0, 0), []byte{1, 0, 5, 0, 2, 0}, rec(OpShutdown, 52, 1, 0, 3, 0), []byte{3, 0, 6, 0}))
	f.Add(cat([]byte{7, 9}, rec(OpResponse, hostPortFirst, 9, 0, 0, 0), []byte{5, 0, 2, 0}, rec(OpCreditUpdate, hostPortFirst, 9, 0, 0, 9000)))
	f.Add(cat(rec(OpRW, 1, 2, 4, 0, 0), rec(OpRst, 1, 2, 0, 0, 0), rec(99, 1, 2, 0, 0, 0)))

	lim := limits{bufAlloc: 4096, toGuestCap: 2048, maxConns: 8, maxCtl: 16}
	f.Fuzz(func(t *testing.T, data []byte) {
		m := newMachine(testCID, lim)
		sent := map[connKey]uint32{} // bytes sent per stream, to check credit
		var keys []connKey           // streams seen, for host events
		pick := func(b byte) (connKey, bool) {
			if len(keys) == 0 {
				return connKey{}, false
			}
			return keys[int(b)%len(keys)], true
		}
		buf := make([]byte, 256*30)
		for len(data) >= 2 {
			action, arg := data[0]%8, data[1]
			data = data[1:]
			switch action {
			case 0: // a guest packet
				if len(data) < HeaderSize {
					return
				}
				var h Header
				h.Unmarshal(data)
				data = data[HeaderSize:]
				var payload []byte
				if int(h.Len) <= len(data) && h.Len <= MaxPayload {
					payload, data = data[:h.Len], data[h.Len:]
				}
				m.handleTx(h, payload)
				keys = append(keys, connKey{h.DstPort, h.SrcPort})
				continue
			case 1:
				if k, ok := pick(arg); ok {
					m.dialed(k, arg&1 == 0)
				}
			case 2:
				if k, ok := pick(arg); ok {
					m.hostData(k, bytes.Repeat([]byte{arg}, int(arg)*20))
				}
			case 3:
				if k, ok := pick(arg); ok {
					n, _, _ := m.takeToHost(k, buf[:int(arg)*30])
					m.consumed(k, n)
				}
			case 4:
				if k, ok := pick(arg); ok {
					m.hostEOF(k)
					m.wroteClosed(k)
				}
			case 5: // pull rx packets
				for range int(arg%8) + 1 {
					h, p, ok := m.nextRx(int(arg) * 40)
					if !ok {
						break
					}
					if len(p) != int(h.Len) || len(p) > int(arg)*40 {
						t.Fatalf("packet %v with %d payload bytes, room for %d", h, len(p), int(arg)*40)
					}
					if h.Op == OpRW {
						k := connKey{h.SrcPort, h.DstPort}
						c := m.conns[k]
						sent[k] += h.Len
						if c != nil && c.txCnt-c.peerFwd > c.peerBuf {
							t.Fatalf("stream %v: %d bytes in flight, guest buf_alloc %d", k, c.txCnt-c.peerFwd, c.peerBuf)
						}
					}
				}
			case 6:
				if k, ok := pick(arg); ok {
					m.hostFailed(k)
				}
			case 7:
				if k, ok := m.hostConnect(uint32(arg)); ok {
					keys = append(keys, k)
				}
			}
			data = data[1:]
			m.effects()
			if len(keys) > 64 {
				keys = keys[len(keys)-64:]
			}
		}
		if len(m.conns) > lim.maxConns || len(m.ctl) > lim.maxCtl || len(m.ready) > len(m.conns) {
			t.Fatalf("%d streams, %d RSTs, %d ready: over the limits", len(m.conns), len(m.ctl), len(m.ready))
		}
		for k, c := range m.conns {
			if c.toHost.Len() > int(lim.bufAlloc) || c.toGuest.Len() > lim.toGuestCap {
				t.Fatalf("stream %v buffers %d/%d bytes, limits %d/%d", k, c.toHost.Len(), c.toGuest.Len(), lim.bufAlloc, lim.toGuestCap)
			}
		}
	})
}
