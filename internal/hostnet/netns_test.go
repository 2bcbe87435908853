package hostnet

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/miekg/dns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/sietch-vm/sietch/virtio/net/tap"
)

// The tests that touch the kernel run in a network namespace of their
// own: TestMain re-executes the test binary in a new one (as root), so
// that every thread of it, and everything the tests make (links, the
// nftables table, sockets, more namespaces), lives there and goes when
// the process does, whatever the tests leave behind.
const inNetnsEnv = "SIETCH_HOSTNET_TEST_NETNS"

var netnsSkip string // why the kernel tests skip; "" they run

func TestMain(m *testing.M) {
	switch {
	case os.Getenv(inNetnsEnv) == "1":
		netnsSkip = probeNftables()
	case os.Geteuid() != 0:
		netnsSkip = "not root: these tests make network namespaces, links and nftables tables"
	default:
		cmd := exec.Command(os.Args[0], os.Args[1:]...)
		cmd.Env = append(os.Environ(), inNetnsEnv+"=1")
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
		err := cmd.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			os.Exit(ee.ExitCode())
		}
		if err == nil {
			os.Exit(0)
		}
		netnsSkip = fmt.Sprintf("cannot run the tests in a new network namespace: %v", err)
	}
	os.Exit(m.Run())
}

// probeNftables says why nftables cannot be used here ("" if it can).
func probeNftables() string {
	c, err := nftables.New()
	if err != nil {
		return fmt.Sprintf("nftables unavailable: %v", err)
	}
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: "sietch-probe"})
	c.AddChain(&nftables.Chain{Name: "post", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	if err := c.Flush(); err != nil {
		return fmt.Sprintf("nf_tables unavailable in a network namespace (no nf_tables or nft_chain_nat?): %v", err)
	}
	c.DelTable(t)
	c.Flush()
	return ""
}

func needNetns(t testing.TB) {
	t.Helper()
	if netnsSkip != "" {
		t.Skip(netnsSkip)
	}
}

// inNS runs fn on a thread in ns. The thread is thrown away afterwards
// (its goroutine ends locked), so no other goroutine runs in ns by chance.
func inNS(ns netns.NsHandle, fn func() error) error {
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(ns); err != nil {
			ch <- fmt.Errorf("enter netns: %w", err)
			return
		}
		ch <- fn()
	}()
	return <-ch
}

// newNS makes a network namespace with lo up.
func newNS(t testing.TB) netns.NsHandle {
	t.Helper()
	ch := make(chan netns.NsHandle, 1)
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		h, err := netns.New()
		if err != nil {
			errc <- err
			return
		}
		if lo, err := netlink.LinkByName("lo"); err == nil {
			netlink.LinkSetUp(lo)
		}
		ch <- h
	}()
	select {
	case err := <-errc:
		t.Fatalf("new netns: %v", err)
	case h := <-ch:
		t.Cleanup(func() { h.Close() })
		return h
	}
	return 0
}

// handle is a netlink handle in ns.
func handle(t testing.TB, ns netns.NsHandle) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("netlink handle: %v", err)
	}
	t.Cleanup(h.Close)
	return h
}

func must(t testing.TB, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func addAddr(t testing.TB, h *netlink.Handle, link, cidr string) {
	t.Helper()
	l, err := h.LinkByName(link)
	must(t, "link "+link, err)
	a, err := netlink.ParseAddr(cidr)
	must(t, "parse "+cidr, err)
	must(t, "add "+cidr+" to "+link, h.AddrAdd(l, a))
	must(t, "set "+link+" up", h.LinkSetUp(l))
}

// serve answers every connection on addr (in ns) with "hello from
// ADDR\n"; the listener closes when the test ends.
func serve(t testing.TB, ns netns.NsHandle, addr string) {
	t.Helper()
	var l net.Listener
	must(t, "listen on "+addr, inNS(ns, func() (err error) { l, err = net.Listen("tcp4", addr); return }))
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "hello from %s\n", addr)
			c.Close()
		}
	}()
}

// dialTimeout bounds a connection attempt that the firewall drops rather
// than rejects; a refusal by reject fails at once.
const dialTimeout = 3 * time.Second

