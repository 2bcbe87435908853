package agent

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// vsockShim stands in for the vsock device's host socket: it accepts unix
// connections, reads "CONNECT <port>\n", closes those for other ports (as
// the device does when the guest refuses) and answers "OK <n>\n" before
// handing the stream to the agent, as the guest's vsock listener would.
type vsockShim struct {
	ln    net.Listener
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newVsockShim(t *testing.T, sock string) *vsockShim {
	t.Helper()
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatalf("listen on %s: %v", sock, err)
	}
	s := &vsockShim{ln: ln, conns: make(chan net.Conn), done: make(chan struct{})}
	go s.acceptLoop()
	return s
}

func (s *vsockShim) acceptLoop() {
	hostPort := 1 << 30
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		hostPort++
		go func(hp int) {
			l, err := readConnect(c)
			if err != nil || l != Port {
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

// readConnect reads the CONNECT line a byte at a time.
func readConnect(c net.Conn) (uint32, error) {
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

func (s *vsockShim) Accept() (net.Conn, error) {
	select {
	case c := <-s.conns:
		return c, nil
	case <-s.done:
		return nil, net.ErrClosed
	}
}

func (s *vsockShim) Close() error {
	s.once.Do(func() { close(s.done) })
	return s.ln.Close()
}

func (s *vsockShim) Addr() net.Addr { return s.ln.Addr() }

// testEnv is an agent on a fresh root behind a shim, and a client.
type testEnv struct {
	a    *Agent
	c    *Client
	root string
	sock string
}

// startAgent runs an agent as a host process behind a vsockShim. cfg.Root
// defaults to a new temporary directory.
func startAgent(t *testing.T, cfg Config) *testEnv {
	t.Helper()
	if cfg.Root == "" {
		cfg.Root = t.TempDir()
	}
	if cfg.Env == nil {
		cfg.Env = []string{"PATH=" + os.Getenv("PATH"), "LANG=C"}
	}
	if cfg.Logger == nil && testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	sock := filepath.Join(t.TempDir(), "v.sock")
	shim := newVsockShim(t, sock)
	served := make(chan error, 1)
	go func() { served <- a.Serve(shim) }()
	t.Cleanup(func() {
		a.Close()
		shim.Close()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &testEnv{a: a, c: NewClient(DialUDS(sock, Port)), root: a.root, sock: sock}
}

// testCtx bounds a test's requests so a bug fails it rather than hanging it.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func sha(b []byte) string { return fmt.Sprintf("%x", sha256.Sum256(b)) }
