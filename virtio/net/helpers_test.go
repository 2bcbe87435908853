package net

import (
	"encoding/binary"
	"fmt"
	stdnet "net"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sietch-vm/sietch/virtio"
	"github.com/sietch-vm/sietch/virtio/net/tap"
	"github.com/sietch-vm/sietch/virtio/virtiotest"
)

// The test network: the host side of the tap and a pretend guest.
var (
	hostIP   = stdnet.IPv4(10, 99, 0, 1).To4()
	guestIP  = stdnet.IPv4(10, 99, 0, 2).To4()
	guestMAC = stdnet.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}
)

const tapName = "sietch-t0"

// hostNet is a tap in a network namespace of its own, plus a UDP socket in
// that namespace on the tap's address: the host side of the guest's NIC.
type hostNet struct {
	tap     *os.File
	hostMAC stdnet.HardwareAddr
	udp     *stdnet.UDPConn
}

// newHostNet makes a fresh network namespace on a locked OS thread that is
// thrown away afterwards (the goroutine exits without unlocking), so no
// other goroutine ever runs in it; sockets and the tap stay bound to it.
func newHostNet(t testing.TB) *hostNet {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace and a tap")
	}
	if _, err := os.Stat(tap.CloneDevice); err != nil {
		t.Skipf("no %s: %v", tap.CloneDevice, err)
	}
	type result struct {
		h   *hostNet
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with this goroutine
		h, err := setupHostNet()
		ch <- result{h, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("set up tap in a new network namespace: %v", r.err)
	}
	t.Cleanup(func() { r.h.udp.Close(); r.h.tap.Close() })
	return r.h
}

func setupHostNet() (*hostNet, error) {
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return nil, fmt.Errorf("unshare(CLONE_NEWNET): %w", err)
	}
	tf, err := tap.Open(tapName)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*hostNet, error) { tf.Close(); return nil, err }
	link, err := netlink.LinkByName(tapName)
	if err != nil {
		return fail(err)
	}
	// No IPv6 on the tap: its router and neighbour solicitations would be
	// frames the tests did not ask for.
	if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+tapName+"/disable_ipv6", []byte("1"), 0); err != nil && !os.IsNotExist(err) {
		return fail(fmt.Errorf("disable IPv6: %w", err))
	}
	addr := &netlink.Addr{IPNet: &stdnet.IPNet{IP: hostIP, Mask: stdnet.CIDRMask(24, 32)}}
	if err := netlink.AddrAdd(link, addr); err != nil {
		return fail(fmt.Errorf("add address: %w", err))
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fail(fmt.Errorf("link up: %w", err))
	}
	// A static neighbour, so that the host sends to the guest without ARP.
	if err := netlink.NeighAdd(&netlink.Neigh{LinkIndex: link.Attrs().Index, Family: unix.AF_INET,
		State: netlink.NUD_PERMANENT, IP: guestIP, HardwareAddr: guestMAC}); err != nil {
		return fail(fmt.Errorf("add neighbour: %w", err))
	}
	udp, err := stdnet.ListenUDP("udp4", &stdnet.UDPAddr{IP: hostIP, Port: 0})
	if err != nil {
		return fail(err)
	}
	return &hostNet{tap: tf, hostMAC: link.Attrs().HardwareAddr, udp: udp}, nil
}

func (h *hostNet) port() int { return h.udp.LocalAddr().(*stdnet.UDPAddr).Port }

// recv reads one datagram from the host UDP socket, failing after 10 s.
func (h *hostNet) recv(t testing.TB) []byte {
	t.Helper()
	h.udp.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, 65536)
	n, _, err := h.udp.ReadFromUDP(b)
	if err != nil {
		t.Fatalf("host UDP receive: %v", err)
	}
	return b[:n]
}

// send sends payload from the host UDP socket to the guest's port.
func (h *hostNet) send(t testing.TB, port int, payload []byte) {
	t.Helper()
	if _, err := h.udp.WriteToUDP(payload, &stdnet.UDPAddr{IP: guestIP, Port: port}); err != nil {
		t.Fatalf("host UDP send: %v", err)
	}
}

// newDevice is a device on h's tap with a harness session acking the
// features in want (0: all offered).
func newDevice(t testing.TB, h *hostNet, want uint64) (*Device, *virtiotest.Harness) {
	t.Helper()
	d, err := New(h.tap, guestMAC)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	hs := virtiotest.Start(t, d, virtiotest.Options{Features: want})
	return d, hs // harness cleanup (registered later) runs first: queues stop before Close
}