// connect dials addr from ns and reads the greeting; nil means it passed.
func connect(ns netns.NsHandle, addr string) error {
	return inNS(ns, func() error {
		c, err := net.DialTimeout("tcp4", addr, dialTimeout)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(dialTimeout))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return fmt.Errorf("read greeting: %w", err)
		}
		if !strings.HasPrefix(line, "hello from ") {
			return fmt.Errorf("greeting %q", line)
		}
		return nil
	})
}

func wantConnect(t testing.TB, ns netns.NsHandle, who, addr string) {
	t.Helper()
	if err := connect(ns, addr); err != nil {
		t.Errorf("%s → %s: %v; want it to connect", who, addr, err)
	}
}

func wantBlocked(t testing.TB, ns netns.NsHandle, who, addr string) {
	t.Helper()
	if err := connect(ns, addr); err == nil {
		t.Errorf("%s → %s connected; want it refused", who, addr)
	}
}

// lookup asks the DNS server at server (from ns) for name's A records.
func lookup(ns netns.NsHandle, network, server, name string) (rcode int, addrs []string, err error) {
	err = inNS(ns, func() error {
		c := &dns.Client{Net: network, Timeout: dialTimeout}
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), dns.TypeA)
		r, _, err := c.Exchange(m, server)
		if err != nil {
			return err
		}
		rcode = r.Rcode
		for _, rr := range r.Answer {
			if a, ok := rr.(*dns.A); ok {
				addrs = append(addrs, a.A.String())
			}
		}
		return nil
	})
	return
}

// The test world, all inside the test process's own network namespace
// ("the host"):
//
//	host ── up0 192.0.2.1/24 ══ veth ══ eth0 192.0.2.2/24 ── "internet" ns
//	                                     lo: 203.0.113.10 (allowed.test)
//	                                         198.51.100.10 (denied.test, other.test)
//	                                         198.51.100.53 (DNS)
//	host ── sxID gateway .1/30 ══ veth ══ eth0 guest .2/30 ── a guest ns per sandbox
//
// The internet has no route back to the pool: replies reach the guests
// only through the host's masquerade. Every address is inside namespaces
// this test made.
type world struct {
	t      testing.TB
	inet   netns.NsHandle
	guests map[string]netns.NsHandle // by link name
	host   *Host
}

const (
	allowedAddr = "203.0.113.10"
	deniedAddr  = "198.51.100.10"
	dnsAddr     = "198.51.100.53"
)

func newWorld(t testing.TB) *world {
	needNetns(t)
	w := &world{t: t, guests: map[string]netns.NsHandle{}}
	hostNS, err := netns.Get()
	must(t, "this netns", err)
	t.Cleanup(func() { hostNS.Close() })
	if lo, err := netlink.LinkByName("lo"); err == nil {
		netlink.LinkSetUp(lo)
	}

	// The internet.
	w.inet = newNS(t)
	must(t, "veth up0", netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "up0"}, PeerName: "up0peer"}))
	t.Cleanup(func() { DeleteLink("up0") })
	peer, err := netlink.LinkByName("up0peer")
	must(t, "up0peer", err)
	must(t, "move up0peer", netlink.LinkSetNsFd(peer, int(w.inet)))
	ih := handle(t, w.inet)
	p, err := ih.LinkByName("up0peer")
	must(t, "up0peer in the internet", err)
	must(t, "rename up0peer", ih.LinkSetName(p, "eth0"))
	addAddr(t, ih, "eth0", "192.0.2.2/24")
	for _, a := range []string{allowedAddr, deniedAddr, dnsAddr} {
		addAddr(t, ih, "lo", a+"/32")
	}
	addAddr(t, handle(t, hostNS), "up0", "192.0.2.1/24")
	must(t, "default route", netlink.RouteAdd(&netlink.Route{Gw: net.ParseIP("192.0.2.2")}))
	serve(t, w.inet, allowedAddr+":80")
	serve(t, w.inet, deniedAddr+":80")
	w.serveDNS()

	// The host's own service, which no sandbox may reach.
	serve(t, hostNS, "0.0.0.0:8080")

	var err2 error
	w.host, err2 = New(Config{Pool: netip.MustParsePrefix("10.99.0.0/24"), Table: "sietch-test",
		Upstreams: []string{dnsAddr + ":53"}, MakeLink: w.makeGuest})
	must(t, "hostnet.New", err2)
	t.Cleanup(func() { w.host.Delete() })
	if w.host.Uplink() != "up0" {
		t.Errorf("uplink %q, want up0 (the default route's)", w.host.Uplink())
	}
	return w
}

