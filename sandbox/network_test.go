package sandbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sietch-vm/sietch/guest-init/agent"
	"github.com/sietch-vm/sietch/guest-init/agent/agenttest"
	"github.com/sietch-vm/sietch/internal/hostnet"
	"github.com/sietch-vm/sietch/wire/agentproto"
	"github.com/sietch-vm/sietch/wire/control"
)

// fakeNet is the host's networking as the manager sees it: a real pool,
// and a log of what it was asked.
type fakeNet struct {
	pool     *hostnet.Pool
	mu       sync.Mutex
	attached map[string]hostnet.Policy
	log      []string
}

func newFakeNet(t *testing.T) *fakeNet {
	p, err := hostnet.NewPool(hostnet.DefaultPool)
	if err != nil {
		t.Fatal(err)
	}
	return &fakeNet{pool: p, attached: map[string]hostnet.Policy{}}
}

func (f *fakeNet) Attach(id string, p hostnet.Policy, guest netip.Addr) (hostnet.Lease, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var l hostnet.Lease
	var err error
	if guest.IsValid() {
		l, err = f.pool.Reserve(id, guest)
	} else {
		l, err = f.pool.Allocate(id)
	}
	if err != nil {
		return l, err
	}
	f.attached[id] = p
	f.log = append(f.log, fmt.Sprintf("attach %s %v", id, l.Guest))
	return l, nil
}

func (f *fakeNet) SetPolicy(id string, p hostnet.Policy) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.attached[id]; !ok {
		return fmt.Errorf("sandbox %s has no network interface", id)
	}
	f.attached[id] = p
	return nil
}

func (f *fakeNet) Detach(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.attached, id)
	f.pool.Release(id)
	f.log = append(f.log, "detach "+id)
	return nil
}

func (f *fakeNet) policy(id string) (hostnet.Policy, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.attached[id]
	return p, ok
}

// netMachine is guest-init as the agent sees it, recording the network
// the identity gives it.
type netMachine struct {
	mu      sync.Mutex
	network []string
}

func (*netMachine) SetIdentity(string, time.Time, []byte) error { return nil }
func (m *netMachine) SetNetwork(addr netip.Prefix, gw netip.Addr, dns []netip.Addr) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.network = append(m.network, fmt.Sprintf("%v via %v", addr, gw))
	return nil
}

func (m *netMachine) last() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.network) == 0 {
		return ""
	}
	return m.network[len(m.network)-1]
}

