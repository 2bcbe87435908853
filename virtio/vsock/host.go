package vsock

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The host side: the listener for host-initiated streams, dialing for
// guest-initiated ones, and two goroutines per stream copying bytes between
// the host socket and the machine's buffers.

// maxConnectLine bounds the "CONNECT <port>\n" line a host program sends.
const maxConnectLine = 64

// relayBuf is the most a stream's goroutines move per read or write.
const relayBuf = 64 << 10

// link is a stream's host socket and the goroutines using it.
type link struct {
	key    connKey
	conn   net.Conn   // nil while dialing
	cond   *sync.Cond // on Device.mu: buffers, shutdowns or closing changed
	closed bool
}

func (d *Device) newLink(key connKey, c net.Conn) *link {
	l := &link{key: key, conn: c, cond: sync.NewCond(&d.mu)}
	d.links[key] = l
	return l
}

// apply carries out one effect of the machine, with mu held.
func (d *Device) apply(fx effect) {
	l := d.links[fx.key]
	switch fx.kind {
	case effDial:
		if n := d.hostSockets(); n >= d.budget {
			d.log.Load().Warn("vsock: guest connection to the host reset: the device holds as many host sockets as it may", "port", fx.key.HostPort, "held", n, "budget", d.budget)
			d.m.hostFailed(fx.key)
			return
		}
		l = d.newLink(fx.key, nil)
		d.wg.Add(1)
		go d.dialStream(l)
	case effEstablished:
		if l == nil || l.conn == nil {
			d.m.hostFailed(fx.key) // cannot happen: the link comes first
			return
		}
		d.wg.Add(2)
		go d.readHost(l)
		go d.writeHost(l, fx.hostInit)
	case effClose:
		if l == nil {
			return
		}
		delete(d.links, fx.key)
		l.closed = true
		if l.conn != nil {
			l.conn.Close()
		}
		l.cond.Broadcast()
	case effWake:
		if l != nil {
			l.cond.Broadcast()
		}
	}
}

// accept takes host-initiated connections until the listener is closed.
func (d *Device) accept() {
	defer d.wg.Done()
	for {
		c, err := d.ln.AcceptUnix()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			// Out of descriptors or memory: give the host a moment.
			d.log.Load().Warn("vsock: accept host connection", "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		d.mu.Lock()
		if d.closed {
			d.mu.Unlock()
			c.Close()
			return
		}
		if n := d.hostSockets(); n >= d.budget {
			d.mu.Unlock()
			d.log.Load().Warn("vsock: host connection refused: the device holds as many host sockets as it may", "held", n, "budget", d.budget)
			c.Close()
			continue
		}
		d.pending[c] = true
		d.wg.Add(1)
		d.mu.Unlock()
		go d.handshake(c)
	}
}

// handshake reads "CONNECT <port>\n" and asks the guest for the stream.
func (d *Device) handshake(c *net.UnixConn) {
	defer d.wg.Done()
	line, err := readLine(c, maxConnectLine)
	var port uint32
	if err == nil {
		port, err = parseConnect(line)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.pending, c)
	if err != nil || d.closed {
		if err != nil {
			d.log.Load().Info("vsock: host connection refused", "err", err)
		}
		c.Close()
		return
	}
	if f := d.fence; f != nil {
		f.held = append(f.held, heldConn{c, port})
		return
	}
	d.hostConnect(c, port)
}

// hostConnect asks the guest for a stream to port for host connection c;
// the caller holds mu.
func (d *Device) hostConnect(c *net.UnixConn, port uint32) {
	key, ok := d.m.hostConnect(port)
	if !ok {
		d.log.Load().Warn("vsock: too many streams; host connection refused", "port", port)
		c.Close()
		return
	}
	d.newLink(key, c)
	d.settle()
}

// readLine reads up to and including '\n' one byte at a time, so that
// bytes the host sends after the line stay in the socket for the guest.
func readLine(r io.Reader, limit int) (string, error) {
	var b [1]byte
	var line []byte
	for len(line) < limit {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return "", fmt.Errorf("read CONNECT line: %w", err)
		}
		if b[0] == '\n' {
			return string(line), nil
		}
		line = append(line, b[0])
	}
	return "", fmt.Errorf("CONNECT line longer than %d bytes", limit)
}

