package net

import (
	"bytes"
	"encoding/binary"
	stdnet "net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sietch-vm/sietch/virtio"
	"github.com/sietch-vm/sietch/virtio/net/tap"
	"github.com/sietch-vm/sietch/virtio/virtiotest"
)

func TestConfigHasMACAndLinkUp(t *testing.T) {
	h := newHostNet(t)
	_, hs := newDevice(t, h, 0)
	c := hs.Config(0, configLen)
	if got := stdnet.HardwareAddr(c[:6]); got.String() != guestMAC.String() {
		t.Errorf("config mac = %s, want %s", got, guestMAC)
	}
	if st := binary.LittleEndian.Uint16(c[6:]); st != statusLinkUp {
		t.Errorf("config status = %#x, want VIRTIO_NET_S_LINK_UP", st)
	}
	if err := hs.Frontend().SetConfig(0, []byte{1, 2, 3, 4, 5, 6}); err == nil {
		t.Errorf("a config write of the MAC was accepted; config space is read-only")
	}
	for _, f := range []uint64{FeatureMAC, FeatureStatus, FeatureMrgRxbuf, virtio.FeatureVersion1, virtio.FeatureEventIdx} {
		if hs.Features()&f == 0 {
			t.Errorf("feature %#x not negotiated; acked %#x", f, hs.Features())
		}
	}
	if hs.Features()&(FeatureGuestUFO|FeatureHostUFO) != 0 {
		t.Errorf("UFO negotiated (%#x); it must never be offered", hs.Features())
	}
}

func TestTxFrameReachesHost(t *testing.T) {
	for _, tc := range []struct {
		name     string
		want     uint64
		split    bool // header and frame in separate descriptors, frame split too
		indirect bool
	}{
		{"event idx", 0, false, false},
		{"no event idx", acks(virtio.FeatureEventIdx), false, false},
		{"split descriptors", 0, true, false},
		{"indirect", 0, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHostNet(t)
			d, hs := newDevice(t, h, tc.want)
			tx := hs.Queue(TxQueue)
			payload := []byte("hello from the guest " + tc.name)
			pkt := append(hdrBytes(header{}), udpFrame(h.hostMAC, h.port(), payload, csumFull)...)
			bufs := []virtiotest.Buf{virtiotest.Out(pkt)}
			if tc.split {
				bufs = []virtiotest.Buf{virtiotest.Out(pkt[:5]), virtiotest.Out(pkt[5:20]), virtiotest.Out(pkt[20:])}
			}
			if tc.indirect {
				tx.PostIndirect(bufs...)
			} else {
				tx.Post(bufs...)
			}
			tx.Kick()
			if u := tx.WaitUsed(); u.Len != 0 {
				t.Errorf("tx chain used with len %d, want 0", u.Len)
			}
			if got := h.recv(t); !bytes.Equal(got, payload) {
				t.Errorf("host received %q, want %q", got, payload)
			}
			if s := d.Stats(); s.TxPackets != 1 || s.TxDropped != 0 {
				t.Errorf("stats %+v, want one packet sent, none dropped", s)
			}
		})
	}
}

func TestRxFrameFromHost(t *testing.T) {
	for _, tc := range []struct {
		name string
		want uint64
	}{
		{"all offloads", 0},
		{"no GUEST_CSUM", acks(FeatureGuestCsum | FeatureGuestTSO4 | FeatureGuestTSO6 | FeatureGuestECN)},
		{"no MRG_RXBUF", acks(FeatureMrgRxbuf)},
		{"no event idx", acks(virtio.FeatureEventIdx)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHostNet(t)
			d, hs := newDevice(t, h, tc.want)
			acked := hs.Features()
			mrg := acked&FeatureMrgRxbuf != 0
			rx := hs.Queue(RxQueue)
			postRx(rx, 16, 1526)
			const port = 5555
			payload := bytes.Repeat([]byte("guest-bound "), 20)
			h.send(t, port, payload)
			f := recvRx(t, rx, mrg, port)

			if got := stdnet.HardwareAddr(f.frame[:6]); got.String() != guestMAC.String() {
				t.Errorf("frame to %s, want the guest's MAC %s", got, guestMAC)
			}
			if !bytes.Equal(f.frame[42:], payload) {
				t.Errorf("payload %q, want %q", f.frame[42:], payload)
			}
			if f.hdr.numBuffers != 1 {
				t.Errorf("num_buffers = %d, want 1", f.hdr.numBuffers)
			}
			if f.hdr.gsoType != gsoNone {
				t.Errorf("gso_type = %d for a small datagram", f.hdr.gsoType)
			}
			udpLen := len(f.frame) - 34
			if acked&FeatureGuestCsum != 0 {
				// The host left the checksum to us (TUN_F_CSUM): it must
				// say where it goes, inside the UDP header.
				if f.hdr.flags&hdrFNeedsCsum == 0 || f.hdr.csumStart != 34 || f.hdr.csumOffset != 6 {
					t.Errorf("header %+v, want NEEDS_CSUM at 34+6", f.hdr)
				}
			} else {
				if f.hdr.flags != 0 {
					t.Errorf("flags = %#x without GUEST_CSUM, want 0", f.hdr.flags)
				}
				if s := csumFold(csumAdd(pseudoSum(hostIP, guestIP, udpLen), f.frame[34:])); s != 0xffff {
					t.Errorf("UDP checksum does not verify (sum %#x); without GUEST_CSUM frames must be complete", s)
				}
			}
			if s := d.Stats(); s.RxPackets == 0 || s.RxDropped != 0 {
				t.Errorf("stats %+v, want packets received, none dropped", s)
			}
		})
	}
}