// openNet opens a manager with the fake vmm, a "Linux" image whose agent
// is a host process, and net as its networking.
func openNet(t *testing.T, state string, hn HostNetwork, mach *netMachine) *Manager {
	t.Helper()
	a, err := agent.New(agent.Config{Root: t.TempDir(), Machine: mach, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "v.sock")
	shim, err := agenttest.Listen(sock, agentproto.Port)
	if err != nil {
		t.Fatal(err)
	}
	go a.Serve(shim)
	t.Cleanup(func() { a.Close(); shim.Close() })
	m, err := Open(Config{StateDir: state, VMMPath: fakeVMM, Defaults: Limits{MemoryMiB: 64},
		Images:    []ImageSpec{{Name: "lx", Kind: KindLinux, Kernel: fakeVMM}, {Name: "tg", Kind: KindTestguest, Kernel: fakeVMM}},
		Network:   hn,
		AgentDial: func(string) func(context.Context) (net.Conn, error) { return agentproto.DialUDS(sock, agentproto.Port) }})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// vmmArgs is the command line of a sandbox's vmm.
func vmmArgs(t *testing.T, pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		t.Fatalf("vmm %d: %v", pid, err)
	}
	return strings.ReplaceAll(string(b), "\x00", " ")
}

// A sandbox with network: its TAP and address on the vmm's command line
// (cold boot) or as --net-tap and the identity (restore), its policy
// changed while it runs, its own address after a restart, all of it gone
// with the sandbox.
func TestNetworkWithFakeVMM(t *testing.T) {
	state, err := os.MkdirTemp("", "sbn-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(state) })
	fn, mach := newFakeNet(t), &netMachine{}
	m := openNet(t, state, fn, mach)
	ctx := context.Background()

	a, err := m.Create(ctx, CreateSpec{Image: "lx", Network: &NetworkSpec{Enabled: true, Allow: []string{"10.0.0.0/8", "PyPI.org"}, Deny: []string{"0.0.0.0/0"}}})
	if err != nil {
		t.Fatal(err)
	}
	n := a.Network
	tap := "sx" + strings.TrimPrefix(a.ID, "sb-")
	if n == nil || !n.Enabled || !n.Internet || n.Address != "10.99.0.2/30" || n.Gateway != "10.99.0.1" || n.Interface != tap ||
		strings.Join(n.Allow, ",") != "10.0.0.0/8,pypi.org" || strings.Join(n.Deny, ",") != "0.0.0.0/0" {
		t.Fatalf("network of a cold boot: %+v", n)
	}
	args := vmmArgs(t, a.VMMPID)
	for _, want := range []string{"--net " + tap + ",mac=02:", "sietch.ip=10.99.0.2/30 sietch.gw=10.99.0.1 sietch.dns=10.99.0.1"} {
		if !strings.Contains(args, want) {
			t.Errorf("vmm run %q lacks %q", args, want)
		}
	}
	if mach.last() != "" {
		t.Errorf("a cold boot's identity set the network %q; its command line did", mach.last())
	}

	// No network asked, none by default: no interface.
	plain, err := m.Create(ctx, CreateSpec{Image: "lx"})
	if err != nil || plain.Network != nil || strings.Contains(vmmArgs(t, plain.VMMPID), "--net") {
		t.Fatalf("a sandbox without network: %+v %v", plain.Network, err)
	}
	if _, err := m.SetNetwork(ctx, plain.ID, NetworkSpec{Enabled: true}); !errors.Is(err, ErrWrongState) {
		t.Errorf("network change of a sandbox without an interface: %v", err)
	}
	for _, bad := range []NetworkSpec{{Enabled: true, Allow: []string{"::/0"}}, {Enabled: true, Deny: []string{"a b"}}} {
		if _, err := m.Create(ctx, CreateSpec{Image: "lx", Network: &bad}); !errors.Is(err, ErrInvalid) {
			t.Errorf("create with network %+v: %v, want ErrInvalid", bad, err)
		}
	}
	if _, err := m.Create(ctx, CreateSpec{Image: "tg", Network: &NetworkSpec{Enabled: true}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("network for a test guest: %v, want ErrInvalid", err)
	}

	// A change while it runs.
	off := false
	got, err := m.SetNetwork(ctx, a.ID, NetworkSpec{Enabled: true, Internet: &off, Allow: []string{"example.org"}})
	if err != nil || got.Internet || strings.Join(got.Allow, ",") != "example.org" || got.Address != n.Address {
		t.Fatalf("SetNetwork: %+v %v", got, err)
	}
	if p, _ := fn.policy(a.ID); p.Internet || strings.Join(p.AllowNames, ",") != "example.org" {
		t.Errorf("the host's policy after the change: %+v", p)
	}
	if g, err := m.GetNetwork(a.ID); err != nil || g.Internet {
		t.Errorf("GetNetwork: %+v %v", g, err)
	}

	// A restore gets its own TAP and address, and the guest is told.
	snap, err := m.Snapshot(ctx, a.ID, control.SnapshotFull)
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.Create(ctx, CreateSpec{Snapshot: snap.ID})
	if err != nil {
		t.Fatal(err)
	}
	btap := "sx" + strings.TrimPrefix(b.ID, "sb-")
	if b.Network == nil || b.Network.Address == n.Address || b.Network.Enabled {
		t.Errorf("restore's network: %+v; want its own address, isolated (the default is off)", b.Network)
	}
	if args := vmmArgs(t, b.VMMPID); !strings.Contains(args, "--net-tap "+btap) {
		t.Errorf("vmm restore %q lacks --net-tap %s", args, btap)
	}
	if want := b.Network.Address + " via " + b.Network.Gateway; mach.last() != want {
		t.Errorf("the restored guest was given %q, want %q", mach.last(), want)
	}
	forks, err := m.Fork(ctx, a.ID, snap.ID, 1)
	if err != nil || forks[0].Network == nil || forks[0].Network.Internet || strings.Join(forks[0].Network.Allow, ",") != "example.org" {
		t.Errorf("a fork's network: %+v %v; want the source's policy", forks[0].Network, err)
	}

	// A snapshot without a network device cannot give network.
	psnap, err := m.Snapshot(ctx, plain.ID, control.SnapshotFull)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Create(ctx, CreateSpec{Snapshot: psnap.ID, Network: &NetworkSpec{Enabled: true}}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "rebuild") {
		t.Errorf("network from a snapshot without a device: %v", err)
	}

	// A restart: the host's networking starts empty and gets each
	// sandbox back with the address it had.
	m.Close()
	fn2 := newFakeNet(t)
	m = openNet(t, state, fn2, mach)
	defer m.Close()
	if p, ok := fn2.policy(a.ID); !ok || p.Internet {
		t.Errorf("after a restart, sandbox %s's policy: %+v %v", a.ID, p, ok)
	}
	if !strings.Contains(strings.Join(fn2.log, "\n"), "attach "+a.ID+" 10.99.0.2") {
		t.Errorf("after a restart: %v; want %s attached at 10.99.0.2", fn2.log, a.ID)
	}

	for _, id := range []string{a.ID, b.ID, forks[0].ID, plain.ID} {
		if err := m.Delete(ctx, id); err != nil {
			t.Fatal(err)
		}
		if _, ok := fn2.policy(id); ok {
			t.Errorf("sandbox %s still has its network after Delete", id)
		}
	}

	// A sietchd without networking cannot restore a snapshot that has a
	// network device, and says so.
	m.Close()
	m = openNet(t, state, nil, mach)
	defer m.Close()
	if _, err := m.Create(ctx, CreateSpec{Snapshot: snap.ID}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "has a network device") {
		t.Errorf("restore of a snapshot with a network device, no networking: %v", err)
	}
}

// Without networking, a create that asks for it says why there is none.
func TestNetworkUnavailable(t *testing.T) {
	state, err := os.MkdirTemp("", "sbn-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(state) })
	m, err := Open(Config{StateDir: state, VMMPath: fakeVMM, NetworkOff: "nf_tables is missing",
		Images: []ImageSpec{{Name: "lx", Kind: KindLinux, Kernel: fakeVMM}}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	_, err = m.Create(context.Background(), CreateSpec{Image: "lx", Network: &NetworkSpec{Enabled: true}})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "nf_tables is missing") {
		t.Errorf("create with network, none on the host: %v", err)
	}
}
