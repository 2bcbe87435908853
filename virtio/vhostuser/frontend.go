package vhostuser

import (
	"errors"
	"fmt"
	"net"
	"sync"
)

// Frontend drives a vhost-user back-end: the vmm's side of the socket.
// Calls are serialized; each waits for the back-end's reply where there is
// one, and for its acknowledgement once REPLY_ACK is negotiated.
type Frontend struct {
	mu       sync.Mutex
	conn     *net.UnixConn
	replyAck bool
	broken   error // set when the stream may be out of step; later calls fail
}

// Dial connects to a back-end listening on the unix socket at path.
func Dial(path string) (*Frontend, error) {
	conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("connect to vhost-user back-end: %w", err)
	}
	return NewFrontend(conn), nil
}

// NewFrontend uses conn, already connected to a back-end.
func NewFrontend(conn *net.UnixConn) *Frontend {
	return &Frontend{conn: conn}
}

// Close closes the connection; the back-end stops its queues.
func (f *Frontend) Close() error {
	return f.conn.Close()
}

// call sends one request. If withReply, the request has a reply payload in
// the protocol and call returns it; otherwise, with REPLY_ACK negotiated,
// it asks for and checks the acknowledgement.
func (f *Frontend) call(req Request, payload []byte, fds []int, withReply bool) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.broken != nil {
		return nil, fmt.Errorf("vhost-user %s: connection unusable after an earlier failure: %w", req, f.broken)
	}
	p, _, err := f.exchange(req, payload, fds, withReply, 0)
	if err != nil && !errors.Is(err, errRefused) {
		f.broken = err
	}
	return p, err
}

// callFDs is call for a request whose reply carries up to maxFDs file
// descriptors, which the caller then owns.
func (f *Frontend) callFDs(req Request, payload []byte, maxFDs int) ([]byte, []int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.broken != nil {
		return nil, nil, fmt.Errorf("vhost-user %s: connection unusable after an earlier failure: %w", req, f.broken)
	}
	p, fds, err := f.exchange(req, payload, nil, true, maxFDs)
	if err != nil && !errors.Is(err, errRefused) {
		f.broken = err
	}
	return p, fds, err
}

// errRefused marks a negative acknowledgement: the session stays in step.
var errRefused = errors.New("back-end refused the request")

// errConfigRefused marks a GET_CONFIG reply of size 0: the back-end would
// not read that part of its config space; the session stays in step.
var errConfigRefused = errors.New("back-end refused to read")

func (f *Frontend) exchange(req Request, payload []byte, fds []int, withReply bool, maxFDs int) ([]byte, []int, error) {
	ack := !withReply && f.replyAck
	flags := uint32(FlagVersion)
	if ack {
		flags |= FlagNeedReply
	}
	if err := WriteMessage(f.conn, Header{Request: req, Flags: flags}, payload, fds); err != nil {
		return nil, nil, err
	}
	if !withReply && !ack {
		return nil, nil, nil
	}
	h, p, rfds, err := ReadMessage(f.conn, maxFDs)
	if err != nil {
		return nil, nil, fmt.Errorf("vhost-user %s: reply: %w", req, err)
	}
	if h.Request != req || !h.isReply() {
		closeFDs(rfds)
		return nil, nil, fmt.Errorf("vhost-user %s: back-end answered with %s (flags %#x)", req, h.Request, h.Flags)
	}
	if ack {
		status, err := unmarshalU64(p)
		closeFDs(rfds)
		if err != nil {
			return nil, nil, fmt.Errorf("vhost-user %s: acknowledgement: %w", req, err)
		}
		if status != 0 {
			return nil, nil, fmt.Errorf("vhost-user %s: %w (status %d)", req, errRefused, status)
		}
		return nil, nil, nil
	}
	return p, rfds, nil
}