// serveDNS is the internet's resolver.
func (w *world) serveDNS() {
	t := w.t
	zone := map[string]string{"allowed.test.": allowedAddr, "denied.test.": deniedAddr, "other.test.": deniedAddr}
	var pc net.PacketConn
	must(t, "listen DNS", inNS(w.inet, func() (err error) { pc, err = net.ListenPacket("udp4", dnsAddr+":53"); return }))
	var l net.Listener
	must(t, "listen DNS/TCP", inNS(w.inet, func() (err error) { l, err = net.Listen("tcp4", dnsAddr+":53"); return }))
	h := dns.HandlerFunc(func(rw dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		if a, ok := zone[strings.ToLower(r.Question[0].Name)]; ok && r.Question[0].Qtype == dns.TypeA {
			rr, _ := dns.NewRR(r.Question[0].Name + " 30 IN A " + a)
			m.Answer = append(m.Answer, rr)
		} else {
			m.Rcode = dns.RcodeNameError
		}
		rw.WriteMsg(m)
	})
	for _, s := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: l, Handler: h}} {
		go s.ActivateAndServe()
		t.Cleanup(func() { s.Shutdown() })
	}
}

// makeGuest stands a veth pair in for a sandbox's TAP: the host end is
// name with gw, the other end is eth0 in a new namespace, with the guest's
// address and its default route through gw (as guest-init sets them).
func (w *world) makeGuest(name string, gw netip.Prefix) error {
	t := w.t
	ns := newNS(t)
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: name + "g"}); err != nil {
		return err
	}
	t.Cleanup(func() { DeleteLink(name) })
	peer, err := netlink.LinkByName(name + "g")
	if err != nil {
		return err
	}
	if err := netlink.LinkSetNsFd(peer, int(ns)); err != nil {
		return err
	}
	gh := handle(t, ns)
	p, err := gh.LinkByName(name + "g")
	if err != nil {
		return err
	}
	if err := gh.LinkSetName(p, "eth0"); err != nil {
		return err
	}
	addAddr(t, gh, "eth0", netip.PrefixFrom(gw.Addr().Next(), gw.Bits()).String())
	if err := gh.RouteAdd(&netlink.Route{Gw: gw.Addr().AsSlice()}); err != nil {
		return err
	}
	host, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	if err := configureLink(host, gw); err != nil {
		return err
	}
	w.guests[name] = ns
	return nil
}

// attach attaches sandbox id under p and returns its guest namespace and lease.
func (w *world) attach(id string, p Policy) (netns.NsHandle, Lease) {
	w.t.Helper()
	lease, err := w.host.Attach(id, p, netip.Addr{})
	must(w.t, "attach "+id, err)
	name, _ := LinkName(id)
	return w.guests[name], lease
}

func policy(t testing.TB, internet bool, allow, deny []string) Policy {
	t.Helper()
	p, err := ParsePolicy(true, internet, allow, deny)
	must(t, "policy", err)
	return p
}

