// Package vhostuser speaks the vhost-user protocol: a front-end for the vmm, and for device processes a back-end that runs their queues (Vring) around a DeviceModel.
package vhostuser

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"

	"golang.org/x/sys/unix"
)

// Request is a vhost-user front-end message type (vhost-user.rst "Front-end
// message types").
type Request uint32

// Front-end requests. Only the ones this package sends or serves are named
// for use; the rest exist so that logs and errors can name what a peer sent.
const (
	GetFeatures         Request = 1
	SetFeatures         Request = 2
	SetOwner            Request = 3
	ResetOwner          Request = 4
	SetMemTable         Request = 5
	SetLogBase          Request = 6
	SetLogFD            Request = 7
	SetVringNum         Request = 8
	SetVringAddr        Request = 9
	SetVringBase        Request = 10
	GetVringBase        Request = 11
	SetVringKick        Request = 12
	SetVringCall        Request = 13
	SetVringErr         Request = 14
	GetProtocolFeatures Request = 15
	SetProtocolFeatures Request = 16
	GetQueueNum         Request = 17
	SetVringEnable      Request = 18
	SendRARP            Request = 19
	NetSetMTU           Request = 20
	SetBackendReqFD     Request = 21
	IOTLBMsg            Request = 22
	SetVringEndian      Request = 23
	GetConfig           Request = 24
	SetConfig           Request = 25
	CreateCryptoSession Request = 26
	CloseCryptoSession  Request = 27
	PostcopyAdvise      Request = 28
	PostcopyListen      Request = 29
	PostcopyEnd         Request = 30
	GetInflightFD       Request = 31
	SetInflightFD       Request = 32
	GPUSetSocket        Request = 33
	ResetDevice         Request = 34
	VringKick           Request = 35
	GetMaxMemSlots      Request = 36
	AddMemReg           Request = 37
	RemMemReg           Request = 38
	SetStatus           Request = 39
	GetStatus           Request = 40
)

var requestNames = map[Request]string{
	GetFeatures: "GET_FEATURES", SetFeatures: "SET_FEATURES", SetOwner: "SET_OWNER",
	ResetOwner: "RESET_OWNER", SetMemTable: "SET_MEM_TABLE", SetLogBase: "SET_LOG_BASE",
	SetLogFD: "SET_LOG_FD", SetVringNum: "SET_VRING_NUM", SetVringAddr: "SET_VRING_ADDR",
	SetVringBase: "SET_VRING_BASE", GetVringBase: "GET_VRING_BASE", SetVringKick: "SET_VRING_KICK",
	SetVringCall: "SET_VRING_CALL", SetVringErr: "SET_VRING_ERR",
	GetProtocolFeatures: "GET_PROTOCOL_FEATURES", SetProtocolFeatures: "SET_PROTOCOL_FEATURES",
	GetQueueNum: "GET_QUEUE_NUM", SetVringEnable: "SET_VRING_ENABLE", SendRARP: "SEND_RARP",
	NetSetMTU: "NET_SET_MTU", SetBackendReqFD: "SET_BACKEND_REQ_FD", IOTLBMsg: "IOTLB_MSG",
	SetVringEndian: "SET_VRING_ENDIAN", GetConfig: "GET_CONFIG", SetConfig: "SET_CONFIG",
	CreateCryptoSession: "CREATE_CRYPTO_SESSION", CloseCryptoSession: "CLOSE_CRYPTO_SESSION",
	PostcopyAdvise: "POSTCOPY_ADVISE", PostcopyListen: "POSTCOPY_LISTEN", PostcopyEnd: "POSTCOPY_END",
	GetInflightFD: "GET_INFLIGHT_FD", SetInflightFD: "SET_INFLIGHT_FD", GPUSetSocket: "GPU_SET_SOCKET",
	ResetDevice: "RESET_DEVICE", VringKick: "VRING_KICK", GetMaxMemSlots: "GET_MAX_MEM_SLOTS",
	AddMemReg: "ADD_MEM_REG", RemMemReg: "REM_MEM_REG", SetStatus: "SET_STATUS", GetStatus: "GET_STATUS",
}

