// Package agenttest runs the guest agent as a host process behind a unix socket that speaks the vsock device's host protocol, for tests.
package agenttest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
)

// Shim stands in for the vsock device's host socket: it accepts unix
// connections, reads "CONNECT <port>\n", closes those for other ports (as
// the device does when nothing listens in the guest) and answers
// "OK <n>\n" before handing the stream on, as the guest's vsock listener
// would. It is a net.Listener for agent.Serve.
type Shim struct {
	ln    net.Listener
	port  uint32
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

// Listen binds the unix socket sock and serves the handshake for port.
func Listen(sock string, port uint32) (*Shim, error) {
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", sock, err)
	}
	s := &Shim{ln: ln, port: port, conns: make(chan net.Conn), done: make(chan struct{})}
	go s.acceptLoop()
	return s, nil
}

func (s *Shim) acceptLoop() {
	hostPort := 1 << 30
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		hostPort++
		go func(hp int) {
			p, err := ReadConnect(c)
			if err != nil || p != s.port {
				c.Close()
				return
			}
			fmt.Fprintf(c, "OK %d\n", hp)
			select {
			case s.conns <- c:
			case <-s.done:
				c.Close()
			}
		}(hostPort)
	}
}

// ReadConnect reads a "CONNECT <port>\n" line a byte at a time, so no
// byte of the stream after it is consumed.
func ReadConnect(c io.Reader) (uint32, error) {
	var line []byte
	b := make([]byte, 1)
	for len(line) < 64 {
		if _, err := io.ReadFull(c, b); err != nil {
			return 0, err
		}
		if b[0] == '\n' {
			f := strings.Fields(string(line))
			if len(f) != 2 || f[0] != "CONNECT" {
				return 0, fmt.Errorf("bad line %q", line)
			}
			p, err := strconv.ParseUint(f[1], 10, 32)
			return uint32(p), err
		}
		line = append(line, b[0])
	}
	return 0, errors.New("line too long")
}

// Accept returns the next stream that passed the handshake.
func (s *Shim) Accept() (net.Conn, error) {
	select {
	case c := <-s.conns:
		return c, nil
	case <-s.done:
		return nil, net.ErrClosed
	}
}

// Close stops accepting.
func (s *Shim) Close() error {
	s.once.Do(func() { close(s.done) })
	return s.ln.Close()
}

// Addr is the unix socket's address.
func (s *Shim) Addr() net.Addr { return s.ln.Addr() }
