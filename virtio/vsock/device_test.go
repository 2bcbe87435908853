package vsock

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sietch-vm/sietch/virtio/virtiotest"
)

func readN(t testing.TB, r io.Reader, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		t.Fatalf("read %d bytes: %v", n, err)
	}
	return string(b)
}

func TestConfigCID(t *testing.T) {
	r := newRig(t, 4096)
	if got := binary.LittleEndian.Uint64(r.h.Config(0, 8)); got != testCID {
		t.Errorf("guest_cid = %d, want %d", got, testCID)
	}
	if _, err := New(2, nil, nil); err == nil {
		t.Error("New accepted the host's CID for the guest")
	}
}

// TestHostInitiated: CONNECT → guest sees REQUEST, answers RESPONSE → host
// reads "OK <port>", then bytes flow both ways.
func TestHostInitiated(t *testing.T) {
	r := newRig(t, 4096)
	ch := r.g.listen(1234)
	c, line, err := r.hostConnect(1234)
	if err != nil {
		t.Fatalf("host CONNECT 1234: %v", err)
	}
	s, err := r.g.accept(ch)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.ParseUint(strings.TrimPrefix(line, "OK "), 10, 32)
	if !strings.HasPrefix(line, "OK ") || err != nil || uint32(port) != s.key.HostPort || port < hostPortFirst {
		t.Fatalf("device answered %q; want \"OK %d\" (the stream's host port)", line, s.key.HostPort)
	}
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if got := readN(t, s, 4); got != "ping" {
		t.Errorf("guest read %q, want ping", got)
	}
	s.Write([]byte("pong"))
	if got := readN(t, c, 4); got != "pong" {
		t.Errorf("host read %q, want pong", got)
	}
}

// TestHostInitiatedBytesAfterConnect: data the host writes right after the
// CONNECT line, before the guest has answered, is not lost.
func TestHostInitiatedBytesAfterConnect(t *testing.T) {
	r := newRig(t, 4096)
	ch := r.g.listen(7)
	c, err := net.Dial("unix", r.uds)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "connect 7\nearly bytes")
	s, err := r.g.accept(ch)
	if err != nil {
		t.Fatal(err)
	}
	if got := readN(t, s, 11); got != "early bytes" {
		t.Errorf("guest read %q, want \"early bytes\"", got)
	}
	if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || !strings.HasPrefix(line, "OK ") {
		t.Errorf("host read %q, %v; want OK", line, err)
	}
}

// TestHostInitiatedRefused: nobody listens in the guest, so the guest
// answers RST and the host connection is closed without OK.
func TestHostInitiatedRefused(t *testing.T) {
	r := newRig(t, 4096)
	_, line, err := r.hostConnect(999)
	if !errors.Is(err, io.EOF) {
		t.Errorf("host got %q, %v; want the connection closed", line, err)
	}
	// A malformed request is closed too.
	c, err := net.Dial("unix", r.uds)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "HELLO\n")
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if n, err := c.Read(make([]byte, 10)); !errors.Is(err, io.EOF) {
		t.Errorf("after a bad request host read %d bytes, %v; want EOF", n, err)
	}
}

// TestGuestInitiated: a guest connecting to host port P reaches whoever
// listens on <uds>_P; with nobody there it gets RST.
func TestGuestInitiated(t *testing.T) {
	r := newRig(t, 4096)
	ln := r.hostListen(5000)
	s, err := r.g.connect(5000, 64<<10)
	if err != nil {
		t.Fatalf("guest connect to listening port 5000: %v", err)
	}
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s.Write([]byte("hello host"))
	if got := readN(t, c, 10); got != "hello host" {
		t.Errorf("host read %q", got)
	}
	c.Write([]byte("hello guest"))
	if got := readN(t, s, 11); got != "hello guest" {
		t.Errorf("guest read %q", got)
	}
	if _, err := r.g.connect(5001, 64<<10); !errors.Is(err, errRefused) {
		t.Errorf("guest connect to port 5001 with no listener: %v, want reset", err)
	}
}

