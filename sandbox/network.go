package sandbox

import (
	"context"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"

	"github.com/sietch-vm/sietch/internal/hostnet"
	"github.com/sietch-vm/sietch/wire/agentproto"
)

// HostNetwork is what the manager asks of the host's sandbox networking
// (internal/hostnet.Host): a TAP, an address and rules per sandbox.
type HostNetwork interface {
	// Attach gives sandbox id its TAP, address and rules under p; guest,
	// when valid, is the address its record already holds.
	Attach(id string, p hostnet.Policy, guest netip.Addr) (hostnet.Lease, error)
	SetPolicy(id string, p hostnet.Policy) error
	Detach(id string) error
}

// The model of a sandbox's network:
//
//   - a cold boot (image) gets a network interface when its create asks
//     for one (network given) or sietchd's default is on;
//   - a template's build sandbox always gets one, isolated (nothing
//     passes), so that the template's snapshot has a virtio-net device;
//   - a restore of a snapshot with a virtio-net device (a template
//     create, a fork, a resume) always gets a TAP of its own and a new
//     address, which the guest agent applies with the rest of the
//     identity; isolated unless its network is enabled;
//   - a snapshot without one (a template built before sandbox networking)
//     restores without network, and asking for network is refused.
//
// Sandbox.Network is nil exactly when the sandbox has no interface.

// networkFor decides a new sandbox's network. restore: it is a restore of
// a snapshot, whose VM has a virtio-net device when nic; from names that
// snapshot's origin for errors.
func (m *Manager) networkFor(req *NetworkSpec, kind string, restore, nic bool, from string) (*Network, error) {
	if restore && !nic {
		if req != nil && req.Enabled {
			return nil, fmt.Errorf("%w: %s has no network device (it was built before sandbox networking, or by a sietchd without it); rebuild it to give its sandboxes network (sietch template rm NAME, then sietch template build NAME …)", ErrInvalid, from)
		}
		return nil, nil
	}
	if req == nil {
		if !restore && !m.cfg.NetDefault {
			return nil, nil
		}
		req = &NetworkSpec{Enabled: m.cfg.NetDefault}
	}
	if kind != KindLinux {
		if req.Enabled {
			return nil, fmt.Errorf("%w: a %s sandbox has no network stack; network is for Linux images", ErrInvalid, kind)
		}
		return nil, nil
	}
	if m.cfg.Network == nil {
		why := m.cfg.NetworkOff
		if why == "" {
			why = "this sietchd was started without it"
		}
		if restore {
			// The snapshot's VM has a virtio-net device: it cannot run
			// without a TAP.
			return nil, fmt.Errorf("%w: %s has a network device, and sandbox networking is unavailable on this sietchd (%s); give sietchd networking, or rebuild the template here", ErrInvalid, from, why)
		}
		return nil, fmt.Errorf("%w: sandbox networking is unavailable: %s", ErrInvalid, why)
	}
	p, err := parseNetwork(*req)
	if err != nil {
		return nil, err
	}
	return &Network{Enabled: p.Enabled, Internet: p.Internet, Allow: p.Allow(), Deny: p.Deny()}, nil
}

// parseNetwork checks a client's network spec.
func parseNetwork(s NetworkSpec) (hostnet.Policy, error) {
	internet := s.Internet == nil || *s.Internet
	p, err := hostnet.ParsePolicy(s.Enabled, internet, s.Allow, s.Deny)
	if err != nil {
		return hostnet.Policy{}, fmt.Errorf("%w: network: %v", ErrInvalid, err)
	}
	return p, nil
}

// policyOf is the policy of a stored network (checked when it was set).
func policyOf(n *Network) hostnet.Policy {
	p, err := hostnet.ParsePolicy(n.Enabled, n.Internet, n.Allow, n.Deny)
	if err != nil {
		return hostnet.Policy{} // a record edited by hand: isolated
	}
	return p
}

// attachNetwork gives sb its TAP, address and rules before its vmm starts
// (again, after a restart or for a resume: its address is kept).
func (m *Manager) attachNetwork(sb *sandbox) error {
	m.mu.Lock()
	n := sb.rec.Network
	m.mu.Unlock()
	if n == nil {
		return nil
	}
	if m.cfg.Network == nil {
		return fmt.Errorf("sandbox %s has a network interface, and sandbox networking is unavailable: %s", sb.id, m.cfg.NetworkOff)
	}
	var guest netip.Addr
	if p, err := netip.ParsePrefix(n.Address); err == nil {
		guest = p.Addr()
	}
	lease, err := m.cfg.Network.Attach(sb.id, policyOf(n), guest)
	if err != nil {
		return fmt.Errorf("network of sandbox %s: %w", sb.id, err)
	}
	name, _ := hostnet.LinkName(sb.id)
	next := *n
	next.Address, next.Gateway, next.Interface = lease.GuestPrefix().String(), lease.Gateway.String(), name
	m.mu.Lock()
	sb.rec.Network = &next
	m.save(sb)
	m.mu.Unlock()
	return nil
}

