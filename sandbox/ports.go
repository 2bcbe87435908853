package sandbox

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/sietch-vm/sietch/wire/agentproto"
)

// maxPorts bounds one sandbox's forwards.
const maxPorts = 64

// portConnectTimeout bounds reaching the guest port for one connection.
const portConnectTimeout = 10 * time.Second

// forward is a host TCP listener whose connections are relayed to a guest
// port through the agent.
type forward struct {
	port Port
	ln   net.Listener
	ac   *agentproto.Client
	log  func(msg string, args ...any)
	warn func(msg string, args ...any)

	mu     sync.Mutex
	conns  map[net.Conn]bool
	closed bool
	wg     sync.WaitGroup
}

// AddPort forwards a host TCP port to a guest port of a running sandbox.
func (m *Manager) AddPort(ctx context.Context, id string, req PortSpec) (Port, error) {
	if req.GuestPort < 1 || req.GuestPort > 65535 {
		return Port{}, fmt.Errorf("%w: guest_port %d: want 1 to 65535", ErrInvalid, req.GuestPort)
	}
	if req.HostPort < 0 || req.HostPort > 65535 {
		return Port{}, fmt.Errorf("%w: host_port %d: want 0 (any free port) to 65535", ErrInvalid, req.HostPort)
	}
	if req.HostAddr == "" {
		req.HostAddr = "127.0.0.1"
	}
	if _, err := netip.ParseAddr(req.HostAddr); err != nil {
		return Port{}, fmt.Errorf("%w: host_addr %q is not an IP address", ErrInvalid, req.HostAddr)
	}
	sb, err := m.awake(ctx, id)
	if err != nil {
		return Port{}, err
	}
	sb.op.Lock()
	defer sb.op.Unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case sb.rec.State != StateRunning && sb.rec.State != StatePaused:
		return Port{}, fmt.Errorf("%w: sandbox %s is %s; ports are forwarded to running sandboxes", ErrWrongState, id, sb.rec.State)
	case len(sb.ports) >= maxPorts:
		return Port{}, fmt.Errorf("%w: sandbox %s has %d port forwards, the limit is %d", ErrLimit, id, len(sb.ports), maxPorts)
	}
	f, err := m.listenForward(sb, Port{GuestPort: req.GuestPort, HostAddr: req.HostAddr, HostPort: req.HostPort})
	if err != nil {
		return Port{}, err
	}
	sb.ports[f.port.HostPort] = f
	sb.rec.Ports = append(sb.rec.Ports, f.port)
	m.save(sb)
	return f.port, nil
}

// listenForward listens for p and starts relaying; the caller holds m.mu.
func (m *Manager) listenForward(sb *sandbox, p Port) (*forward, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(p.HostAddr, strconv.Itoa(p.HostPort)))
	if err != nil {
		return nil, fmt.Errorf("%w: listen on %s port %d: %v", ErrInvalid, p.HostAddr, p.HostPort, err)
	}
	p.HostPort = ln.Addr().(*net.TCPAddr).Port
	f := &forward{port: p, ln: ln, ac: m.agentFor(sb), conns: map[net.Conn]bool{},
		log: func(msg string, args ...any) {
			m.log.Debug(msg, append([]any{"sandbox", sb.id, "host_port", p.HostPort}, args...)...)
		},
		warn: func(msg string, args ...any) {
			m.log.Warn(msg, append([]any{"sandbox", sb.id, "host_port", p.HostPort}, args...)...)
		}}
	f.wg.Add(1)
	go f.accept()
	return f, nil
}

func (f *forward) accept() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		if !f.track(c) {
			c.Close()
			return
		}
		f.wg.Add(1)
		go f.relay(c)
	}
}

// track adds c to the connections close ends; false once closed.
func (f *forward) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.conns[c] = true
	return true
}

func (f *forward) untrack(c net.Conn) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
	c.Close()
}

// relay copies both ways between host connection c and the guest port,
// passing each direction's end on as a half-close.
func (f *forward) relay(c net.Conn) {
	defer f.wg.Done()
	defer f.untrack(c)
	ctx, cancel := context.WithTimeout(context.Background(), portConnectTimeout)
	g, err := f.ac.ConnectPort(ctx, f.port.GuestPort)
	cancel()
	if err != nil {
		f.warn("port forward: cannot reach the guest port", "guest_port", f.port.GuestPort, "err", err)
		return
	}
	if !f.track(g) {
		g.Close()
		return
	}
	defer f.untrack(g)
	var wg sync.WaitGroup
	wg.Add(2)
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		} else {
			dst.Close()
		}
	}
	go pipe(g, c)
	go pipe(c, g)
	wg.Wait()
}

// close stops listening, ends every relayed connection and waits for the
// relays to finish.
func (f *forward) close() {
	f.mu.Lock()
	f.closed = true
	conns := make([]net.Conn, 0, len(f.conns))
	for c := range f.conns {
		conns = append(conns, c)
	}
	f.mu.Unlock()
	f.ln.Close()
	for _, c := range conns {
		c.Close()
	}
	f.wg.Wait()
}

// takeForwards detaches sb's forwards for the caller to close; the caller
// holds m.mu.
func (sb *sandbox) takeForwards() []*forward {
	fwds := make([]*forward, 0, len(sb.ports))
	for _, f := range sb.ports {
		fwds = append(fwds, f)
	}
	sb.ports = map[int]*forward{}
	sb.rec.Ports = nil
	return fwds
}

// Ports lists a sandbox's port forwards.
func (m *Manager) Ports(id string) ([]Port, error) {
	sb, err := m.lookup(id)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Port{}, sb.rec.Ports...), nil
}

// RemovePort ends the forward from hostPort.
func (m *Manager) RemovePort(id string, hostPort int) error {
	sb, err := m.lookup(id)
	if err != nil {
		return err
	}
	m.mu.Lock()
	f, ok := sb.ports[hostPort]
	if ok {
		delete(sb.ports, hostPort)
		sb.rec.Ports = slices.DeleteFunc(sb.rec.Ports, func(p Port) bool { return p.HostPort == hostPort })
		m.save(sb)
	}
	m.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: sandbox %s forwards no host port %d", ErrNotFound, id, hostPort)
	}
	f.close()
	return nil
}

// reopenPortsLocked listens again on the host ports sb's record lists: a
// sandbox taken up after a restart, or resumed from disk. The caller holds
// m.mu.
func (m *Manager) reopenPortsLocked(sb *sandbox) {
	ports := sb.rec.Ports
	sb.rec.Ports = nil
	for _, p := range ports {
		if f, err := m.listenForward(sb, p); err != nil {
			m.log.Warn("port forward not restored", "sandbox", sb.id, "host_port", p.HostPort, "err", err)
		} else {
			sb.ports[f.port.HostPort] = f
			sb.rec.Ports = append(sb.rec.Ports, f.port)
		}
	}
}