// csumMode is how udpFrame fills in the UDP checksum.
type csumMode int

const (
	csumFull    csumMode = iota // a correct checksum
	csumPartial                 // the pseudo-header sum, for NEEDS_CSUM
)

// udpFrame builds an Ethernet/IPv4/UDP frame from the guest to the host.
func udpFrame(dstMAC stdnet.HardwareAddr, dport int, payload []byte, mode csumMode) []byte {
	be := binary.BigEndian
	f := make([]byte, 14+20+8+len(payload))
	copy(f[0:], dstMAC)
	copy(f[6:], guestMAC)
	be.PutUint16(f[12:], 0x0800)
	ip := f[14:34]
	ip[0], ip[8], ip[9] = 0x45, 64, unix.IPPROTO_UDP
	be.PutUint16(ip[2:], uint16(20+8+len(payload)))
	be.PutUint16(ip[6:], 0x4000) // DF
	copy(ip[12:], guestIP)
	copy(ip[16:], hostIP)
	be.PutUint16(ip[10:], ^csumFold(csumAdd(0, ip)))
	udp := f[34:]
	be.PutUint16(udp[0:], 40000)
	be.PutUint16(udp[2:], uint16(dport))
	be.PutUint16(udp[4:], uint16(8+len(payload)))
	copy(udp[8:], payload)
	pseudo := pseudoSum(guestIP, hostIP, len(udp))
	switch mode {
	case csumFull:
		be.PutUint16(udp[6:], ^csumFold(csumAdd(pseudo, udp)))
	case csumPartial:
		be.PutUint16(udp[6:], csumFold(pseudo))
	}
	return f
}

func pseudoSum(src, dst stdnet.IP, n int) uint32 {
	var p [12]byte
	copy(p[0:], src)
	copy(p[4:], dst)
	p[9] = unix.IPPROTO_UDP
	binary.BigEndian.PutUint16(p[10:], uint16(n))
	return csumAdd(0, p[:])
}

func csumAdd(s uint32, b []byte) uint32 {
	for len(b) >= 2 {
		s += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	return s
}

func csumFold(s uint32) uint16 {
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// hdrBytes encodes a virtio_net_hdr.
func hdrBytes(h header) []byte {
	b := make([]byte, hdrLen)
	h.put(b)
	return b
}

// rxFrame is a frame the guest received: its header and the frame.
type rxFrame struct {
	hdr   header
	frame []byte
	bufs  int // chains it took
}

// recvRx takes used rx entries until one holds a UDP datagram to port, and
// returns it; with mrg it gathers num_buffers chains. It fails the test on
// a malformed entry.
func recvRx(t testing.TB, q *virtiotest.Queue, mrg bool, port int) rxFrame {
	t.Helper()
	for {
		u := q.WaitUsed()
		data := u.Data()
		if len(data) < hdrLen {
			t.Fatalf("rx chain %d used with %d bytes, less than the header", u.Head, len(data))
		}
		f := rxFrame{hdr: parseHeader(data), frame: append([]byte(nil), data[hdrLen:]...), bufs: 1}
		if mrg {
			for ; f.bufs < int(f.hdr.numBuffers); f.bufs++ {
				f.frame = append(f.frame, q.WaitUsed().Data()...)
			}
		}
		if isUDPTo(f.frame, port) {
			return f
		}
		t.Logf("skipping an unrelated frame of %d bytes (EtherType %#x)", len(f.frame), etherType(f.frame))
	}
}

func etherType(f []byte) uint16 {
	if len(f) < 14 {
		return 0
	}
	return binary.BigEndian.Uint16(f[12:])
}

func isUDPTo(f []byte, port int) bool {
	return len(f) >= 42 && etherType(f) == 0x0800 && f[14+9] == unix.IPPROTO_UDP &&
		int(binary.BigEndian.Uint16(f[34+2:])) == port
}

// postRx posts n receive chains of size bytes each and kicks.
func postRx(q *virtiotest.Queue, n, size int) {
	for range n {
		q.Post(virtiotest.In(size))
	}
	q.Kick()
}

// acks is the harness Features mask for "everything offered but drop".
func acks(drop uint64) uint64 { return ^uint64(0) &^ drop }

var _ = virtio.FeatureVersion1
