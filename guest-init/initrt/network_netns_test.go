package initrt

import (
	"net"
	"os"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// A restored guest moves eth0 from its snapshot's address to its own: the
// old address goes, the new one and its default route come. Run on a veth
// named eth0 in a network namespace the test makes.
func TestReconfigureEth0(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("not root: the test makes a network namespace")
	}
	ns := make(chan netns.NsHandle, 1)
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		h, err := netns.New()
		if err != nil {
			errc <- err
			return
		}
		ns <- h
	}()
	var h netns.NsHandle
	select {
	case err := <-errc:
		t.Skipf("cannot make a network namespace: %v", err)
	case h = <-ns:
	}
	defer h.Close()
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	if err := nl.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "peer0"}); err != nil {
		t.Fatalf("veth: %v", err)
	}
	old, err := ParseCmdline("sietch.ip=10.99.0.2/30 sietch.gw=10.99.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if err := reconfigureEth0(nl, old); err != nil {
		t.Fatalf("first address: %v", err)
	}
	peer, _ := nl.LinkByName("peer0")
	nl.LinkSetUp(peer)
	next, _ := ParseCmdline("sietch.ip=10.99.0.6/30 sietch.gw=10.99.0.5")
	if err := reconfigureEth0(nl, next); err != nil {
		t.Fatalf("reconfigure: %v", err)
	}
	eth, _ := nl.LinkByName("eth0")
	addrs, _ := nl.AddrList(eth, netlink.FAMILY_V4)
	if len(addrs) != 1 || addrs[0].IPNet.String() != "10.99.0.6/30" {
		t.Errorf("eth0 has %v; want only 10.99.0.6/30", addrs)
	}
	routes, _ := nl.RouteList(eth, netlink.FAMILY_V4)
	var gws []string
	for _, r := range routes {
		if r.Dst == nil || r.Dst.IP.Equal(net.IPv4zero) {
			gws = append(gws, r.Gw.String())
		}
	}
	if len(gws) != 1 || gws[0] != "10.99.0.5" {
		t.Errorf("default routes via %v; want one via 10.99.0.5", gws)
	}
	// Again with the same: nothing changes, no error.
	if err := reconfigureEth0(nl, next); err != nil {
		t.Errorf("same again: %v", err)
	}
	if err := reconfigureEth0(nl, Config{}); err == nil {
		t.Error("no address: no error")
	}
}