// reattachNetworks gives the sandboxes of an earlier sietchd their
// networks again (the host's table starts empty; TAPs and addresses are
// kept): those that run or are suspended get their rules, the others'
// interfaces go.
func (m *Manager) reattachNetworks() {
	m.mu.Lock()
	var up, down []*sandbox
	for _, sb := range m.sandboxes {
		switch {
		case sb.rec.Network == nil:
		case active(sb.rec.State) || sb.rec.State == StateSuspended:
			up = append(up, sb)
		default:
			down = append(down, sb)
		}
	}
	m.mu.Unlock()
	for _, sb := range up {
		if err := m.attachNetwork(sb); err != nil {
			m.log.Error("sandbox network not restored; it has none until it is changed (sietch net)", "sandbox", sb.id, "err", err)
		}
	}
	for _, sb := range down {
		m.detachNetwork(sb)
	}
}

// detachNetwork removes sb's TAP, rules and address.
func (m *Manager) detachNetwork(sb *sandbox) {
	m.mu.Lock()
	n := sb.rec.Network
	m.mu.Unlock()
	if n == nil || m.cfg.Network == nil {
		return
	}
	if err := m.cfg.Network.Detach(sb.id); err != nil {
		m.log.Warn("remove a sandbox's network", "sandbox", sb.id, "err", err)
	}
}

// netArgs are sb's vmm run arguments and kernel command line words for
// its network, none without one.
func netArgs(sb *sandbox) (args, words []string) {
	n := sb.rec.Network
	if n == nil {
		return nil, nil
	}
	return []string{"--net", n.Interface + ",mac=" + macOf(sb.id)},
		[]string{"sietch.ip=" + n.Address, "sietch.gw=" + n.Gateway, "sietch.dns=" + n.Gateway}
}

// macOf is a locally administered unicast MAC made from a sandbox id.
func macOf(id string) string {
	b, err := hex.DecodeString(strings.TrimPrefix(id, "sb-"))
	if err != nil || len(b) < 5 {
		b = append(b, make([]byte, 5)...)
	}
	mac := []string{"02"}
	for _, x := range b[:5] {
		mac = append(mac, fmt.Sprintf("%02x", x))
	}
	return strings.Join(mac, ":")
}

// netIdentity is the network a restored guest must take on, nil for none.
func netIdentity(n *Network) *agentproto.NetIdentity {
	if n == nil || n.Address == "" {
		return nil
	}
	return &agentproto.NetIdentity{Address: n.Address, Gateway: n.Gateway, DNS: []string{n.Gateway}}
}

// GetNetwork returns sandbox id's network.
func (m *Manager) GetNetwork(id string) (Network, error) {
	sb, err := m.lookup(id)
	if err != nil {
		return Network{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if sb.rec.Network == nil {
		return Network{}, noNetwork(id)
	}
	return cloneNetwork(sb.rec.Network), nil
}

func noNetwork(id string) error {
	return fmt.Errorf("%w: sandbox %s has no network interface; create one with network (sietch create --net), from a template built with sandbox networking", ErrWrongState, id)
}

// SetNetwork replaces sandbox id's network policy, in effect at once for
// new connections (open ones stay).
func (m *Manager) SetNetwork(ctx context.Context, id string, spec NetworkSpec) (Network, error) {
	p, err := parseNetwork(spec)
	if err != nil {
		return Network{}, err
	}
	sb, err := m.lookup(id)
	if err != nil {
		return Network{}, err
	}
	sb.op.Lock()
	defer sb.op.Unlock()
	m.mu.Lock()
	cur, st := sb.rec.Network, sb.rec.State
	m.mu.Unlock()
	if cur == nil {
		return Network{}, noNetwork(id)
	}
	if m.cfg.Network == nil {
		return Network{}, fmt.Errorf("%w: sandbox networking is unavailable: %s", ErrInvalid, m.cfg.NetworkOff)
	}
	if active(st) || st == StateSuspended {
		if err := m.cfg.Network.SetPolicy(id, p); err != nil {
			return Network{}, fmt.Errorf("sandbox %s: %w", id, err)
		}
	}
	next := *cur
	next.Enabled, next.Internet, next.Allow, next.Deny = p.Enabled, p.Internet, p.Allow(), p.Deny()
	m.mu.Lock()
	defer m.mu.Unlock()
	sb.rec.Network = &next
	m.save(sb)
	m.log.Info("sandbox network changed", "sandbox", id, "enabled", next.Enabled, "internet", next.Internet,
		"allow", strings.Join(next.Allow, ","), "deny", strings.Join(next.Deny, ","))
	return cloneNetwork(&next), nil
}

// specOf is the spec that gives a new sandbox the policy of n (a fork's).
func specOf(n *Network) *NetworkSpec {
	if n == nil {
		return nil
	}
	internet := n.Internet
	return &NetworkSpec{Enabled: n.Enabled, Internet: &internet, Allow: n.Allow, Deny: n.Deny}
}

func cloneNetwork(n *Network) Network {
	c := *n
	c.Allow = append([]string(nil), n.Allow...)
	c.Deny = append([]string(nil), n.Deny...)
	return c
}