func (f *Frontend) getU64(req Request) (uint64, error) {
	p, err := f.call(req, nil, nil, true)
	if err != nil {
		return 0, err
	}
	v, err := unmarshalU64(p)
	if err != nil {
		return 0, fmt.Errorf("vhost-user %s: reply: %w", req, err)
	}
	return v, nil
}

// GetFeatures returns the back-end's virtio features, including
// FeatureProtocolFeatures if it speaks protocol features.
func (f *Frontend) GetFeatures() (uint64, error) { return f.getU64(GetFeatures) }

// SetFeatures acks features. Include FeatureProtocolFeatures when offered:
// rings then start disabled until SetVringEnable.
func (f *Frontend) SetFeatures(features uint64) error {
	_, err := f.call(SetFeatures, marshalU64(features), nil, false)
	return err
}

// GetProtocolFeatures returns the back-end's protocol features; legal only
// if GetFeatures offered FeatureProtocolFeatures.
func (f *Frontend) GetProtocolFeatures() (uint64, error) { return f.getU64(GetProtocolFeatures) }

// SetProtocolFeatures acks protocol features. With ProtocolReplyAck, every
// later request without its own reply is acknowledged.
func (f *Frontend) SetProtocolFeatures(features uint64) error {
	if _, err := f.call(SetProtocolFeatures, marshalU64(features), nil, false); err != nil {
		return err
	}
	f.mu.Lock()
	f.replyAck = features&ProtocolReplyAck != 0
	f.mu.Unlock()
	return nil
}

// SetOwner starts the session.
func (f *Frontend) SetOwner() error {
	_, err := f.call(SetOwner, nil, nil, false)
	return err
}

// GetQueueNum returns how many queues the back-end supports (needs
// ProtocolMQ).
func (f *Frontend) GetQueueNum() (uint64, error) { return f.getU64(GetQueueNum) }

// SetMemTable shares guest memory: fds[i] backs regions[i] from its
// MmapOffset. The descriptors stay the caller's.
func (f *Frontend) SetMemTable(regions []MemoryRegion, fds []int) error {
	if len(regions) == 0 || len(regions) > MaxRegions {
		return fmt.Errorf("vhost-user %s: %d regions, want 1..%d", SetMemTable, len(regions), MaxRegions)
	}
	if len(fds) != len(regions) {
		return fmt.Errorf("vhost-user %s: %d regions but %d file descriptors", SetMemTable, len(regions), len(fds))
	}
	_, err := f.call(SetMemTable, MemoryTable{Regions: regions}.Marshal(), fds, false)
	return err
}

func vringIndex(req Request, i int) (uint32, error) {
	if i < 0 || i > vringIndexMask {
		return 0, fmt.Errorf("vhost-user %s: queue index %d out of range 0..%d", req, i, vringIndexMask)
	}
	return uint32(i), nil
}

func (f *Frontend) setVringState(req Request, i int, num uint32) error {
	idx, err := vringIndex(req, i)
	if err != nil {
		return err
	}
	_, err = f.call(req, VringState{Index: idx, Num: num}.Marshal(), nil, false)
	return err
}

// SetVringNum sets queue i's size.
func (f *Frontend) SetVringNum(i int, n uint16) error {
	return f.setVringState(SetVringNum, i, uint32(n))
}

// SetVringBase sets the next available index queue i processes.
func (f *Frontend) SetVringBase(i int, base uint16) error {
	return f.setVringState(SetVringBase, i, uint32(base))
}

// SetVringEnable enables or disables queue i.
func (f *Frontend) SetVringEnable(i int, on bool) error {
	var n uint32
	if on {
		n = 1
	}
	return f.setVringState(SetVringEnable, i, n)
}

// SetVringAddr sets queue i's ring addresses: front-end virtual addresses
// inside the regions of SetMemTable. a.Index is overwritten by i.
func (f *Frontend) SetVringAddr(i int, a VringAddr) error {
	idx, err := vringIndex(SetVringAddr, i)
	if err != nil {
		return err
	}
	a.Index = idx
	_, err = f.call(SetVringAddr, a.Marshal(), nil, false)
	return err
}

