// Package hostnet gives sandboxes their network on the host: an address
// pool of /30s, a TAP per sandbox, sietchd's nftables table (NAT out of the
// uplink, sandboxes kept from each other and from the host, each one's
// egress policy) and a DNS forwarder per sandbox that enforces the policy's
// names.
package hostnet

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
)

// Config configures a Host.
type Config struct {
	Pool       netip.Prefix // default DefaultPool
	Uplink     string       // default: the interface of the default route
	Table      string       // default DefaultTable
	ResolvConf string       // the host's resolvers; default /etc/resolv.conf
	Upstreams  []string     // instead of ResolvConf's (host:port)
	Log        *slog.Logger

	// MakeLink and DeleteLink make and remove a sandbox's host interface
	// (default CreateTAP and DeleteLink; tests stand a veth pair in).
	MakeLink   func(name string, gw netip.Prefix) error
	DeleteLink func(name string) error
}

// Host is sandbox networking on this host.
type Host struct {
	cfg  Config
	pool *Pool
	fw   *Firewall
	dns  *Forwarder
	log  *slog.Logger

	mu  sync.Mutex
	eps map[string]Endpoint
}

// New sets up networking: it turns IPv4 forwarding on, replaces the
// nftables table with an empty one (no sandbox passes until Attach),
// removes the pool's sandbox TAPs that nothing has open (leftovers of
// earlier runs) and reads the host's resolvers.
func New(cfg Config) (*Host, error) {
	if !cfg.Pool.IsValid() {
		cfg.Pool = DefaultPool
	}
	if cfg.ResolvConf == "" {
		cfg.ResolvConf = "/etc/resolv.conf"
	}
	if cfg.MakeLink == nil {
		cfg.MakeLink = CreateTAP
	}
	if cfg.DeleteLink == nil {
		cfg.DeleteLink = DeleteLink
	}
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	pool, err := NewPool(cfg.Pool)
	if err != nil {
		return nil, err
	}
	if cfg.Uplink == "" {
		if cfg.Uplink, err = DefaultUplink(); err != nil {
			log.Warn("sandbox network: no uplink found; masquerading out of any interface", "err", err)
		}
	}
	ups := cfg.Upstreams
	if len(ups) == 0 {
		if ups, err = Upstreams(cfg.ResolvConf); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1\n"), 0o644); err != nil {
		return nil, fmt.Errorf("turn IPv4 forwarding on (/proc/sys/net/ipv4/ip_forward): %w", err)
	}
	fw, err := NewFirewall(FirewallConfig{Table: cfg.Table, Pool: pool.Prefix(), Uplink: cfg.Uplink})
	if err != nil {
		return nil, err
	}
	removed, err := sweepStale(pool.Prefix())
	if len(removed) > 0 {
		log.Info("sandbox network: removed sandbox interfaces that nothing had open (leftovers of earlier runs)", "count", len(removed), "interfaces", strings.Join(removed, ","))
	}
	if err != nil {
		log.Warn("sandbox network: could not sweep leftover sandbox interfaces; new sandboxes take their subnets over one at a time", "err", err)
	}
	log.Info("sandbox network", "pool", pool.Prefix(), "uplink", cfg.Uplink, "resolvers", strings.Join(ups, ","))
	return &Host{cfg: cfg, pool: pool, fw: fw, dns: NewForwarder(ups, fw, log), log: log, eps: map[string]Endpoint{}}, nil
}

// Pool is the CIDR sandbox addresses come from.
func (h *Host) Pool() netip.Prefix { return h.pool.Prefix() }

// Uplink is the interface sandbox traffic is masqueraded out of ("": any).
func (h *Host) Uplink() string { return h.cfg.Uplink }

// Attach gives sandbox id its interface, address, rules and DNS forwarder
// under policy p. guest, when valid, is the address its record holds from
// before a restart (kept; an interface already there is kept too);
// otherwise a free one is allocated. Attaching an attached sandbox only
// sets its policy.
func (h *Host) Attach(id string, p Policy, guest netip.Addr) (Lease, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if ep, ok := h.eps[id]; ok {
		return ep.Lease, h.setPolicyLocked(ep, p)
	}
	name, err := LinkName(id)
	if err != nil {
		return Lease{}, err
	}
	var lease Lease
	if guest.IsValid() {
		lease, err = h.pool.Reserve(id, guest)
	} else {
		lease, err = h.pool.Allocate(id)
	}
	if err != nil {
		return Lease{}, err
	}
	ep := Endpoint{ID: id, Link: name, Lease: lease}
	undo := func() {
		h.dns.Stop(id)
		h.fw.Remove(id)
		h.cfg.DeleteLink(name)
		h.pool.Release(id)
	}
	removed, err := clearSubnet(name, lease.GatewayPrefix())
	if len(removed) > 0 {
		h.log.Warn("sandbox network: removed stale sandbox interfaces that held this sandbox's subnet", "sandbox", id, "subnet", lease.GatewayPrefix().Masked(), "removed", strings.Join(removed, ","))
	}
	if err != nil {
		h.pool.Release(id)
		return Lease{}, err
	}
	if err := h.cfg.MakeLink(name, lease.GatewayPrefix()); err != nil {
		h.pool.Release(id)
		return Lease{}, err
	}
	if err := h.fw.Set(ep, p); err != nil {
		undo()
		return Lease{}, err
	}
	if err := h.dns.Listen(id, lease, p); err != nil {
		undo()
		return Lease{}, err
	}
	h.eps[id] = ep
	return lease, nil
}

// SetPolicy replaces the policy of attached sandbox id, rules and DNS at
// once; connections it already has stay open.
func (h *Host) SetPolicy(id string, p Policy) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	ep, ok := h.eps[id]
	if !ok {
		return fmt.Errorf("sandbox %s has no network interface", id)
	}
	return h.setPolicyLocked(ep, p)
}

func (h *Host) setPolicyLocked(ep Endpoint, p Policy) error {
	if err := h.fw.Set(ep, p); err != nil {
		return err
	}
	h.dns.SetPolicy(ep.ID, p)
	return nil
}

// Detach removes sandbox id's forwarder, rules and interface and frees its
// address; an unknown id still has its interface removed (a leftover of a
// crash).
func (h *Host) Detach(id string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	name, err := LinkName(id)
	if err != nil {
		return err
	}
	h.dns.Stop(id)
	ferr := h.fw.Remove(id)
	lerr := h.cfg.DeleteLink(name)
	delete(h.eps, id)
	h.pool.Release(id)
	if ferr != nil {
		return ferr
	}
	return lerr
}

// Close stops the DNS forwarders. Interfaces and the nftables table stay,
// so running sandboxes keep their connections until the next sietchd
// rebuilds the table.
func (h *Host) Close() { h.dns.Close() }

// Delete removes the nftables table (tests; a host giving up sandbox
// networking). Interfaces are the caller's to Detach first.
func (h *Host) Delete() error {
	h.dns.Close()
	return h.fw.Delete()
}