func (r Request) String() string {
	if s, ok := requestNames[r]; ok {
		return s
	}
	return fmt.Sprintf("request(%d)", uint32(r))
}

// Header flags (vhost-user.rst "Header").
const (
	FlagVersion   = 0x1 // the only protocol version; lives in bits 0-1
	FlagReply     = 0x4
	FlagNeedReply = 0x8
	versionMask   = 0x3
)

// Wire limits.
const (
	HeaderSize = 12
	// MaxPayload bounds every message this package reads. The largest payload
	// it handles is a memory table (8 + 8*32 bytes) or a config access
	// (12 + MaxConfigSize bytes); a peer that sends more is broken.
	MaxPayload = 4096
	// MaxFDs is the most file descriptors one message carries: one per
	// memory region of SET_MEM_TABLE.
	MaxFDs = MaxRegions
)

// Header is the fixed part of every message. All fields are in the
// machine's byte order (vhost-user.rst "Message Specification").
type Header struct {
	Request Request
	Flags   uint32
	Size    uint32
}

func (h Header) isReply() bool { return h.Flags&FlagReply != 0 }

// ErrClosed is returned (wrapped) by ReadMessage when the peer closed the
// connection cleanly between two messages.
var ErrClosed = errors.New("vhost-user peer closed the connection")

// ReadMessage reads one message. It accepts at most maxFDs descriptors and
// checks that the request carries exactly as many as the protocol says; on
// any error every received descriptor is closed. On success the caller owns
// the returned descriptors.
func ReadMessage(conn *net.UnixConn, maxFDs int) (Header, []byte, []int, error) {
	var h Header
	if maxFDs < 0 {
		maxFDs = 0
	}
	var fds []int
	fail := func(err error) (Header, []byte, []int, error) {
		closeFDs(fds)
		return h, nil, nil, err
	}

	hb := make([]byte, HeaderSize)
	n, err := readFull(conn, hb, maxFDs, &fds)
	if err != nil {
		if n == 0 && errors.Is(err, io.EOF) {
			return fail(ErrClosed)
		}
		return fail(fmt.Errorf("read vhost-user header: %w", err))
	}
	h = Header{
		Request: Request(binary.NativeEndian.Uint32(hb[0:])),
		Flags:   binary.NativeEndian.Uint32(hb[4:]),
		Size:    binary.NativeEndian.Uint32(hb[8:]),
	}
	if h.Flags&versionMask != FlagVersion {
		return fail(fmt.Errorf("vhost-user %s: protocol version %d, want 1", h.Request, h.Flags&versionMask))
	}
	if h.Size > MaxPayload {
		return fail(fmt.Errorf("vhost-user %s: payload of %d bytes exceeds the %d-byte limit", h.Request, h.Size, MaxPayload))
	}
	payload := make([]byte, h.Size)
	if _, err := readFull(conn, payload, maxFDs, &fds); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return fail(fmt.Errorf("read vhost-user %s payload: %w", h.Request, err))
	}
	want, err := expectedFDs(h, payload)
	if err != nil {
		return fail(err)
	}
	if len(fds) != want {
		return fail(fmt.Errorf("vhost-user %s: got %d file descriptors, want %d", h.Request, len(fds), want))
	}
	return h, payload, fds, nil
}

