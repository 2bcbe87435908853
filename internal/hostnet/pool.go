package hostnet

import (
	"fmt"
	"net/netip"
	"sync"
)

// DefaultPool is the address pool sandboxes get their /30s from unless
// configured otherwise.
var DefaultPool = netip.MustParsePrefix("10.99.0.0/16")

// Lease is one sandbox's /30: the host side (its gateway, and where its DNS
// forwarder listens) is the first host address, the guest the second.
type Lease struct {
	Gateway netip.Addr
	Guest   netip.Addr
}

// Bits is the prefix length of every lease.
const Bits = 30

// GuestPrefix is the guest's address with the lease's prefix length.
func (l Lease) GuestPrefix() netip.Prefix { return netip.PrefixFrom(l.Guest, Bits) }

// GatewayPrefix is the host side's address with the lease's prefix length.
func (l Lease) GatewayPrefix() netip.Prefix { return netip.PrefixFrom(l.Gateway, Bits) }

// Pool hands out /30s of an IPv4 prefix, one per sandbox. It keeps no
// file: after a restart its owner gives back the leases its records hold
// (Reserve) before allocating new ones.
type Pool struct {
	prefix netip.Prefix
	slots  int

	mu     sync.Mutex
	byID   map[string]int
	bySlot map[int]string
	next   int
}

// NewPool makes a pool of prefix, which must be IPv4 and hold at least one /30.
func NewPool(prefix netip.Prefix) (*Pool, error) {
	if !prefix.IsValid() || !prefix.Addr().Is4() {
		return nil, fmt.Errorf("address pool %v: give an IPv4 CIDR such as %v", prefix, DefaultPool)
	}
	if prefix.Bits() > Bits {
		return nil, fmt.Errorf("address pool %v: too small, it must hold at least one /%d (a /%d or larger)", prefix, Bits, Bits)
	}
	return &Pool{prefix: prefix.Masked(), slots: 1 << (Bits - prefix.Bits()),
		byID: map[string]int{}, bySlot: map[int]string{}}, nil
}

// Prefix is the pool's CIDR.
func (p *Pool) Prefix() netip.Prefix { return p.prefix }

func (p *Pool) lease(slot int) Lease {
	base := p.prefix.Addr().As4()
	v := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	v += uint32(slot) * 4
	at := func(off uint32) netip.Addr {
		x := v + off
		return netip.AddrFrom4([4]byte{byte(x >> 24), byte(x >> 16), byte(x >> 8), byte(x)})
	}
	return Lease{Gateway: at(1), Guest: at(2)}
}

// Allocate gives id a free /30 (the one it has, if any).
func (p *Pool) Allocate(id string) (Lease, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s, ok := p.byID[id]; ok {
		return p.lease(s), nil
	}
	for i := 0; i < p.slots; i++ {
		s := (p.next + i) % p.slots
		if _, used := p.bySlot[s]; !used {
			p.byID[id], p.bySlot[s] = s, id
			p.next = (s + 1) % p.slots
			return p.lease(s), nil
		}
	}
	return Lease{}, fmt.Errorf("the address pool %v is full (%d sandboxes have network); give sietchd a larger --net-pool", p.prefix, p.slots)
}

// Reserve gives id the lease whose guest address is guest, as a record
// made before a restart says.
func (p *Pool) Reserve(id string, guest netip.Addr) (Lease, error) {
	if !p.prefix.Contains(guest) {
		return Lease{}, fmt.Errorf("address %v of sandbox %s is outside the pool %v (was --net-pool changed?)", guest, id, p.prefix)
	}
	a, b := guest.As4(), p.prefix.Addr().As4()
	off := (uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])) -
		(uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]))
	slot := int(off / 4)
	if off%4 != 2 {
		return Lease{}, fmt.Errorf("address %v of sandbox %s is not a guest address of the pool %v", guest, id, p.prefix)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if owner, used := p.bySlot[slot]; used && owner != id {
		return Lease{}, fmt.Errorf("address %v of sandbox %s is also sandbox %s's", guest, id, owner)
	}
	if s, ok := p.byID[id]; ok && s != slot {
		delete(p.bySlot, s)
	}
	p.byID[id], p.bySlot[slot] = slot, id
	return p.lease(slot), nil
}

// Release frees id's lease, if it has one.
func (p *Pool) Release(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s, ok := p.byID[id]; ok {
		delete(p.byID, id)
		delete(p.bySlot, s)
	}
}
