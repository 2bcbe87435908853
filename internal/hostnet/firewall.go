package hostnet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// DefaultTable is the nftables table (family inet) sietchd owns.
const DefaultTable = "sietch"

// Endpoint is one sandbox as the firewall sees it: its host interface and
// its lease.
type Endpoint struct {
	ID    string
	Link  string // host interface (the TAP), LinkName(ID)
	Lease Lease
}

// Firewall keeps sietchd's nftables table: NAT of the pool out of the
// uplink, and each sandbox's egress policy. Its layout (`nft list table
// inet sietch` shows it):
//
//	chain forward (hook forward, filter): sx→sx reject; replies to sx accept;
//	  anything else to sx drop; non-IPv4 from sx drop; replies from sx
//	  accept; sx jump fwd-sandboxes; sx drop
//	chain fwd-sandboxes: iifname sxID jump sb-ID, one rule a sandbox
//	chain sb-ID: the sandbox's policy (see Policy), ending in accept or reject
//	set r-ID: addresses its allowed names resolved to, each with a timeout
//	chain input (hook input, filter): replies to sx accept; sx jump
//	  in-sandboxes; sx reject
//	chain in-sandboxes: DNS from each sandbox to its own gateway address
//	chain postrouting (hook postrouting, nat): pool out of the uplink masquerade
//
// Every change is one netlink batch, so the kernel applies it whole or not
// at all.
type Firewall struct {
	mu    sync.Mutex
	conn  *nftables.Conn
	table *nftables.Table
	pool  netip.Prefix

	fwdDispatch, inDispatch *nftables.Chain
	sandboxes               map[string]*fwSandbox
}

type fwSandbox struct {
	ep       Endpoint
	policy   Policy
	chain    *nftables.Chain
	resolved *nftables.Set
	expiry   map[netip.Addr]time.Time // what we put in resolved, and until when
}

// FirewallConfig says what the firewall's table serves.
type FirewallConfig struct {
	Table  string       // default DefaultTable
	Pool   netip.Prefix // the sandboxes' addresses, masqueraded
	Uplink string       // where they leave the host; "" masquerades out of any non-sandbox interface
}