// GetVringBase stops queue i and returns its next available index, which
// SetVringBase restores. The back-end drops the queue's kick and call.
func (f *Frontend) GetVringBase(i int) (uint16, error) {
	idx, err := vringIndex(GetVringBase, i)
	if err != nil {
		return 0, err
	}
	p, err := f.call(GetVringBase, VringState{Index: idx}.Marshal(), nil, true)
	if err != nil {
		return 0, err
	}
	var s VringState
	if err := s.Unmarshal(p); err != nil {
		return 0, fmt.Errorf("vhost-user %s: reply: %w", GetVringBase, err)
	}
	if s.Index != idx || s.Num > 0xffff {
		return 0, fmt.Errorf("vhost-user %s: reply for queue %d with base %d, asked for queue %d", GetVringBase, s.Index, s.Num, idx)
	}
	return uint16(s.Num), nil
}

func (f *Frontend) setVringFD(req Request, i int, fd int) error {
	idx, err := vringIndex(req, i)
	if err != nil {
		return err
	}
	u := uint64(idx)
	var fds []int
	if fd < 0 {
		u |= vringNoFD
	} else {
		fds = []int{fd}
	}
	_, err = f.call(req, marshalU64(u), fds, false)
	return err
}

// SetVringKick gives queue i's kick eventfd (the driver's doorbell, e.g. a
// KVM ioeventfd); fd < 0 sends none. The descriptor stays the caller's.
func (f *Frontend) SetVringKick(i int, fd int) error { return f.setVringFD(SetVringKick, i, fd) }

// SetVringCall gives queue i's call eventfd (e.g. a KVM irqfd).
func (f *Frontend) SetVringCall(i int, fd int) error { return f.setVringFD(SetVringCall, i, fd) }

// SetVringErr gives queue i's error eventfd.
func (f *Frontend) SetVringErr(i int, fd int) error { return f.setVringFD(SetVringErr, i, fd) }

// VringSetup is what SetupVring sends for one queue.
type VringSetup struct {
	Size uint16
	Base uint16    // the next available index to process
	Addr VringAddr // front-end addresses (see SetVringAddr); Index is ignored
	Kick int       // eventfds; they stay the caller's
	Call int
	// Enable sends SET_VRING_ENABLE, which a ring needs once
	// PROTOCOL_FEATURES is acked (vhost-user.rst "Ring states").
	Enable bool
}

// SetupVring sets up queue i and starts it: SET_VRING_NUM, _BASE, _ADDR,
// _KICK, _CALL and, with s.Enable, _ENABLE, in that order. It stops at the
// first message that fails or that the back-end refuses, and says which:
// going on would enable a half-configured ring (cloud-hypervisor's
// vu_common_ctrl.rs stops there too).
func (f *Frontend) SetupVring(i int, s VringSetup) error {
	steps := []struct {
		req  Request
		send func() error
	}{
		{SetVringNum, func() error { return f.SetVringNum(i, s.Size) }},
		{SetVringBase, func() error { return f.SetVringBase(i, s.Base) }},
		{SetVringAddr, func() error { return f.SetVringAddr(i, s.Addr) }},
		{SetVringKick, func() error { return f.SetVringKick(i, s.Kick) }},
		{SetVringCall, func() error { return f.SetVringCall(i, s.Call) }},
		{SetVringEnable, func() error { return f.SetVringEnable(i, true) }},
	}
	if !s.Enable {
		steps = steps[:len(steps)-1]
	}
	for _, st := range steps {
		if err := st.send(); err != nil {
			return fmt.Errorf("set up queue %d: stopped at %s: %w", i, st.req, err)
		}
	}
	return nil
}