// With MRG_RXBUF a frame larger than one buffer spans several chains.
func TestRxMergeableSpansChains(t *testing.T) {
	h := newHostNet(t)
	_, hs := newDevice(t, h, 0)
	rx := hs.Queue(RxQueue)
	postRx(rx, 32, 256)
	const port = 5556
	payload := bytes.Repeat([]byte{0xab, 0xcd, 0xef}, 400)
	h.send(t, port, payload)
	f := recvRx(t, rx, true, port)
	if want := (hdrLen + 42 + len(payload) + 255) / 256; f.bufs != want {
		t.Errorf("frame took %d chains, want %d", f.bufs, want)
	}
	if !bytes.Equal(f.frame[42:], payload) {
		t.Errorf("payload of %d bytes differs from the %d sent", len(f.frame)-42, len(payload))
	}
}

// Without rx buffers frames wait (in the tap) and arrive, in order, once
// the guest posts some.
func TestRxWaitsForBuffers(t *testing.T) {
	h := newHostNet(t)
	d, hs := newDevice(t, h, 0)
	rx := hs.Queue(RxQueue)
	const port = 5557
	for i := range 3 {
		h.send(t, port, []byte{'p', byte('0' + i)})
	}
	if u, ok := rx.WaitUsedFor(200 * time.Millisecond); ok {
		t.Fatalf("rx entry %+v used before any buffer was posted", u)
	}
	postRx(rx, 8, 1526)
	for i := range 3 {
		f := recvRx(t, rx, true, port)
		if want := []byte{'p', byte('0' + i)}; !bytes.Equal(f.frame[42:], want) {
			t.Errorf("frame %d carries %q, want %q", i, f.frame[42:], want)
		}
	}
	if s := d.Stats(); s.RxDropped != 0 {
		t.Errorf("%d frames dropped while waiting for buffers", s.RxDropped)
	}
}

// A frame already read from the tap survives the rx queue being stopped and
// set up again (vhost-user GET_VRING_BASE, then SET_VRING_*).
func TestRxPendingFrameSurvivesRestart(t *testing.T) {
	h := newHostNet(t)
	_, hs := newDevice(t, h, 0)
	rx := hs.Queue(RxQueue)
	const port = 5558
	h.send(t, port, []byte("kept"))
	rx.WaitUsedFor(100 * time.Millisecond) // let the device read it and find no buffer
	base := hs.GetVringBase(RxQueue)
	hs.SetupQueue(RxQueue, base)
	postRx(rx, 4, 1526)
	if f := recvRx(t, rx, true, port); string(f.frame[42:]) != "kept" {
		t.Errorf("got %q after restart, want %q", f.frame[42:], "kept")
	}
}