// NewFirewall replaces the table cfg.Table (family inet) with an empty
// one of the layout above: no sandbox is let through until Set names it.
func NewFirewall(cfg FirewallConfig) (*Firewall, error) {
	if cfg.Table == "" {
		cfg.Table = DefaultTable
	}
	conn, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	f := &Firewall{conn: conn, pool: cfg.Pool, sandboxes: map[string]*fwSandbox{},
		table: &nftables.Table{Family: nftables.TableFamilyINet, Name: cfg.Table}}
	c := conn
	c.AddTable(f.table)
	c.DelTable(f.table)
	c.AddTable(f.table)

	accept := nftables.ChainPolicyAccept
	fwd := c.AddChain(&nftables.Chain{Name: "forward", Table: f.table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	in := c.AddChain(&nftables.Chain{Name: "input", Table: f.table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	post := c.AddChain(&nftables.Chain{Name: "postrouting", Table: f.table, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: &accept})
	f.fwdDispatch = c.AddChain(&nftables.Chain{Name: "fwd-sandboxes", Table: f.table})
	f.inDispatch = c.AddChain(&nftables.Chain{Name: "in-sandboxes", Table: f.table})

	rule := func(ch *nftables.Chain, e ...expr.Any) {
		c.AddRule(&nftables.Rule{Table: f.table, Chain: ch, Exprs: e})
	}
	sxIn, sxOut := ifPrefix(expr.MetaKeyIIFNAME), ifPrefix(expr.MetaKeyOIFNAME)
	// forward
	rule(fwd, cat(sxIn, sxOut, reject())...)
	rule(fwd, cat(sxOut, ctReply(), accept_())...)
	rule(fwd, cat(sxOut, drop())...)
	rule(fwd, cat(sxIn, notIPv4(), drop())...)
	rule(fwd, cat(sxIn, ctReply(), accept_())...)
	rule(fwd, cat(sxIn, jump(f.fwdDispatch.Name))...)
	rule(fwd, cat(sxIn, drop())...)
	// input
	rule(in, cat(sxIn, ctReply(), accept_())...)
	rule(in, cat(sxIn, jump(f.inDispatch.Name))...)
	rule(in, cat(sxIn, reject())...)
	// postrouting
	if cfg.Pool.IsValid() {
		out := cat(isIPv4(), addrIn(12, cfg.Pool))
		if cfg.Uplink != "" {
			out = cat(out, ifName(expr.MetaKeyOIFNAME, cfg.Uplink))
		} else {
			out = cat(out, notIfPrefix(expr.MetaKeyOIFNAME))
		}
		rule(post, cat(out, []expr.Any{&expr.Masq{}})...)
	}
	if err := c.Flush(); err != nil {
		return nil, fmt.Errorf("create nftables table inet %s: %w (is nf_tables available? sietchd needs root or CAP_NET_ADMIN)", cfg.Table, err)
	}
	return f, nil
}

// Set puts sandbox ep under policy p, or replaces its policy: its chain and
// its resolved set are rewritten in one batch (a name allow-list starts
// empty again; the guest's next lookups fill it).
func (f *Firewall) Set(ep Endpoint, p Policy) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.conn
	s, ok := f.sandboxes[ep.ID]
	if !ok {
		s = &fwSandbox{ep: ep,
			chain: &nftables.Chain{Name: "sb-" + trimID(ep.ID), Table: f.table},
			resolved: &nftables.Set{Table: f.table, Name: "r-" + trimID(ep.ID),
				KeyType: nftables.TypeIPAddr, HasTimeout: true}}
		c.AddChain(s.chain)
		if err := c.AddSet(s.resolved, nil); err != nil {
			return fmt.Errorf("nftables set for sandbox %s: %w", ep.ID, err)
		}
	} else {
		c.FlushChain(s.chain)
		c.FlushSet(s.resolved)
	}
	for _, r := range policyRules(ep, p, s.resolved) {
		c.AddRule(&nftables.Rule{Table: f.table, Chain: s.chain, Exprs: r})
	}
	old, had := f.sandboxes[ep.ID]
	next := &fwSandbox{ep: ep, policy: p, chain: s.chain, resolved: s.resolved, expiry: map[netip.Addr]time.Time{}}
	f.sandboxes[ep.ID] = next
	f.dispatchLocked()
	if err := c.Flush(); err != nil {
		if had {
			f.sandboxes[ep.ID] = old
		} else {
			delete(f.sandboxes, ep.ID)
		}
		return fmt.Errorf("apply the network policy of sandbox %s: %w", ep.ID, err)
	}
	return nil
}

// Remove takes sandbox id out of the table; an unknown id is no error.
func (f *Firewall) Remove(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.sandboxes[id]
	if !ok {
		return nil
	}
	delete(f.sandboxes, id)
	f.dispatchLocked()
	f.conn.DelChain(s.chain)
	f.conn.DelSet(s.resolved)
	if err := f.conn.Flush(); err != nil {
		f.sandboxes[id] = s
		return fmt.Errorf("remove the network rules of sandbox %s: %w", id, err)
	}
	return nil
}

// minResolvedTTL is the shortest time an address an allowed name resolved
// to stays reachable: a guest may cache the answer, and a connection it
// opens late in the TTL must still pass.
const minResolvedTTL = 60 * time.Second

// maxResolvedTTL bounds how long one answer keeps an address reachable.
const maxResolvedTTL = 24 * time.Hour

// AddResolved lets sandbox id reach addrs (what an allowed name resolved
// to) for ttl, at least minResolvedTTL; an address it may already reach
// gets the later of its two expiries.
func (f *Firewall) AddResolved(id string, addrs []netip.Addr, ttl time.Duration) error {
	ttl = min(max(ttl, minResolvedTTL), maxResolvedTTL)
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.sandboxes[id]
	if !ok || len(addrs) == 0 {
		return nil
	}
	now := time.Now()
	until := now.Add(ttl)
	var add, del []nftables.SetElement
	for _, a := range addrs {
		if !a.Is4() {
			continue
		}
		if exp, ok := s.expiry[a]; ok && exp.After(now.Add(time.Second)) {
			if !exp.Before(until) {
				continue
			}
			del = append(del, nftables.SetElement{Key: a.AsSlice()})
		}
		add = append(add, nftables.SetElement{Key: a.AsSlice(), Timeout: ttl})
	}
	if len(add) == 0 {
		return nil
	}
	apply := func(del []nftables.SetElement) error {
		if len(del) > 0 {
			if err := f.conn.SetDeleteElements(s.resolved, del); err != nil {
				return err
			}
		}
		if err := f.conn.SetAddElements(s.resolved, add); err != nil {
			return err
		}
		return f.conn.Flush()
	}
	err := apply(del)
	if err != nil && len(del) > 0 {
		// An element we meant to refresh expired meanwhile: add only.
		err = apply(nil)
	}
	if err != nil {
		return fmt.Errorf("let sandbox %s reach %v: %w", id, addrs, err)
	}
	for k, v := range s.expiry {
		if v.Before(now) {
			delete(s.expiry, k)
		}
	}
	for _, e := range add {
		a, _ := netip.AddrFromSlice(e.Key)
		s.expiry[a] = until
	}
	return nil
}

// Delete removes the whole table (tests; a host that stops using sietch).
func (f *Firewall) Delete() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.conn.DelTable(f.table)
	err := f.conn.Flush()
	if errors.Is(err, unix.ENOENT) {
		err = nil
	}
	f.sandboxes = map[string]*fwSandbox{}
	return err
}

// dispatchLocked rewrites the two dispatch chains from f.sandboxes (in the
// caller's batch).
func (f *Firewall) dispatchLocked() {
	c := f.conn
	c.FlushChain(f.fwdDispatch)
	c.FlushChain(f.inDispatch)
	for _, s := range f.sandboxes {
		in := ifName(expr.MetaKeyIIFNAME, s.ep.Link)
		c.AddRule(&nftables.Rule{Table: f.table, Chain: f.fwdDispatch, Exprs: cat(in, jump(s.chain.Name))})
		if !s.policy.Enabled {
			continue
		}
		for _, proto := range []byte{unix.IPPROTO_UDP, unix.IPPROTO_TCP} {
			c.AddRule(&nftables.Rule{Table: f.table, Chain: f.inDispatch, Exprs: cat(in, isIPv4(),
				addrIs(12, s.ep.Lease.Guest, expr.CmpOpEq), addrIs(16, s.ep.Lease.Gateway, expr.CmpOpEq),
				dport(proto, 53), accept_())})
		}
	}
}

// policyRules are the rules of a sandbox's chain (forwarded packets from
// its interface; IPv4 only by then).
func policyRules(ep Endpoint, p Policy, resolved *nftables.Set) [][]expr.Any {
	rules := [][]expr.Any{
		// Only its own address: no spoofing another sandbox or the pool.
		cat(addrIs(12, ep.Lease.Guest, expr.CmpOpNeq), drop()),
	}
	if !p.Enabled {
		return append(rules, reject())
	}
	for _, n := range p.AllowNets {
		rules = append(rules, cat(addrIn(16, n), accept_()))
	}
	rules = append(rules, cat(loadAddr(16), []expr.Any{&expr.Lookup{SourceRegister: 1, SetName: resolved.Name, SetID: resolved.ID}}, accept_()))
	for _, n := range p.DenyNets {
		rules = append(rules, cat(addrIn(16, n), reject()))
	}
	if p.Internet {
		return append(rules, accept_())
	}
	return append(rules, reject())
}

func trimID(id string) string {
	if len(id) > 3 && id[:3] == "sb-" {
		return id[3:]
	}
	return id
}

// Expression helpers: each returns the expressions of one match or verdict,
// in register 1.

func cat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func ifNameBytes(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

func ifName(key expr.MetaKey, name string) []expr.Any {
	return []expr.Any{&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifNameBytes(name)}}
}

// ifPrefix matches interfaces named LinkPrefix* (nft compares only the
// prefix's bytes, as for `iifname "sx*"`).
func ifPrefix(key expr.MetaKey) []expr.Any {
	return []expr.Any{&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte(LinkPrefix)}}
}

func notIfPrefix(key expr.MetaKey) []expr.Any {
	return []expr.Any{&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte(LinkPrefix)}}
}

