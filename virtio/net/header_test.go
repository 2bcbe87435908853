package net

import (
	"errors"
	"testing"
)

func TestHeaderRoundTrip(t *testing.T) {
	h := header{flags: 1, gsoType: gsoTCPv4 | gsoECN, hdrLen: 54, gsoSize: 1448, csumStart: 34, csumOffset: 16, numBuffers: 3}
	b := hdrBytes(h)
	want := []byte{1, 0x81, 54, 0, 0xa8, 0x05, 34, 0, 16, 0, 3, 0}
	if string(b) != string(want) {
		t.Errorf("encoded % x, want % x (little-endian, virtio 1.2 §5.1.6)", b, want)
	}
	if got := parseHeader(b); got != h {
		t.Errorf("parse(put(h)) = %+v, want %+v", got, h)
	}
}

func TestHeaderCheck(t *testing.T) {
	all := offloads{csum: true, tso4: true, tso6: true, ecn: true}
	none := offloads{}
	rx := offloads{csum: true, dataValid: true}
	for _, tc := range []struct {
		name  string
		h     header
		frame int
		o     offloads
		ok    bool
	}{
		{"plain", header{}, 60, none, true},
		{"plain, num_buffers ignored", header{numBuffers: 7}, 60, none, true},
		{"runt", header{}, 13, all, false},
		{"minimum frame", header{}, 14, none, true},
		{"too big", header{}, maxFrameLen + 1, all, false},
		{"largest", header{}, maxFrameLen, all, true},
		{"needs csum, not negotiated", header{flags: hdrFNeedsCsum, csumStart: 34, csumOffset: 6}, 60, none, false},
		{"needs csum", header{flags: hdrFNeedsCsum, csumStart: 34, csumOffset: 6}, 60, all, true},
		{"csum field last two bytes", header{flags: hdrFNeedsCsum, csumStart: 50, csumOffset: 8}, 60, all, true},
		{"csum field one past", header{flags: hdrFNeedsCsum, csumStart: 50, csumOffset: 9}, 60, all, false},
		{"csum offsets overflow 16 bits", header{flags: hdrFNeedsCsum, csumStart: 0xffff, csumOffset: 0xffff}, 60, all, false},
		{"data valid on transmit", header{flags: hdrFDataValid}, 60, all, false},
		{"data valid on receive", header{flags: hdrFDataValid}, 60, rx, true},
		{"rsc info", header{flags: hdrFRSCInfo}, 60, rx, false},
		{"unknown flag", header{flags: 0x40}, 60, all, false},
		{"tso4", header{flags: hdrFNeedsCsum, gsoType: gsoTCPv4, gsoSize: 1448, hdrLen: 54, csumStart: 34, csumOffset: 16}, 9000, all, true},
		{"tso4 not negotiated", header{gsoType: gsoTCPv4, gsoSize: 1448, hdrLen: 54}, 9000, offloads{tso6: true}, false},
		{"tso6", header{gsoType: gsoTCPv6, gsoSize: 1440, hdrLen: 74}, 9000, all, true},
		{"tso6 not negotiated", header{gsoType: gsoTCPv6, gsoSize: 1440, hdrLen: 74}, 9000, offloads{tso4: true}, false},
		{"tso ecn", header{gsoType: gsoTCPv4 | gsoECN, gsoSize: 1448, hdrLen: 54}, 9000, all, true},
		{"tso ecn not negotiated", header{gsoType: gsoTCPv4 | gsoECN, gsoSize: 1448, hdrLen: 54}, 9000, offloads{tso4: true}, false},
		{"ecn alone", header{gsoType: gsoECN}, 60, all, false},
		{"ufo", header{gsoType: gsoUDP, gsoSize: 1000, hdrLen: 42}, 9000, all, false},
		{"uso", header{gsoType: gsoUDPL4, gsoSize: 1000, hdrLen: 42}, 9000, all, false},
		{"gso type 2", header{gsoType: 2, gsoSize: 1000}, 9000, all, false},
		{"gso type 0x7f", header{gsoType: 0x7f, gsoSize: 1000}, 9000, all, false},
		{"gso size zero", header{gsoType: gsoTCPv4, hdrLen: 54}, 9000, all, false},
		{"hdr_len beyond frame", header{gsoType: gsoTCPv4, gsoSize: 1448, hdrLen: 9001}, 9000, all, false},
	} {
		err := tc.h.check(tc.frame, tc.o)
		if (err == nil) != tc.ok {
			t.Errorf("%s: check = %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrBadHeader) {
			t.Errorf("%s: error %v does not wrap ErrBadHeader", tc.name, err)
		}
	}
}

// FuzzHeaderCheck feeds arbitrary guest headers to the check: it must not
// panic, and whatever it accepts must only point inside the frame and only
// use what was negotiated.
func FuzzHeaderCheck(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 60, uint8(0))
	f.Add([]byte{1, 1, 54, 0, 0xa8, 5, 34, 0, 16, 0, 0, 0}, 9000, uint8(0xff))
	f.Add([]byte{1, 0x84, 74, 0, 0xa0, 5, 54, 0, 16, 0, 1, 0}, 9000, uint8(0x0f))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 70000, uint8(0x1f))
	f.Fuzz(func(t *testing.T, b []byte, frame int, bits uint8) {
		if len(b) < hdrLen {
			return
		}
		o := offloads{csum: bits&1 != 0, tso4: bits&2 != 0, tso6: bits&4 != 0, ecn: bits&8 != 0, dataValid: bits&16 != 0}
		h := parseHeader(b)
		if err := h.check(frame, o); err != nil {
			return
		}
		if frame < minFrameLen || frame > maxFrameLen {
			t.Fatalf("accepted a %d-byte frame", frame)
		}
		if h.flags&hdrFNeedsCsum != 0 && (!o.csum || int(h.csumStart)+int(h.csumOffset)+2 > frame) {
			t.Fatalf("accepted NEEDS_CSUM %+v for a %d-byte frame with %+v", h, frame, o)
		}
		if h.flags&^(hdrFNeedsCsum|hdrFDataValid) != 0 || (h.flags&hdrFDataValid != 0 && !o.dataValid) {
			t.Fatalf("accepted flags %#x with %+v", h.flags, o)
		}
		switch h.gsoType &^ gsoECN {
		case gsoNone:
			if h.gsoType != gsoNone {
				t.Fatalf("accepted ECN without GSO")
			}
		case gsoTCPv4, gsoTCPv6:
			if int(h.hdrLen) > frame || h.gsoSize == 0 {
				t.Fatalf("accepted GSO %+v for a %d-byte frame", h, frame)
			}
		default:
			t.Fatalf("accepted GSO type %d", h.gsoType)
		}
	})
}