// TestStrayPackets: packets for no stream are answered with RST from the
// port they went to; RSTs are not answered.
func TestStrayPackets(t *testing.T) {
	r := newRig(t, 4096)
	for _, tc := range []struct {
		name string
		h    Header
	}{
		{"RW to an unknown port", Header{SrcPort: 10, DstPort: 20, Op: OpRW}},
		{"SHUTDOWN to an unknown port", Header{SrcPort: 11, DstPort: 21, Op: OpShutdown}},
		{"datagram type", Header{SrcPort: 12, DstPort: 22, Op: OpRequest, Type: 3}},
		{"unknown op", Header{SrcPort: 13, DstPort: 23, Op: 42}},
	} {
		r.g.sendRaw(tc.h)
		h, ok := r.g.stray()
		if !ok || h.Op != OpRst || h.SrcPort != tc.h.DstPort || h.DstPort != tc.h.SrcPort {
			t.Errorf("%s: guest got %v (%v), want RST %d->%d", tc.name, h, ok, tc.h.DstPort, tc.h.SrcPort)
		}
	}
	r.g.sendRaw(Header{SrcPort: 14, DstPort: 24, Op: OpRst})
	r.g.sendRaw(Header{SrcPort: 15, DstPort: 25, Op: OpRW})
	if h, _ := r.g.stray(); h.DstPort != 15 {
		t.Errorf("after an RST to nowhere the guest got %v; want only the RST for port 15", h)
	}
	// A tx chain too short for a header is returned and ignored.
	q := r.h.Queue(QueueTx)
	r.g.txMu.Lock()
	for q.InFlight() > 0 { // earlier packets first
		q.WaitUsed()
	}
	q.Do(virtiotest.Out(make([]byte, 10)))
	r.g.txMu.Unlock()
	if _, err := r.g.connect(4242, 4096); !errors.Is(err, errRefused) {
		t.Errorf("device after a short packet: connect got %v, want it still answering (reset)", err)
	}
}

// echoHost serves ln: every connection gets its bytes back.
func echoHost(ln *net.UnixListener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			io.Copy(c, c)
		}()
	}
}

