package hostnet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// DNSPort is where each sandbox's forwarder listens on its gateway address.
const DNSPort = 53

// upstreamTimeout bounds one query to one upstream resolver.
const upstreamTimeout = 5 * time.Second

// Upstreams reads the resolvers of a resolv.conf (host:port each).
func Upstreams(resolvConf string) ([]string, error) {
	cc, err := dns.ClientConfigFromFile(resolvConf)
	if err != nil {
		return nil, fmt.Errorf("read the host's resolvers from %s: %w", resolvConf, err)
	}
	var out []string
	for _, s := range cc.Servers {
		out = append(out, net.JoinHostPort(s, cc.Port))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s names no nameserver, so sandboxes could resolve nothing", resolvConf)
	}
	return out, nil
}

// resolvedAdder is the part of the firewall the forwarder feeds.
type resolvedAdder interface {
	AddResolved(id string, addrs []netip.Addr, ttl time.Duration) error
}

// Forwarder is the DNS server sandboxes use: one UDP and one TCP socket on
// each sandbox's gateway address, so the socket says which sandbox asks.
// It answers from the host's resolvers, refuses what the sandbox's policy
// denies, and lets the sandbox reach the A records of the allowed names it
// answered (through the firewall's resolved set).
type Forwarder struct {
	upstreams []string
	fw        resolvedAdder
	log       *slog.Logger

	mu        sync.Mutex
	sandboxes map[string]*dnsSandbox
}

type dnsSandbox struct {
	id     string
	guest  netip.Addr
	mu     sync.Mutex
	policy Policy
	udp    *dns.Server
	tcp    *dns.Server
}

// NewForwarder makes a forwarder asking upstreams (host:port).
func NewForwarder(upstreams []string, fw resolvedAdder, log *slog.Logger) *Forwarder {
	if log == nil {
		log = slog.Default()
	}
	return &Forwarder{upstreams: upstreams, fw: fw, log: log, sandboxes: map[string]*dnsSandbox{}}
}

// Listen starts sandbox id's forwarder on lease.Gateway (which must be an
// address of this host by now) under policy p; a running one only gets p.
func (d *Forwarder) Listen(id string, lease Lease, p Policy) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s, ok := d.sandboxes[id]; ok {
		s.setPolicy(p)
		return nil
	}
	addr := net.JoinHostPort(lease.Gateway.String(), strconv.Itoa(DNSPort))
	pc, err := net.ListenPacket("udp4", addr)
	if err != nil {
		return fmt.Errorf("DNS forwarder of sandbox %s: listen on udp %s: %w", id, addr, err)
	}
	l, err := net.Listen("tcp4", addr)
	if err != nil {
		pc.Close()
		return fmt.Errorf("DNS forwarder of sandbox %s: listen on tcp %s: %w", id, addr, err)
	}
	s := &dnsSandbox{id: id, guest: lease.Guest, policy: p}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) { d.serve(s, w, r) })
	s.udp = &dns.Server{PacketConn: pc, Handler: h}
	s.tcp = &dns.Server{Listener: l, Handler: h, ReadTimeout: 10 * time.Second, MaxTCPQueries: 64}
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		go func() {
			if err := srv.ActivateAndServe(); err != nil {
				d.log.Debug("DNS forwarder stopped", "sandbox", id, "err", err)
			}
		}()
	}
	d.sandboxes[id] = s
	return nil
}

// SetPolicy changes the policy sandbox id's forwarder answers by.
func (d *Forwarder) SetPolicy(id string, p Policy) {
	d.mu.Lock()
	s := d.sandboxes[id]
	d.mu.Unlock()
	if s != nil {
		s.setPolicy(p)
	}
}

// Stop closes sandbox id's sockets; an unknown id is no error.
func (d *Forwarder) Stop(id string) {
	d.mu.Lock()
	s := d.sandboxes[id]
	delete(d.sandboxes, id)
	d.mu.Unlock()
	if s != nil {
		s.shutdown()
	}
}

// Close stops every sandbox's forwarder.
func (d *Forwarder) Close() {
	d.mu.Lock()
	all := d.sandboxes
	d.sandboxes = map[string]*dnsSandbox{}
	d.mu.Unlock()
	for _, s := range all {
		s.shutdown()
	}
}

func (s *dnsSandbox) setPolicy(p Policy) {
	s.mu.Lock()
	s.policy = p
	s.mu.Unlock()
}

func (s *dnsSandbox) shutdown() {
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		if err := srv.ShutdownContext(ctx); err != nil {
			// Not yet started: closing its socket stops it when it does.
			if srv.PacketConn != nil {
				srv.PacketConn.Close()
			}
			if srv.Listener != nil {
				srv.Listener.Close()
			}
		}
		cancel()
	}
}

func (d *Forwarder) serve(s *dnsSandbox, w dns.ResponseWriter, r *dns.Msg) {
	reply := func(rcode int) {
		m := new(dns.Msg)
		m.SetRcode(r, rcode)
		w.WriteMsg(m)
	}
	if from, ok := netip.AddrFromSlice(addrIP(w.RemoteAddr())); !ok || from.Unmap() != s.guest {
		reply(dns.RcodeRefused) // not this sandbox (the firewall lets no other through)
		return
	}
	if r.Opcode != dns.OpcodeQuery || len(r.Question) != 1 {
		reply(dns.RcodeFormatError)
		return
	}
	q := r.Question[0]
	s.mu.Lock()
	p := s.policy
	s.mu.Unlock()
	verdict := p.nameVerdict(q.Name)
	if verdict == nameRefuse {
		d.log.Debug("DNS refused", "sandbox", s.id, "name", q.Name)
		reply(dns.RcodeRefused)
		return
	}
	network := "udp"
	if _, ok := w.RemoteAddr().(*net.TCPAddr); ok {
		network = "tcp"
	}
	resp, err := d.exchange(network, r)
	if err != nil {
		d.log.Warn("DNS upstream failed", "sandbox", s.id, "name", q.Name, "err", err)
		reply(dns.RcodeServerFailure)
		return
	}
	if verdict == nameAllow {
		var addrs []netip.Addr
		ttl := maxResolvedTTL
		for _, rr := range resp.Answer {
			if a, ok := rr.(*dns.A); ok {
				if ip, ok := netip.AddrFromSlice(a.A.To4()); ok {
					addrs = append(addrs, ip)
					ttl = min(ttl, time.Duration(a.Hdr.Ttl)*time.Second)
				}
			}
		}
		// Before the answer: the guest connects as soon as it has it.
		if err := d.fw.AddResolved(s.id, addrs, ttl); err != nil {
			d.log.Warn("DNS: allowing the answer's addresses failed", "sandbox", s.id, "name", q.Name, "err", err)
			reply(dns.RcodeServerFailure)
			return
		}
	}
	resp.Id = r.Id
	w.WriteMsg(resp)
}

// exchange asks the upstream resolvers in turn.
func (d *Forwarder) exchange(network string, r *dns.Msg) (*dns.Msg, error) {
	c := &dns.Client{Net: network, Timeout: upstreamTimeout}
	q := r.Copy()
	var errs []error
	for _, up := range d.upstreams {
		resp, _, err := c.Exchange(q, up)
		if err == nil {
			return resp, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", up, err))
	}
	if len(errs) == 0 {
		return nil, fmt.Errorf("no upstream resolver")
	}
	return nil, errors.Join(errs...)
}

func addrIP(a net.Addr) net.IP {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.IP
	case *net.TCPAddr:
		return a.IP
	}
	return nil
}