// readFull fills buf from conn, collecting any descriptors that arrive on
// the way. It reads with recvmsg throughout: descriptors may ride on any
// segment, and a plain read would silently drop them.
func readFull(conn *net.UnixConn, buf []byte, maxFDs int, fds *[]int) (int, error) {
	// Room for one more descriptor than allowed, so an excess is noticed
	// rather than truncated away unseen.
	oob := make([]byte, unix.CmsgSpace((maxFDs+1)*4))
	got := 0
	for got < len(buf) {
		n, oobn, flags, _, err := conn.ReadMsgUnix(buf[got:], oob)
		if oobn > 0 {
			more, perr := parseRights(oob[:oobn])
			*fds = append(*fds, more...)
			if perr != nil {
				return got, perr
			}
		}
		if flags&unix.MSG_CTRUNC != 0 {
			return got, fmt.Errorf("more than %d file descriptors attached", maxFDs)
		}
		if len(*fds) > maxFDs {
			return got, fmt.Errorf("%d file descriptors attached, at most %d allowed", len(*fds), maxFDs)
		}
		got += n
		if err != nil {
			return got, err
		}
		if n == 0 {
			return got, io.EOF
		}
	}
	return got, nil
}

func parseRights(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("parse control message: %w", err)
	}
	var fds []int
	for _, m := range msgs {
		if m.Header.Level != unix.SOL_SOCKET || m.Header.Type != unix.SCM_RIGHTS {
			continue
		}
		r, err := unix.ParseUnixRights(&m)
		if err != nil {
			return fds, fmt.Errorf("parse SCM_RIGHTS: %w", err)
		}
		fds = append(fds, r...)
	}
	return fds, nil
}

// Bits of the u64 payload of SET_VRING_KICK/CALL/ERR.
const (
	vringIndexMask = 0xff
	vringNoFD      = 0x100
)

// expectedFDs says how many descriptors the protocol attaches to a message
// (vhost-user.rst "Communication"). The only reply that carries one is
// POSTCOPY_ADVISE's: the back-end's userfaultfd.
func expectedFDs(h Header, payload []byte) (int, error) {
	if h.isReply() {
		if h.Request == PostcopyAdvise {
			return 1, nil
		}
		return 0, nil
	}
	switch h.Request {
	case SetMemTable:
		if len(payload) < 8 {
			return 0, fmt.Errorf("vhost-user %s: payload of %d bytes is shorter than the 8-byte region count", h.Request, len(payload))
		}
		n := binary.NativeEndian.Uint32(payload)
		if n > MaxRegions {
			return 0, fmt.Errorf("vhost-user %s: %d regions, at most %d supported", h.Request, n, MaxRegions)
		}
		return int(n), nil
	case SetVringKick, SetVringCall, SetVringErr:
		if len(payload) != 8 {
			return 0, fmt.Errorf("vhost-user %s: payload is %d bytes, want 8", h.Request, len(payload))
		}
		if binary.NativeEndian.Uint64(payload)&vringNoFD != 0 {
			return 0, nil
		}
		return 1, nil
	case SetLogBase, SetLogFD, SetBackendReqFD, SetInflightFD, GPUSetSocket, AddMemReg:
		return 1, nil
	}
	return 0, nil
}

// WriteMessage sends one message with its descriptors attached to its
// first byte. h.Size is set from the payload.
func WriteMessage(conn *net.UnixConn, h Header, payload []byte, fds []int) error {
	if len(payload) > MaxPayload {
		return fmt.Errorf("vhost-user %s: payload of %d bytes exceeds the %d-byte limit", h.Request, len(payload), MaxPayload)
	}
	buf := make([]byte, HeaderSize+len(payload))
	binary.NativeEndian.PutUint32(buf[0:], uint32(h.Request))
	binary.NativeEndian.PutUint32(buf[4:], h.Flags)
	binary.NativeEndian.PutUint32(buf[8:], uint32(len(payload)))
	copy(buf[HeaderSize:], payload)
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	n, _, err := conn.WriteMsgUnix(buf, oob, nil)
	if err != nil {
		return fmt.Errorf("send vhost-user %s: %w", h.Request, err)
	}
	// A stream socket may take a message in pieces; the descriptors went
	// with the first one.
	if n < len(buf) {
		if _, err := conn.Write(buf[n:]); err != nil {
			return fmt.Errorf("send vhost-user %s: %w", h.Request, err)
		}
	}
	return nil
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
}
