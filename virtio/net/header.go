package net

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/sietch-vm/sietch/virtio/net/tap"
)

// hdrLen is the size of struct virtio_net_hdr with VIRTIO_F_VERSION_1:
// num_buffers is always present (virtio 1.2 §5.1.6). The tap is set up with
// the same header (package tap), so frames pass through unchanged.
const hdrLen = tap.VnetHdrLen

// Ethernet frame bounds. maxFrameLen is the largest frame a tap hands over or
// takes with TSO: a 64 KiB GSO packet plus the Ethernet header.
const (
	minFrameLen = 14 // destination, source, EtherType
	maxFrameLen = 65550
)

// virtio_net_hdr flags and gso_type values (virtio 1.2 §5.1.6).
const (
	hdrFNeedsCsum = 1 // VIRTIO_NET_HDR_F_NEEDS_CSUM
	hdrFDataValid = 2 // VIRTIO_NET_HDR_F_DATA_VALID
	hdrFRSCInfo   = 4 // VIRTIO_NET_HDR_F_RSC_INFO

	gsoNone  = 0    // VIRTIO_NET_HDR_GSO_NONE
	gsoTCPv4 = 1    // VIRTIO_NET_HDR_GSO_TCPV4
	gsoUDP   = 3    // VIRTIO_NET_HDR_GSO_UDP (UFO)
	gsoTCPv6 = 4    // VIRTIO_NET_HDR_GSO_TCPV6
	gsoUDPL4 = 5    // VIRTIO_NET_HDR_GSO_UDP_L4 (USO)
	gsoECN   = 0x80 // VIRTIO_NET_HDR_GSO_ECN
)

// ErrBadHeader is wrapped by every header check failure.
var ErrBadHeader = errors.New("invalid virtio_net_hdr")

// header is struct virtio_net_hdr (virtio 1.2 §5.1.6), little-endian.
type header struct {
	flags      uint8
	gsoType    uint8
	hdrLen     uint16 // bytes of protocol headers before the GSO payload
	gsoSize    uint16
	csumStart  uint16
	csumOffset uint16
	numBuffers uint16
}

// parseHeader decodes the first hdrLen bytes of b, which must be that long.
func parseHeader(b []byte) header {
	le := binary.LittleEndian
	return header{
		flags:      b[0],
		gsoType:    b[1],
		hdrLen:     le.Uint16(b[2:]),
		gsoSize:    le.Uint16(b[4:]),
		csumStart:  le.Uint16(b[6:]),
		csumOffset: le.Uint16(b[8:]),
		numBuffers: le.Uint16(b[10:]),
	}
}

// put encodes h into the first hdrLen bytes of b.
func (h header) put(b []byte) {
	le := binary.LittleEndian
	b[0], b[1] = h.flags, h.gsoType
	le.PutUint16(b[2:], h.hdrLen)
	le.PutUint16(b[4:], h.gsoSize)
	le.PutUint16(b[6:], h.csumStart)
	le.PutUint16(b[8:], h.csumOffset)
	le.PutUint16(b[10:], h.numBuffers)
}

// offloads says which header features one direction of the device allows:
// the negotiated CSUM/HOST_* bits for transmit, GUEST_* for receive.
type offloads struct {
	csum      bool // NEEDS_CSUM (and, on receive, DATA_VALID) may be set
	tso4      bool
	tso6      bool
	ecn       bool
	dataValid bool // DATA_VALID may be set (receive only)
}

func txOffloads(acked uint64) offloads {
	return offloads{
		csum: acked&FeatureCsum != 0,
		tso4: acked&FeatureHostTSO4 != 0,
		tso6: acked&FeatureHostTSO6 != 0,
		ecn:  acked&FeatureHostECN != 0,
	}
}

func rxOffloads(acked uint64) offloads {
	csum := acked&FeatureGuestCsum != 0
	return offloads{
		csum:      csum,
		tso4:      acked&FeatureGuestTSO4 != 0,
		tso6:      acked&FeatureGuestTSO6 != 0,
		ecn:       acked&FeatureGuestECN != 0,
		dataValid: csum,
	}
}

// check validates h for a frame of frameLen bytes (without the header)
// against the offloads negotiated for its direction (virtio 1.2 §5.1.6.2,
// §5.1.6.4): the checksum and GSO requests must have been negotiated, and
// every offset must lie inside the frame. num_buffers is not looked at.
func (h header) check(frameLen int, o offloads) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadHeader, fmt.Sprintf(format, args...))
	}
	if frameLen < minFrameLen || frameLen > maxFrameLen {
		return bad("frame of %d bytes is outside %d..%d", frameLen, minFrameLen, maxFrameLen)
	}
	allowed := uint8(0)
	if o.csum {
		allowed |= hdrFNeedsCsum
	}
	if o.dataValid {
		allowed |= hdrFDataValid
	}
	if extra := h.flags &^ allowed; extra != 0 {
		return bad("flags %#x not allowed (negotiated: %#x)", extra, allowed)
	}
	if h.flags&hdrFNeedsCsum != 0 {
		// The checksum field itself (2 bytes) must be inside the frame.
		if end := int(h.csumStart) + int(h.csumOffset) + 2; end > frameLen {
			return bad("checksum at %d+%d is beyond the %d-byte frame", h.csumStart, h.csumOffset, frameLen)
		}
	}
	gso := h.gsoType &^ gsoECN
	switch {
	case gso == gsoNone && h.gsoType&gsoECN != 0:
		return bad("ECN bit without a GSO type")
	case gso == gsoNone:
		return nil
	case gso == gsoTCPv4 && !o.tso4, gso == gsoTCPv6 && !o.tso6:
		return bad("GSO type %d was not negotiated", gso)
	case gso != gsoTCPv4 && gso != gsoTCPv6:
		// UFO and USO are never offered.
		return bad("GSO type %d is unknown or not offered", gso)
	case h.gsoType&gsoECN != 0 && !o.ecn:
		return bad("GSO ECN was not negotiated")
	case h.gsoSize == 0:
		return bad("GSO with a zero segment size")
	case int(h.hdrLen) > frameLen:
		return bad("header length %d is beyond the %d-byte frame", h.hdrLen, frameLen)
	}
	return nil
}
