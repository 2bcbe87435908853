package vsock

import (
	"encoding/binary"
	"fmt"
)

// HeaderSize is the size of struct virtio_vsock_hdr (virtio 1.2 §5.10.6).
const HeaderSize = 44

// HostCID is the address of the host side (virtio 1.2 §5.10.4).
const HostCID = 2

// Socket types and operations (virtio 1.2 §5.10.6).
const (
	TypeStream = 1

	OpRequest       = 1
	OpResponse      = 2
	OpRst           = 3
	OpShutdown      = 4
	OpRW            = 5
	OpCreditUpdate  = 6
	OpCreditRequest = 7
)

// SHUTDOWN flags (virtio 1.2 §5.10.6.4): the sender will receive no more
// (RCV) and/or send no more (SEND).
const (
	ShutdownRcv  = 1
	ShutdownSend = 2
)

// EventTransportReset is the only event the device sends on the event
// queue (virtio 1.2 §5.10.6.6).
const EventTransportReset = 0

// MaxPayload is the largest payload the device sends or accepts in one
// packet, Linux's VIRTIO_VSOCK_MAX_PKT_BUF_SIZE.
const MaxPayload = 64 << 10

// Header is struct virtio_vsock_hdr, little-endian on the wire.
type Header struct {
	SrcCID   uint64
	DstCID   uint64
	SrcPort  uint32
	DstPort  uint32
	Len      uint32
	Type     uint16
	Op       uint16
	Flags    uint32
	BufAlloc uint32
	FwdCnt   uint32
}

// Marshal writes h into b, which must hold HeaderSize bytes.
func (h *Header) Marshal(b []byte) {
	le := binary.LittleEndian
	_ = b[HeaderSize-1]
	le.PutUint64(b[0:], h.SrcCID)
	le.PutUint64(b[8:], h.DstCID)
	le.PutUint32(b[16:], h.SrcPort)
	le.PutUint32(b[20:], h.DstPort)
	le.PutUint32(b[24:], h.Len)
	le.PutUint16(b[28:], h.Type)
	le.PutUint16(b[30:], h.Op)
	le.PutUint32(b[32:], h.Flags)
	le.PutUint32(b[36:], h.BufAlloc)
	le.PutUint32(b[40:], h.FwdCnt)
}

// Unmarshal decodes a header from the first HeaderSize bytes of b. It only
// checks the size; what the fields mean is the connection machine's job.
func (h *Header) Unmarshal(b []byte) error {
	if len(b) < HeaderSize {
		return fmt.Errorf("vsock header is %d bytes, want %d", len(b), HeaderSize)
	}
	le := binary.LittleEndian
	*h = Header{
		SrcCID:   le.Uint64(b[0:]),
		DstCID:   le.Uint64(b[8:]),
		SrcPort:  le.Uint32(b[16:]),
		DstPort:  le.Uint32(b[20:]),
		Len:      le.Uint32(b[24:]),
		Type:     le.Uint16(b[28:]),
		Op:       le.Uint16(b[30:]),
		Flags:    le.Uint32(b[32:]),
		BufAlloc: le.Uint32(b[36:]),
		FwdCnt:   le.Uint32(b[40:]),
	}
	return nil
}

var opNames = [...]string{"", "REQUEST", "RESPONSE", "RST", "SHUTDOWN", "RW", "CREDIT_UPDATE", "CREDIT_REQUEST"}

// String names the operation and ports, for logs and test failures.
func (h Header) String() string {
	op := fmt.Sprintf("op%d", h.Op)
	if int(h.Op) < len(opNames) && h.Op != 0 {
		op = opNames[h.Op]
	}
	return fmt.Sprintf("%s %d:%d->%d:%d len=%d flags=%#x buf_alloc=%d fwd_cnt=%d",
		op, h.SrcCID, h.SrcPort, h.DstCID, h.DstPort, h.Len, h.Flags, h.BufAlloc, h.FwdCnt)
}