// TestConcurrentStreams: 16 streams at once, half opened by the guest and
// half by the host, each carrying its own random bytes both ways.
func TestConcurrentStreams(t *testing.T) {
	r := newRig(t, 4096)
	go echoHost(r.hostListen(80))
	ch := r.g.listen(90)
	const n, size = 16, 256 << 10
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			payload := make([]byte, size)
			rnd := rand.New(rand.NewPCG(uint64(i), 1))
			for j := range payload {
				payload[j] = byte(rnd.Uint32())
			}
			if i%2 == 0 { // guest → host echo → guest
				s, err := r.g.connect(80, 128<<10)
				if err != nil {
					errs <- err
					return
				}
				go s.Write(payload)
				got := make([]byte, size)
				if _, err := io.ReadFull(s, got); err != nil {
					errs <- fmt.Errorf("stream %d: %v", i, err)
					return
				}
				if sha256.Sum256(got) != sha256.Sum256(payload) {
					errs <- fmt.Errorf("stream %d: echoed bytes differ", i)
				}
				return
			}
			// host → guest, the guest echoes
			c, line, err := r.hostConnect(90)
			if err != nil || !strings.HasPrefix(line, "OK ") {
				errs <- fmt.Errorf("stream %d: CONNECT: %q %v", i, line, err)
				return
			}
			go c.Write(payload)
			got := make([]byte, size)
			if _, err := io.ReadFull(c, got); err != nil {
				errs <- fmt.Errorf("stream %d: host read: %v", i, err)
				return
			}
			if sha256.Sum256(got) != sha256.Sum256(payload) {
				errs <- fmt.Errorf("stream %d: echoed bytes differ", i)
			}
		}()
	}
	// The guest's echo for host-initiated streams.
	go func() {
		for range n / 2 {
			s, err := r.g.accept(ch)
			if err != nil {
				errs <- err
				return
			}
			go func() {
				buf := make([]byte, 8192)
				for total := 0; total < size; {
					k, err := s.Read(buf)
					if err != nil {
						errs <- err
						return
					}
					s.Write(buf[:k])
					total += k
				}
			}()
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestLargeTransfer moves 16 MiB each way on one stream while the guest
// advertises 64 KiB of buffer and gives credit back late and slowly; the
// guest checks every packet against its credit.
func TestLargeTransfer(t *testing.T) {
	const size = 16 << 20
	r := newRig(t, 4096)
	ln := r.hostListen(6000)
	s, err := r.g.connect(6000, 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.creditEvery = 60 << 10 // nearly all of buf_alloc before telling
	s.mu.Unlock()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	payload := func(seed uint64) []byte {
		b := make([]byte, size)
		rnd := rand.New(rand.NewPCG(seed, 2))
		for i := 0; i < len(b); i += 8 {
			binary.LittleEndian.PutUint64(b[i:], rnd.Uint64())
		}
		return b
	}
	down, up := payload(1), payload(2)
	errc := make(chan error, 4)
	go func() { _, err := c.Write(down); errc <- err }()
	go func() { _, err := s.Write(up); errc <- err }()
	var gotUp [32]byte
	go func() { // host reads the guest's bytes
		h := sha256.New()
		_, err := io.CopyN(h, c, size)
		h.Sum(gotUp[:0])
		errc <- err
	}()
	h := sha256.New()
	buf := make([]byte, 3000)
	for got := 0; got < size; {
		n, err := s.Read(buf)
		if err != nil {
			t.Fatalf("guest read after %d bytes: %v", got, err)
		}
		h.Write(buf[:n])
		got += n
		if got%(1<<20) < n {
			time.Sleep(time.Millisecond) // a slow reader now and then
		}
	}
	for range 3 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	if [32]byte(h.Sum(nil)) != sha256.Sum256(down) {
		t.Error("host → guest: 16 MiB arrived corrupted")
	}
	if gotUp != sha256.Sum256(up) {
		t.Error("guest → host: 16 MiB arrived corrupted")
	}
	if err := s.overrunErr(); err != nil {
		t.Errorf("credit overrun: %v", err)
	}
}

// TestShutdown: each side half-closes in turn; data still flows the other
// way; when both are done the device ends the stream with RST.
func TestShutdown(t *testing.T) {
	r := newRig(t, 4096)
	ln := r.hostListen(7000)
	s, err := r.g.connect(7000, 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ln.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s.Write([]byte("last words"))
	s.shutdown(ShutdownSend)
	got, err := io.ReadAll(c)
	if string(got) != "last words" || err != nil {
		t.Fatalf("host read %q, %v; want the bytes then EOF", got, err)
	}
	c.Write([]byte("still here"))
	if got := readN(t, s, 10); got != "still here" {
		t.Errorf("guest read %q after its SHUTDOWN SEND", got)
	}
	c.CloseWrite()
	if n, err := s.Read(make([]byte, 10)); err != io.EOF {
		t.Errorf("guest read %d, %v after host EOF; want EOF", n, err)
	}
	if !s.waitReset() {
		t.Error("no RST after both sides shut down")
	}

	// The guest closes first (Linux close(): SHUTDOWN RCV|SEND).
	s, err = r.g.connect(7000, 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	s.shutdown(ShutdownRcv | ShutdownSend)
	if got, err := io.ReadAll(c2); len(got) != 0 || err != nil {
		t.Errorf("host read %q, %v after guest close; want EOF", got, err)
	}
	if !s.waitReset() {
		t.Error("no RST after the guest closed")
	}
}

// TestTransportReset: ResetTransport posts event 0 on the event queue and
// drops the streams; host sockets see the stream end.
func TestTransportReset(t *testing.T) {
	r := newRig(t, 4096)
	ln := r.hostListen(8000)
	if _, err := r.g.connect(8000, 4096); err != nil {
		t.Fatal(err)
	}
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ev := r.h.Queue(QueueEvent)
	ev.Post(virtiotest.In(8))
	ev.Kick()
	r.dev.ResetTransport()
	u := ev.WaitUsed()
	if u.Len != 4 || binary.LittleEndian.Uint32(u.Data()) != EventTransportReset {
		t.Errorf("event queue got %d bytes % x, want le32 0 (TRANSPORT_RESET)", u.Len, u.Data())
	}
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("host socket after transport reset: %v, want EOF", err)
	}
	// A reset with no event buffer waits for one.
	r.dev.ResetTransport()
	if _, ok := ev.WaitUsedFor(50 * time.Millisecond); ok {
		t.Fatal("event used without a buffer posted")
	}
	ev.Post(virtiotest.In(4))
	ev.Kick()
	if u := ev.WaitUsed(); u.Len != 4 {
		t.Errorf("late event: %d bytes", u.Len)
	}
}

// TestResetFencesHostConnections: a host connection made after a transport
// reset reaches the guest only once the guest has taken the reset event
// (it re-posts the event buffer and kicks), so the guest's reset of its
// sockets cannot take it down; a guest that never does gets it after
// fenceTimeout.
func TestResetFencesHostConnections(t *testing.T) {
	r := newRig(t, 4096)
	ch := r.g.listen(1024)
	ev := r.h.Queue(QueueEvent)
	for range 8 { // as Linux posts them: the device wants no kick for the next seven
		ev.Post(virtiotest.In(8))
	}
	ev.Kick()
	r.dev.ResetTransport()
	ev.WaitUsed() // the driver has the event; it has not handled it yet

	type result struct {
		line string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		_, line, err := r.hostConnect(1024)
		got <- result{line, err}
	}()
	select {
	case s := <-ch:
		t.Fatalf("the guest saw a connection request (%v) before it handled the reset", s.key)
	case <-time.After(300 * time.Millisecond):
	}
	ev.Post(virtiotest.In(8)) // handled: the buffer goes back, with a kick
	ev.Kick()
	if _, err := r.g.accept(ch); err != nil {
		t.Fatalf("after the guest handled the reset: %v", err)
	}
	if res := <-got; res.err != nil || !strings.HasPrefix(res.line, "OK ") {
		t.Fatalf("host CONNECT after the reset: %q %v", res.line, res.err)
	}

	// A guest that never re-posts: the connection goes through after the timeout.
	r.dev.ResetTransport()
	ev.WaitUsed()
	t0 := time.Now()
	if _, line, err := r.hostConnect(1024); err != nil || !strings.HasPrefix(line, "OK ") {
		t.Fatalf("host CONNECT with the reset never handled: %q %v", line, err)
	}
	if el := time.Since(t0); el < fenceTimeout/2 {
		t.Errorf("the connection went through after %v, before the guest handled the reset or the timeout", el)
	}
}

// TestQueueRestart: stopping and restarting the queues (vhost-user
// GET_VRING_BASE, as around a snapshot) keeps streams working.
func TestQueueRestart(t *testing.T) {
	r := newRig(t, 4096)
	ln := r.hostListen(9000)
	s, err := r.g.connect(9000, 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r.g.txMu.Lock()
	base := r.h.GetVringBase(QueueTx)
	r.h.SetupQueue(QueueTx, base)
	r.g.txMu.Unlock()
	s.Write([]byte("after restart"))
	if got := readN(t, c, 13); got != "after restart" {
		t.Errorf("host read %q", got)
	}
}

func BenchmarkStreamGuestToHost(b *testing.B) { benchStream(b, false) }
func BenchmarkStreamHostToGuest(b *testing.B) { benchStream(b, true) }

func benchStream(b *testing.B, down bool) {
	r := newRig(b, 64<<10)
	ln := r.hostListen(100)
	s, err := r.g.connect(100, 256<<10)
	if err != nil {
		b.Fatal(err)
	}
	c, err := ln.Accept()
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	const chunk = 256 << 10
	buf := make([]byte, chunk)
	b.SetBytes(chunk)
	b.ResetTimer()
	if down {
		go func() {
			for range b.N {
				if _, err := c.Write(buf); err != nil {
					return
				}
			}
		}()
		if _, err := io.CopyN(io.Discard, s, int64(b.N*chunk)); err != nil {
			b.Fatal(err)
		}
		return
	}
	go func() {
		for range b.N {
			if _, err := s.Write(buf); err != nil {
				return
			}
		}
	}()
	if _, err := io.CopyN(io.Discard, c, int64(b.N*chunk)); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkRoundTrip: host writes a byte, the guest echoes it, the host
// reads it.
func BenchmarkRoundTrip(b *testing.B) {
	r := newRig(b, 4096)
	ch := r.g.listen(200)
	c, _, err := r.hostConnect(200)
	if err != nil {
		b.Fatal(err)
	}
	s, err := r.g.accept(ch)
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		p := make([]byte, 1)
		for {
			if _, err := s.Read(p); err != nil {
				return
			}
			if _, err := s.Write(p); err != nil {
				return
			}
		}
	}()
	p := make([]byte, 1)
	b.ResetTimer()
	for range b.N {
		c.Write(p)
		if _, err := io.ReadFull(c, p); err != nil {
			b.Fatal(err)
		}
	}
}

// The device holds at most its budget of host sockets: past it a host
// connection is closed before its CONNECT is read and a guest connection
// to the host is reset, so that descriptors stay for the vhost-user
// session (a device whose SET_MEM_TABLE could not receive guest memory's
// descriptor died). When a stream ends, room comes back.
func TestHostSocketBudget(t *testing.T) {
	r := newRig(t, 4096)
	r.dev.mu.Lock()
	r.dev.budget = 3
	r.dev.mu.Unlock()
	ch := r.g.listen(1234)
	var conns []*net.UnixConn
	var streams []*gstream
	for i := range 3 {
		c, line, err := r.hostConnect(1234)
		if err != nil || !strings.HasPrefix(line, "OK ") {
			t.Fatalf("host connection %d within the budget: %q, %v", i, line, err)
		}
		s, err := r.g.accept(ch)
		if err != nil {
			t.Fatal(err)
		}
		conns, streams = append(conns, c), append(streams, s)
	}
	if _, line, err := r.hostConnect(1234); err == nil {
		t.Errorf("a host connection past the budget was answered %q", line)
	}
	r.hostListen(77)
	if _, err := r.g.connect(77, 4096); err == nil {
		t.Error("a guest connection to the host past the budget was made")
	}
	// One stream ends, both sides: a new host connection works again.
	conns[0].Close()
	streams[0].shutdown(3)
	var line string
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		var c *net.UnixConn
		if c, line, err = r.hostConnect(1234); err == nil {
			r.g.accept(ch)
			c.Close()
			break
		}
	}
	if err != nil || !strings.HasPrefix(line, "OK ") {
		t.Errorf("after a stream ended, a host connection: %q, %v", line, err)
	}
}