func TestEgressPolicy(t *testing.T) {
	w := newWorld(t)
	allowed, denied := allowedAddr+":80", deniedAddr+":80"

	// Internet on with a denied CIDR.
	a, la := w.attach("sb-aaaa", policy(t, true, nil, []string{"198.51.100.0/24"}))
	wantConnect(t, a, "internet on", allowed)
	wantBlocked(t, a, "denied CIDR", denied)

	// Internet off with an allowed address: only that.
	b, lb := w.attach("sb-bbbb", policy(t, false, []string{deniedAddr}, nil))
	wantConnect(t, b, "internet off, allowed address", denied)
	wantBlocked(t, b, "internet off", allowed)

	// Allow wins over deny.
	c, _ := w.attach("sb-cccc", policy(t, true, []string{deniedAddr + "/32"}, []string{"0.0.0.0/0"}))
	wantConnect(t, c, "allowed inside a denied 0/0", denied)
	wantBlocked(t, c, "denied 0/0", allowed)

	// Networking off: nothing, not even DNS.
	off, _ := w.attach("sb-dddd", Policy{})
	wantBlocked(t, off, "network off", allowed)
	if _, _, err := lookup(off, "udp", w.gw("sb-dddd")+":53", "allowed.test"); err == nil {
		t.Error("network off: DNS answered")
	}

	// Sandboxes cannot reach each other, nor the host's services.
	serve(t, b, lb.Guest.String()+":80")
	serve(t, a, la.Guest.String()+":80")
	wantBlocked(t, a, "sandbox → sandbox", lb.Guest.String()+":80")
	wantBlocked(t, c, "sandbox → sandbox", la.Guest.String()+":80")
	wantBlocked(t, a, "sandbox → its gateway's service", la.Gateway.String()+":8080")
	wantBlocked(t, a, "sandbox → another gateway", lb.Gateway.String()+":8080")
	wantBlocked(t, a, "sandbox → the host's uplink address", "192.0.2.1:8080")
	// …while the host reaches its service itself (the control).
	wantConnect(t, netnsSelf(t), "host", "192.0.2.1:8080")

	// A policy change while it runs: A loses the internet, then gets it back.
	must(t, "set policy", w.host.SetPolicy("sb-aaaa", policy(t, false, nil, nil)))
	wantBlocked(t, a, "after internet off", allowed)
	must(t, "set policy", w.host.SetPolicy("sb-aaaa", policy(t, true, nil, nil)))
	wantConnect(t, a, "after internet on", allowed)
	wantConnect(t, a, "after the deny list went", denied)

	// Delete: the interface and rules go, the address is free again.
	must(t, "detach", w.host.Detach("sb-aaaa"))
	if _, err := netlink.LinkByName("sxaaaa"); err == nil {
		t.Error("sxaaaa is still there after Detach")
	}
	must(t, "detach twice", w.host.Detach("sb-aaaa"))
	rules := listChains(t)
	if strings.Contains(rules, "aaaa") {
		t.Errorf("chains after Detach: %s", rules)
	}
	if _, err := w.host.pool.Reserve("sb-eeee", la.Guest); err != nil {
		t.Errorf("the lease of a detached sandbox is still taken: %v", err)
	}

	// The control: without the table, what it refused passes. So each
	// refusal above was the firewall's, not a broken test network.
	must(t, "delete the table", w.host.fw.Delete())
	wantConnect(t, c, "without the firewall, sandbox → sandbox", lb.Guest.String()+":80")
	wantConnect(t, b, "without the firewall, sandbox → gateway service", lb.Gateway.String()+":8080")
}

func (w *world) gw(id string) string {
	w.host.mu.Lock()
	defer w.host.mu.Unlock()
	return w.host.eps[id].Lease.Gateway.String()
}

func netnsSelf(t testing.TB) netns.NsHandle {
	h, err := netns.Get()
	must(t, "this netns", err)
	t.Cleanup(func() { h.Close() })
	return h
}

func listChains(t testing.TB) string {
	c, err := nftables.New()
	must(t, "nftables", err)
	chains, err := c.ListChains()
	must(t, "list chains", err)
	var names []string
	for _, ch := range chains {
		names = append(names, ch.Table.Name+"/"+ch.Name)
	}
	return strings.Join(names, " ")
}