// GetConfig reads size bytes of the device's config space at off (needs
// ProtocolConfig).
func (f *Frontend) GetConfig(off, size uint32) ([]byte, error) {
	if size == 0 || size > MaxConfigSize {
		return nil, fmt.Errorf("vhost-user %s: size %d, want 1..%d", GetConfig, size, MaxConfigSize)
	}
	req := ConfigSpace{Offset: off, Flags: ConfigFlagWritable, Payload: make([]byte, size)}
	p, err := f.call(GetConfig, req.Marshal(), nil, true)
	if err != nil {
		return nil, err
	}
	// A back-end that cannot read says so with an empty payload
	// (vhost-user.rst, GET_CONFIG; libvhost-user), or an empty access.
	var c ConfigSpace
	if len(p) != 0 {
		if err := c.Unmarshal(p); err != nil {
			return nil, fmt.Errorf("vhost-user %s: reply: %w", GetConfig, err)
		}
	}
	if c.Size == 0 {
		return nil, fmt.Errorf("vhost-user %s: %w: %d bytes at %d", GetConfig, errConfigRefused, size, off)
	}
	if c.Size != size {
		return nil, fmt.Errorf("vhost-user %s: back-end returned %d bytes, asked for %d", GetConfig, c.Size, size)
	}
	return c.Payload, nil
}

// SetConfig writes data to the device's config space at off, as a driver
// write (needs ProtocolConfig).
func (f *Frontend) SetConfig(off uint32, data []byte) error {
	if len(data) == 0 || len(data) > MaxConfigSize {
		return fmt.Errorf("vhost-user %s: size %d, want 1..%d", SetConfig, len(data), MaxConfigSize)
	}
	_, err := f.call(SetConfig, ConfigSpace{Offset: off, Flags: ConfigFlagWritable, Payload: data}.Marshal(), nil, false)
	return err
}

// PostcopyAdvise asks the back-end for its userfaultfd (protocol feature
// PAGEFAULT); the caller owns the returned descriptor.
func (f *Frontend) PostcopyAdvise() (int, error) {
	_, fds, err := f.callFDs(PostcopyAdvise, nil, 1)
	if err != nil {
		return -1, err
	}
	if len(fds) != 1 {
		closeFDs(fds)
		return -1, fmt.Errorf("vhost-user %s: reply carries %d descriptors, want the userfaultfd", PostcopyAdvise, len(fds))
	}
	return fds[0], nil
}

// PostcopyListen has the back-end register its guest memory mappings with
// its userfaultfd; from now on SetMemTablePostcopy replaces SetMemTable.
func (f *Frontend) PostcopyListen() error {
	_, err := f.call(PostcopyListen, nil, nil, false)
	return err
}

// SetMemTablePostcopy is SET_MEM_TABLE while the back-end listens for
// faults: the reply is the table with the back-end's own address of each
// region, which its fault messages name.
func (f *Frontend) SetMemTablePostcopy(regions []MemoryRegion, fds []int) ([]MemoryRegion, error) {
	if len(regions) == 0 || len(regions) > MaxRegions || len(fds) != len(regions) {
		return nil, fmt.Errorf("vhost-user %s: %d regions with %d descriptors", SetMemTable, len(regions), len(fds))
	}
	p, err := f.call(SetMemTable, MemoryTable{Regions: regions}.Marshal(), fds, true)
	if err != nil {
		return nil, err
	}
	var t MemoryTable
	if err := t.Unmarshal(p); err != nil {
		return nil, fmt.Errorf("vhost-user %s postcopy reply: %w", SetMemTable, err)
	}
	if len(t.Regions) != len(regions) {
		return nil, fmt.Errorf("vhost-user %s postcopy reply: %d regions, sent %d", SetMemTable, len(t.Regions), len(regions))
	}
	return t.Regions, nil
}

// PostcopyEnd has the back-end stop reporting faults: every page is in.
func (f *Frontend) PostcopyEnd() error {
	p, err := f.call(PostcopyEnd, nil, nil, true)
	if err != nil {
		return err
	}
	if status, err := unmarshalU64(p); err != nil || status != 0 {
		return fmt.Errorf("vhost-user %s: status %d %v", PostcopyEnd, status, err)
	}
	return nil
}