// parseConnect parses the host's request line, without its '\n':
// "CONNECT <port>" with a decimal 32-bit port, the word in any case.
func parseConnect(line string) (uint32, error) {
	f := strings.Fields(line)
	if len(f) != 2 || !strings.EqualFold(f[0], "CONNECT") {
		return 0, fmt.Errorf("host sent %q; want \"CONNECT <port>\\n\"", line)
	}
	p, err := strconv.ParseUint(f[1], 10, 32)
	if err != nil {
		return 0, fmt.Errorf("host sent %q: port is not a decimal 32-bit number", line)
	}
	return uint32(p), nil
}

// dialStream connects a guest-initiated stream to its host service.
func (d *Device) dialStream(l *link) {
	defer d.wg.Done()
	c, err := d.dial(l.key.HostPort)
	d.mu.Lock()
	defer d.mu.Unlock()
	if l.closed { // the guest gave up, or the device closed
		if c != nil {
			c.Close()
		}
		return
	}
	if err != nil {
		d.log.Load().Info("vsock: guest connection refused", "port", l.key.HostPort, "err", err)
		d.m.dialed(l.key, false)
		d.settle()
		return
	}
	l.conn = c
	if !d.m.dialed(l.key, true) {
		c.Close()
	}
	d.settle()
}

// readHost moves bytes from the host socket towards the guest, reading
// only as much as the stream's buffer has room for.
func (d *Device) readHost(l *link) {
	defer d.wg.Done()
	buf := make([]byte, relayBuf)
	for {
		d.mu.Lock()
		space, alive := d.m.toGuestSpace(l.key)
		for alive && space == 0 && !l.closed {
			l.cond.Wait()
			space, alive = d.m.toGuestSpace(l.key)
		}
		stop := !alive || l.closed
		d.mu.Unlock()
		if stop {
			return
		}
		n, err := l.conn.Read(buf[:min(space, len(buf))])
		d.mu.Lock()
		if l.closed {
			d.mu.Unlock()
			return
		}
		if n > 0 {
			d.m.hostData(l.key, buf[:n])
		}
		switch {
		case errors.Is(err, io.EOF):
			d.m.hostEOF(l.key)
		case err != nil:
			d.log.Load().Info("vsock: read host socket", "port", l.key.HostPort, "err", err)
			d.m.hostFailed(l.key)
		}
		d.settle()
		d.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// writeHost moves the guest's bytes to the host socket, first answering a
// host-initiated CONNECT with "OK <host port>\n".
func (d *Device) writeHost(l *link, hostInit bool) {
	defer d.wg.Done()
	fail := func(err error) {
		d.mu.Lock()
		defer d.mu.Unlock()
		if !l.closed {
			d.log.Load().Info("vsock: write host socket", "port", l.key.HostPort, "err", err)
			d.m.hostFailed(l.key)
			d.settle()
		}
	}
	if hostInit {
		if _, err := fmt.Fprintf(l.conn, "OK %d\n", l.key.HostPort); err != nil {
			fail(err)
			return
		}
	}
	buf := make([]byte, relayBuf)
	for {
		d.mu.Lock()
		var n int
		var shut, alive bool
		for !l.closed {
			n, shut, alive = d.m.takeToHost(l.key, buf)
			if !alive || n > 0 || shut {
				break
			}
			l.cond.Wait()
		}
		stop := l.closed || !alive
		d.mu.Unlock()
		if stop {
			return
		}
		if n > 0 {
			if _, err := l.conn.Write(buf[:n]); err != nil {
				fail(err)
				return
			}
			d.mu.Lock()
			if !l.closed {
				d.m.consumed(l.key, n)
				d.settle()
			}
			d.mu.Unlock()
		}
		if shut {
			if cw, ok := l.conn.(interface{ CloseWrite() error }); ok {
				if err := cw.CloseWrite(); err != nil {
					fail(err)
					return
				}
			}
			d.mu.Lock()
			if !l.closed {
				d.m.wroteClosed(l.key)
				d.settle()
			}
			d.mu.Unlock()
			return
		}
	}
}