func TestDNSPolicy(t *testing.T) {
	w := newWorld(t)
	g, lease := w.attach("sb-ffff", policy(t, false, []string{"allowed.test"}, []string{"denied.test"}))
	server := lease.Gateway.String() + ":53"
	allowed := allowedAddr + ":80"

	wantBlocked(t, g, "an allowed name's address before any lookup", allowed)
	for _, network := range []string{"udp", "tcp"} {
		rcode, addrs, err := lookup(g, network, server, "allowed.test")
		if err != nil || rcode != dns.RcodeSuccess || len(addrs) != 1 || addrs[0] != allowedAddr {
			t.Fatalf("%s lookup of allowed.test: rcode %s, %v, %v; want %s", network, dns.RcodeToString[rcode], addrs, err, allowedAddr)
		}
	}
	wantConnect(t, g, "the address allowed.test resolved to", allowed)

	for _, name := range []string{"denied.test", "other.test"} {
		rcode, addrs, err := lookup(g, "udp", server, name)
		if err != nil || rcode != dns.RcodeRefused || len(addrs) != 0 {
			t.Errorf("lookup of %s: rcode %s, %v, %v; want REFUSED", name, dns.RcodeToString[rcode], addrs, err)
		}
	}

	// Internet on: names on no list are answered; a denied one still not.
	must(t, "set policy", w.host.SetPolicy("sb-ffff", policy(t, true, nil, []string{"denied.test"})))
	if rcode, addrs, err := lookup(g, "udp", server, "other.test"); err != nil || rcode != dns.RcodeSuccess || len(addrs) != 1 {
		t.Errorf("internet on, other.test: rcode %s, %v, %v; want answered", dns.RcodeToString[rcode], addrs, err)
	}
	if rcode, _, err := lookup(g, "udp", server, "denied.test"); err != nil || rcode != dns.RcodeRefused {
		t.Errorf("internet on, denied.test: rcode %s, %v; want REFUSED", dns.RcodeToString[rcode], err)
	}

	// Another sandbox cannot use this one's forwarder.
	h, _ := w.attach("sb-9999", policy(t, true, nil, nil))
	if _, _, err := lookup(h, "udp", server, "other.test"); err == nil {
		t.Error("a sandbox got an answer from another sandbox's DNS forwarder")
	}
}

func TestTAP(t *testing.T) {
	needNetns(t)
	gw := netip.MustParsePrefix("10.99.0.1/30")
	t.Cleanup(func() { DeleteLink("sxtaptest") })
	must(t, "CreateTAP", CreateTAP("sxtaptest", gw))
	check := func(when string) {
		l, err := netlink.LinkByName("sxtaptest")
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		tt, ok := l.(*netlink.Tuntap)
		if !ok || tt.Mode != netlink.TUNTAP_MODE_TAP || tt.NonPersist {
			t.Errorf("%s: %s is %T %+v, want a persistent TAP", when, l.Attrs().Name, l, l)
		} else if tt.Owner != 0 {
			t.Errorf("%s: owner %d, want root", when, tt.Owner)
		}
		if l.Attrs().Flags&net.FlagUp == 0 {
			t.Errorf("%s: not up", when)
		}
		addrs, _ := netlink.AddrList(l, netlink.FAMILY_V4)
		if len(addrs) != 1 || addrs[0].IPNet.String() != "10.99.0.1/30" {
			t.Errorf("%s: addresses %v, want only 10.99.0.1/30", when, addrs)
		}
	}
	check("created")
	// A sietchd restart: the TAP is kept and configured again.
	must(t, "CreateTAP again", CreateTAP("sxtaptest", gw))
	check("created again")
	must(t, "DeleteLink", DeleteLink("sxtaptest"))
	if _, err := netlink.LinkByName("sxtaptest"); err == nil {
		t.Error("the TAP is still there")
	}
	must(t, "DeleteLink of a removed TAP", DeleteLink("sxtaptest"))

	// Something else by that name is not taken over.
	must(t, "veth", netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "sxtaptest"}, PeerName: "sxtaptest2"}))
	if err := CreateTAP("sxtaptest", gw); err == nil || !strings.Contains(err.Error(), "not a TAP") {
		t.Errorf("CreateTAP over a dummy: %v", err)
	}
}