func isIPv4() []expr.Any {
	return []expr.Any{&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}}}
}

func notIPv4() []expr.Any {
	return []expr.Any{&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}}}
}

func ctReply() []expr.Any {
	return []expr.Any{&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binary.NativeEndian.AppendUint32(nil, expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED),
			Xor:  []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}}}
}

// loadAddr loads the IPv4 source (offset 12) or destination (16) address.
func loadAddr(off uint32) []expr.Any {
	return []expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: 4}}
}

func addrIs(off uint32, a netip.Addr, op expr.CmpOp) []expr.Any {
	return cat(loadAddr(off), []expr.Any{&expr.Cmp{Op: op, Register: 1, Data: a.AsSlice()}})
}

func addrIn(off uint32, p netip.Prefix) []expr.Any {
	mask := make([]byte, 4)
	binary.BigEndian.PutUint32(mask, ^uint32(0)<<(32-p.Bits()))
	if p.Bits() == 0 {
		mask = []byte{0, 0, 0, 0}
	}
	return cat(loadAddr(off), []expr.Any{
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: p.Masked().Addr().AsSlice()}})
}

func dport(proto byte, port uint16) []expr.Any {
	return []expr.Any{&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.BigEndian.AppendUint16(nil, port)}}
}

func accept_() []expr.Any { return []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}} }
func drop() []expr.Any    { return []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}} }
func jump(chain string) []expr.Any {
	return []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: chain}}
}

// reject answers with ICMP "administratively prohibited", so a refused
// connection fails at once (EHOSTUNREACH) rather than hanging.
func reject() []expr.Any {
	return []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_ADMIN_PROHIBITED}}
}