// The guest's checksum offload works only when negotiated: with CSUM a
// partially checksummed frame is delivered; without, it is dropped.
func TestTxChecksumOffloadNegotiation(t *testing.T) {
	for _, tc := range []struct {
		name      string
		want      uint64
		delivered bool
	}{
		{"CSUM acked", 0, true},
		{"CSUM not acked", acks(FeatureCsum | FeatureHostTSO4 | FeatureHostTSO6 | FeatureHostECN), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHostNet(t)
			d, hs := newDevice(t, h, tc.want)
			tx := hs.Queue(TxQueue)
			hdr := hdrBytes(header{flags: hdrFNeedsCsum, csumStart: 34, csumOffset: 6})
			tx.Do(virtiotest.Out(append(hdr, udpFrame(h.hostMAC, h.port(), []byte("partial"), csumPartial)...)))
			// A complete frame after it, which always goes through.
			tx.Do(virtiotest.Out(append(hdrBytes(header{}), udpFrame(h.hostMAC, h.port(), []byte("full"), csumFull)...)))
			got := string(h.recv(t))
			if tc.delivered && got != "partial" {
				t.Errorf("first datagram %q, want the partially checksummed one", got)
			}
			if !tc.delivered && got != "full" {
				t.Errorf("first datagram %q, want only the complete one", got)
			}
			s := d.Stats()
			if wantDrop := uint64(map[bool]int{true: 0, false: 1}[tc.delivered]); s.TxDropped != wantDrop {
				t.Errorf("TxDropped = %d, want %d", s.TxDropped, wantDrop)
			}
		})
	}
}

// The tap's offloads follow what the guest acked: with GUEST_CSUM the host
// hands over partial checksums, without it complete ones (checked in
// TestRxFrameFromHost); SetFeatures refuses broken combinations.
func TestSetFeaturesDependencies(t *testing.T) {
	h := newHostNet(t)
	d, err := New(h.tap, guestMAC)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	v1 := uint64(virtio.FeatureVersion1)
	for _, tc := range []struct {
		name  string
		acked uint64
		ok    bool
	}{
		{"none", v1, true},
		{"everything", d.Features(), true},
		{"no VERSION_1", FeatureMAC, false},
		{"GUEST_TSO4 without GUEST_CSUM", v1 | FeatureGuestTSO4, false},
		{"HOST_TSO6 without CSUM", v1 | FeatureHostTSO6, false},
		{"HOST_ECN without TSO", v1 | FeatureCsum | FeatureHostECN, false},
		{"UFO", v1 | FeatureCsum | FeatureHostUFO, false},
	} {
		err := d.SetFeatures(tc.acked)
		if (err == nil) != tc.ok {
			t.Errorf("%s: SetFeatures(%#x) = %v, want ok=%v", tc.name, tc.acked, err, tc.ok)
		}
	}
	if d.Features()&FeatureGuestCsum == 0 {
		t.Errorf("a Linux tap supports TUN_F_CSUM, but GUEST_CSUM is not offered (features %#x)", d.Features())
	}
}

// Malformed transmit chains are returned and dropped; the queue goes on.
func TestTxMalformedDoesNotStopDevice(t *testing.T) {
	h := newHostNet(t)
	d, hs := newDevice(t, h, acks(FeatureHostTSO6))
	tx := hs.Queue(TxQueue)
	good := udpFrame(h.hostMAC, h.port(), []byte("x"), csumFull)
	bad := []struct {
		name string
		pkt  []byte
	}{
		{"short header", make([]byte, 7)},
		{"header only", hdrBytes(header{})},
		{"runt frame", append(hdrBytes(header{}), good[:10]...)},
		{"DATA_VALID on transmit", append(hdrBytes(header{flags: hdrFDataValid}), good...)},
		{"RSC_INFO", append(hdrBytes(header{flags: hdrFRSCInfo}), good...)},
		{"checksum beyond frame", append(hdrBytes(header{flags: hdrFNeedsCsum, csumStart: 40, csumOffset: 6}), good...)},
		{"UFO", append(hdrBytes(header{flags: hdrFNeedsCsum, gsoType: gsoUDP, gsoSize: 8, hdrLen: 42, csumStart: 34, csumOffset: 6}), good...)},
		{"USO", append(hdrBytes(header{gsoType: gsoUDPL4, gsoSize: 8}), good...)},
		{"TSO6 not acked", append(hdrBytes(header{gsoType: gsoTCPv6, gsoSize: 1000, hdrLen: 40}), good...)},
		{"unknown GSO type", append(hdrBytes(header{gsoType: 2, gsoSize: 100}), good...)},
		{"ECN alone", append(hdrBytes(header{gsoType: gsoECN}), good...)},
		{"TSO4 zero segment size", append(hdrBytes(header{gsoType: gsoTCPv4, hdrLen: 20}), good...)},
		{"TSO4 hdr_len beyond frame", append(hdrBytes(header{gsoType: gsoTCPv4, gsoSize: 100, hdrLen: 999}), good...)},
		{"oversized frame", append(hdrBytes(header{}), make([]byte, maxFrameLen+1)...)},
	}
	for _, b := range bad {
		if u := tx.Do(virtiotest.Out(b.pkt)); u.Len != 0 {
			t.Errorf("%s: used len %d, want 0", b.name, u.Len)
		}
	}
	// A chain pointing outside guest RAM, and one whose next index is wild.
	tx.PostRaw(virtiotest.RawDesc{Addr: 0x10, Len: 64})
	tx.PostRaw(virtiotest.RawDesc{Addr: hs.Alloc(64), Len: 64, Flags: virtiotest.FlagNext, Next: 0xffff})
	tx.Kick()
	for range 2 {
		if u := tx.WaitUsed(); u.Len != 0 {
			t.Errorf("bad chain used with len %d, want 0", u.Len)
		}
	}
	tx.Do(virtiotest.Out(append(hdrBytes(header{}), good...)))
	if got := h.recv(t); string(got) != "x" {
		t.Errorf("after the bad chains the host got %q, want %q", got, "x")
	}
	s := d.Stats()
	if s.TxDropped != uint64(len(bad)) || s.BadChains != 2 || s.TxPackets != 1 {
		t.Errorf("stats %+v, want %d dropped, 2 bad chains, 1 sent", s, len(bad))
	}
}