// A sandbox whose /30 is still on a leftover TAP (a sietchd that died, or a
// run from another state directory, left it; the pool hands its addresses
// out again) gets its subnet back: the leftover, which nothing has open,
// is removed and the sandbox is reachable. An interface in use, or not a
// sandbox TAP, is never taken: the attach fails naming it.
func TestAttachOverStaleTAP(t *testing.T) {
	w := newWorld(t)
	must(t, "leftover TAP", CreateTAP("sxdead1", netip.MustParsePrefix("10.99.0.41/30")))
	t.Cleanup(func() { DeleteLink("sxdead1") })
	lease, err := w.host.Attach("sb-f1", policy(t, true, nil, nil), netip.MustParseAddr("10.99.0.42"))
	must(t, "attach over a leftover TAP", err)
	if _, err := netlink.LinkByName("sxdead1"); err == nil {
		t.Error("the leftover TAP sxdead1 is still there")
	}
	name, _ := LinkName("sb-f1")
	g := w.guests[name]
	serve(t, g, lease.Guest.String()+":80")
	wantConnect(t, netnsSelf(t), "host → the sandbox in the leftover's subnet", lease.Guest.String()+":80")
	wantConnect(t, g, "the sandbox → the internet", allowedAddr+":80")

	// Not a TAP: refused, named, and the lease is free again.
	must(t, "veth", netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "sietchdum"}, PeerName: "sietchdum1"}))
	t.Cleanup(func() { DeleteLink("sietchdum") })
	addAddr(t, handle(t, netnsSelf(t)), "sietchdum", "10.99.0.45/30")
	if _, err := w.host.Attach("sb-f2", policy(t, true, nil, nil), netip.MustParseAddr("10.99.0.46")); err == nil || !strings.Contains(err.Error(), "sietchdum") {
		t.Errorf("attach over another interface's subnet: %v; want an error naming sietchdum", err)
	}
	if _, err := w.host.pool.Reserve("sb-f3", netip.MustParseAddr("10.99.0.46")); err != nil {
		t.Errorf("the refused attach kept its lease: %v", err)
	}
	w.host.pool.Release("sb-f3")

	// A sandbox TAP that a process has open (another sietchd's running
	// sandbox) is not removed either.
	f, err := tap.Open("sxlive1")
	must(t, "open a TAP", err)
	t.Cleanup(func() { f.Close() })
	live, err := netlink.LinkByName("sxlive1")
	must(t, "sxlive1", err)
	must(t, "sxlive1 up", netlink.LinkSetUp(live))
	addAddr(t, handle(t, netnsSelf(t)), "sxlive1", "10.99.0.49/30")
	if _, err := w.host.Attach("sb-f4", policy(t, true, nil, nil), netip.MustParseAddr("10.99.0.50")); err == nil || !strings.Contains(err.Error(), "sxlive1") {
		t.Errorf("attach over an open TAP's subnet: %v; want an error naming sxlive1", err)
	}
	if _, err := netlink.LinkByName("sxlive1"); err != nil {
		t.Errorf("the open TAP sxlive1 was removed: %v", err)
	}
}

// A new Host sweeps its pool's leftover sandbox TAPs and nothing else.
func TestNewSweepsLeftoverTAPs(t *testing.T) {
	needNetns(t)
	must(t, "leftover TAP", CreateTAP("sxleft1", netip.MustParsePrefix("10.98.0.1/30")))
	must(t, "TAP outside the pool", CreateTAP("sxleft2", netip.MustParsePrefix("10.97.0.1/30")))
	f, err := tap.Open("sxopen1")
	must(t, "open a TAP", err)
	t.Cleanup(func() { f.Close(); DeleteLink("sxleft1"); DeleteLink("sxleft2") })
	l, err := netlink.LinkByName("sxopen1")
	must(t, "sxopen1", err)
	must(t, "sxopen1 up", netlink.LinkSetUp(l))
	addAddr(t, handle(t, netnsSelf(t)), "sxopen1", "10.98.0.5/30")
	h, err := New(Config{Pool: netip.MustParsePrefix("10.98.0.0/24"), Table: "sietch-sweep", Uplink: "lo", Upstreams: []string{"127.0.0.1:53"}})
	must(t, "New", err)
	t.Cleanup(func() { h.Delete() })
	if _, err := netlink.LinkByName("sxleft1"); err == nil {
		t.Error("the pool's leftover TAP sxleft1 is still there")
	}
	for _, keep := range []string{"sxleft2", "sxopen1"} {
		if _, err := netlink.LinkByName(keep); err != nil {
			t.Errorf("%s was removed: %v", keep, err)
		}
	}
}
