package hostnet

import (
	"io"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// BenchmarkEgressPath measures what sietchd's egress path costs a
// sandbox's traffic to the internet: TCP throughput (one stream, 64 MiB
// per iteration) and the round trip of one byte (median of 2000), from a
// guest namespace to a server in the test's internet namespace, in the
// same run
//
//   - nat: a sandbox attached to the Host (its TAP's forward chain with an
//     allow and a deny list, conntrack, masquerade out of the uplink);
//   - plain: a veth the Host does not know, routed to the internet
//     without NAT (the internet has a route back), as a TAP a user wires
//     up by hand would be; the table's hooks still see its packets.
//
// Veth pairs stand in for TAPs on both paths, so the difference is the
// firewall and NAT, not the virtio-net device or the guest.
func BenchmarkEgressPath(b *testing.B) {
	w := newWorld(b)
	const sink, echo = allowedAddr + ":9000", allowedAddr + ":9001"
	serveSink(b, w.inet, sink)
	serveEcho(b, w.inet, echo)
	natNS, _ := w.attach("sb-bench", policy(b, true, []string{"203.0.113.0/24"}, []string{"198.51.100.0/24"}))

	// The plain path: a guest outside the pool, routed back by the internet.
	plainGW := netip.MustParsePrefix("10.98.0.1/30")
	must(b, "plain guest", w.makeGuest("plain0", plainGW))
	must(b, "route back to the plain guest", handle(b, w.inet).RouteAdd(&netlink.Route{
		Dst: &net.IPNet{IP: net.IPv4(10, 98, 0, 0), Mask: net.CIDRMask(30, 32)}, Gw: net.ParseIP("192.0.2.1")}))
	plainNS := w.guests["plain0"]

	for _, p := range []struct {
		name string
		ns   netns.NsHandle
	}{{"nat", natNS}, {"plain", plainNS}} {
		b.Run(p.name, func(b *testing.B) {
			buf := make([]byte, 256<<10)
			const perIter = 64 << 20
			b.SetBytes(perIter)
			var c net.Conn
			must(b, "dial the sink", inNS(p.ns, func() (err error) { c, err = net.Dial("tcp4", sink); return }))
			defer c.Close()
			b.ResetTimer()
			for range b.N {
				for n := 0; n < perIter; n += len(buf) {
					if _, err := c.Write(buf); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.StopTimer()
			var e net.Conn
			must(b, "dial the echo server", inNS(p.ns, func() (err error) { e, err = net.Dial("tcp4", echo); return }))
			defer e.Close()
			rtts := make([]float64, 0, 2000)
			one := []byte{1}
			for range cap(rtts) {
				t0 := time.Now()
				if _, err := e.Write(one); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(e, one); err != nil {
					b.Fatal(err)
				}
				rtts = append(rtts, float64(time.Since(t0).Nanoseconds())/1e3)
			}
			slices.Sort(rtts)
			b.ReportMetric(rtts[len(rtts)/2], "rtt-µs")
		})
	}
}

// serveSink reads and discards every connection on addr (in ns).
func serveSink(t testing.TB, ns netns.NsHandle, addr string) {
	serveConns(t, ns, addr, func(c net.Conn) { io.Copy(io.Discard, c) })
}

// serveEcho echoes every connection on addr (in ns).
func serveEcho(t testing.TB, ns netns.NsHandle, addr string) {
	serveConns(t, ns, addr, func(c net.Conn) { io.Copy(c, c) })
}

// serveConns hands every connection on addr (in ns) to handle, each on a
// goroutine of its own, and closes it after; the listener closes when the
// test ends.
func serveConns(t testing.TB, ns netns.NsHandle, addr string, handle func(net.Conn)) {
	var l net.Listener
	must(t, "listen on "+addr, inNS(ns, func() (err error) { l, err = net.Listen("tcp4", addr); return }))
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { handle(c); c.Close() }()
		}
	}()
}