// Receive chains the guest got wrong are returned unused; frames still
// arrive in the good ones.
func TestRxBadChains(t *testing.T) {
	h := newHostNet(t)
	_, hs := newDevice(t, h, 0)
	rx := hs.Queue(RxQueue)
	rx.PostRaw(virtiotest.RawDesc{Addr: 0x10, Len: 1526, Flags: virtiotest.FlagWrite}) // not RAM
	rx.Post(virtiotest.In(4))                                                          // smaller than the header
	postRx(rx, 4, 1526)
	const port = 5559
	h.send(t, port, []byte("after bad chains"))
	for range 2 {
		if u := rx.WaitUsed(); u.Len != 0 {
			t.Errorf("bad rx chain %d used with len %d, want 0", u.Head, u.Len)
		}
	}
	if f := recvRx(t, rx, true, port); string(f.frame[42:]) != "after bad chains" {
		t.Errorf("got %q", f.frame[42:])
	}
}

func TestNewRejects(t *testing.T) {
	h := newHostNet(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	for _, tc := range []struct {
		name string
		tap  *os.File
		mac  stdnet.HardwareAddr
		want string
	}{
		{"short MAC", h.tap, guestMAC[:5], "6-byte"},
		{"multicast MAC", h.tap, stdnet.HardwareAddr{1, 0, 0x5e, 0, 0, 1}, "multicast"},
		{"not a tap", r, guestMAC, "TUNGETIFF"},
		{"no file", nil, guestMAC, "no tap"},
	} {
		d, err := New(tc.tap, tc.mac)
		if err == nil {
			d.Close()
			t.Errorf("%s: New succeeded", tc.name)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q does not mention %q", tc.name, err, tc.want)
		}
	}
	if _, err := tap.Open(strings.Repeat("x", 16)); err == nil || !strings.Contains(err.Error(), "longer") {
		t.Errorf("tap.Open with a 16-byte name: %v, want a name-length error", err)
	}
}

// With MRG_RXBUF, chains gathered for a frame that does not fit yet are
// given back (used, length 0) when the queue stops; the frame itself is
// kept and delivered once the guest posts enough.
func TestRxMergeableStopReturnsGatheredChains(t *testing.T) {
	h := newHostNet(t)
	d, hs := newDevice(t, h, 0)
	rx := hs.Queue(RxQueue)
	postRx(rx, 2, 64) // 128 bytes: not enough for the frame below
	const port = 5560
	payload := bytes.Repeat([]byte("m"), 500)
	h.send(t, port, payload)
	for deadline := time.Now().Add(10 * time.Second); d.rx.gathered.Load() != 2; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the device gathered %d chains for the frame, want both", d.rx.gathered.Load())
		}
	}
	if u, ok := rx.Poll(); ok {
		t.Fatalf("rx entry %+v used before the frame fit", u)
	}
	base := hs.GetVringBase(RxQueue)
	for range 2 {
		if u, ok := rx.Poll(); !ok || u.Len != 0 {
			t.Fatalf("after stop: used entry %+v (present %v), want each gathered chain back with length 0", u, ok)
		}
	}
	hs.SetupQueue(RxQueue, base)
	postRx(rx, 4, 256)
	f := recvRx(t, rx, true, port)
	if !bytes.Equal(f.frame[42:], payload) || f.bufs != 3 {
		t.Errorf("got %d payload bytes in %d chains, want %d in 3", len(f.frame)-42, f.bufs, len(payload))
	}
	if s := d.Stats(); s.RxDropped != 0 {
		t.Errorf("%d frames dropped", s.RxDropped)
	}
}
