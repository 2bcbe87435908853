package vhostuser

import (
	"errors"
	"fmt"
	"math/bits"

	"github.com/sietch-vm/sietch/virtio"
)

// handler serves one kind of front-end request. A non-nil reply is sent
// back as the request's reply payload; fds are the handler's to keep or
// close.
type handler func(b *Backend, p []byte, fds []int) (reply []byte, err error)

// handlers is the back-end's dispatch table: for each request it serves,
// the method serving it, wrapped by what the request carries. Requests not
// in it are unsupported.
var handlers = map[Request]handler{
	GetFeatures:         query((*Backend).offeredFeatures),
	SetFeatures:         setU64((*Backend).setFeatures),
	GetProtocolFeatures: query((*Backend).offeredProtocol),
	SetProtocolFeatures: setU64((*Backend).setProtocolFeatures),
	SetOwner:            noFDs((*Backend).setOwner),
	ResetOwner:          noFDs((*Backend).setOwner),
	GetQueueNum:         query((*Backend).queueNum),
	SetMemTable:         (*Backend).setMemTable,
	SetLogBase:          (*Backend).setLogBase,
	SetVringNum:         setState((*Backend).setVringNum),
	SetVringAddr:        noFDs((*Backend).setVringAddr),
	SetVringBase:        setState((*Backend).setVringBase),
	GetVringBase:        noFDs((*Backend).getVringBase),
	SetVringKick:        (*Backend).setVringKick,
	SetVringCall:        (*Backend).setVringCall,
	SetVringErr:         (*Backend).setVringErr,
	SetVringEnable:      setState((*Backend).setVringEnable),
	GetConfig:           noFDs((*Backend).getConfig),
	SetConfig:           noFDs((*Backend).setConfig),
	PostcopyAdvise:      noFDs((*Backend).postcopyAdvise),
	PostcopyListen:      noFDs((*Backend).postcopyListen),
	PostcopyEnd:         noFDs((*Backend).postcopyEnd),
}

// noFDs wraps the handler of a request that carries no descriptors.
// ReadMessage already refuses any; this keeps the table safe on its own.
func noFDs(h func(b *Backend, p []byte) ([]byte, error)) handler {
	return func(b *Backend, p []byte, fds []int) ([]byte, error) {
		if len(fds) != 0 {
			closeFDs(fds)
			return nil, fmt.Errorf("unexpected file descriptors")
		}
		return h(b, p)
	}
}

// query wraps a request without payload answered with a u64.
func query(get func(b *Backend) uint64) handler {
	return noFDs(func(b *Backend, p []byte) ([]byte, error) {
		if err := noPayload(p); err != nil {
			return nil, err
		}
		return marshalU64(get(b)), nil
	})
}

// setU64 wraps a request carrying a u64, without reply.
func setU64(set func(b *Backend, v uint64) error) handler {
	return noFDs(func(b *Backend, p []byte) ([]byte, error) {
		v, err := unmarshalU64(p)
		if err != nil {
			return nil, err
		}
		return nil, set(b, v)
	})
}

// setState wraps a request carrying the vring state of an existing queue,
// without reply.
func setState(set func(b *Backend, s VringState) error) handler {
	return noFDs(func(b *Backend, p []byte) ([]byte, error) {
		s, err := b.vringState(p)
		if err != nil {
			return nil, err
		}
		return nil, set(b, s)
	})
}

func noPayload(p []byte) error {
	if len(p) != 0 {
		return fmt.Errorf("payload is %d bytes, want none", len(p))
	}
	return nil
}

// offeredFeatures answers GET_FEATURES.
func (b *Backend) offeredFeatures() uint64 {
	return b.dev.Features() | FeatureProtocolFeatures | FeatureLogAll
}

// setFeatures serves SET_FEATURES.
func (b *Backend) setFeatures(v uint64) error {
	if extra := v &^ b.offeredFeatures(); extra != 0 {
		return fmt.Errorf("features %#x were not offered", extra)
	}
	if b.features != 0 && v^b.features == FeatureLogAll {
		// Only logging switches on or off (a front-end starting or ending
		// dirty tracking): queues restart with or without the log.
		return b.restartAll(func() { b.features = v })
	}
	acked := v &^ (FeatureProtocolFeatures | FeatureLogAll)
	// What a foreign front-end acks is worth seeing when debugging interop.
	b.log.Debug("virtio features acked", "features", fmt.Sprintf("%#x", acked),
		"version1", acked&virtio.FeatureVersion1 != 0)
	if err := b.dev.SetFeatures(acked); err != nil {
		return reject("device refused features %#x: %w", v, err)
	}
	b.features = v
	// Without protocol features rings are enabled from the start
	// (vhost-user.rst "Ring states").
	if v&FeatureProtocolFeatures == 0 {
		for i := range b.vrings {
			if err := b.update(i, func(v *ringSetup) { v.enabled = true }); err != nil {
				return err
			}
		}
	}
	return nil
}

// offeredProtocol answers GET_PROTOCOL_FEATURES.
func (b *Backend) offeredProtocol() uint64 {
	f := (b.dev.ProtocolFeatures() | alwaysOffered) & backendProtocolFeatures
	if b.uffd == nil {
		f &^= ProtocolPagefault
	}
	return f
}

// setProtocolFeatures serves SET_PROTOCOL_FEATURES.
func (b *Backend) setProtocolFeatures(v uint64) error {
	if extra := v &^ b.offeredProtocol(); extra != 0 {
		return fmt.Errorf("protocol features %#x were not offered", extra)
	}
	b.protocol = v
	return nil
}

// setOwner serves SET_OWNER, and RESET_OWNER, which is deprecated:
// vhost-user.rst recommends ignoring it.
func (b *Backend) setOwner(p []byte) ([]byte, error) {
	return nil, noPayload(p)
}

// queueNum answers GET_QUEUE_NUM.
func (b *Backend) queueNum() uint64 { return uint64(len(b.vrings)) }

// setMemTable serves SET_MEM_TABLE: it maps guest memory, swapping it
// under stopped queues.
func (b *Backend) setMemTable(p []byte, fds []int) ([]byte, error) {
	var t MemoryTable
	if err := t.Unmarshal(p); err != nil {
		closeFDs(fds)
		return nil, err
	}
	if err := checkRegions(t.Regions, len(fds)); err != nil {
		closeFDs(fds)
		return nil, err
	}
	var mapErr error
	err := b.restartAll(func() {
		mem, err := mapMemory(t.Regions, fds)
		fds = nil
		if err != nil {
			mapErr = err
			return
		}
		b.mem.unmap()
		b.mem = mem
		if b.listening {
			mapErr = mem.registerUserfault(b.uffd)
		}
	})
	closeFDs(fds)
	if mapErr != nil {
		return nil, mapErr
	}
	if err != nil {
		return nil, err
	}
	b.log.Info("vhost-user memory table set", "regions", len(t.Regions))
	if b.listening {
		// Postcopy: the front-end needs our addresses of the regions
		// to resolve our faults (vhost-user.rst, POSTCOPY_LISTEN).
		return b.mem.table().Marshal(), nil
	}
	return nil, nil
}

// setLogBase serves SET_LOG_BASE: it maps the dirty log the front-end
// shares (LOG_SHMFD). Front-ends wait for a reply whatever the REPLY_ACK
// setting (QEMU reads it and ignores its payload); ours carries a u64
// status like an acknowledgement: 0 when the log is in use.
func (b *Backend) setLogBase(p []byte, fds []int) ([]byte, error) {
	err := b.mapLogBase(p, fds)
	var rej *rejectError
	if errors.As(err, &rej) {
		return marshalU64(1), err
	}
	return marshalU64(0), err
}

func (b *Backend) mapLogBase(p []byte, fds []int) error {
	if b.protocol&ProtocolLogSHMFD == 0 {
		closeFDs(fds)
		return fmt.Errorf("LOG_SHMFD protocol feature not negotiated")
	}
	var l LogBase
	if err := l.Unmarshal(p); err != nil {
		closeFDs(fds)
		return err
	}
	if len(fds) != 1 {
		closeFDs(fds)
		return fmt.Errorf("want one log file descriptor, got %d", len(fds))
	}
	log, err := mapLog(fds[0], l)
	if err != nil {
		return reject("%w", err)
	}
	return b.restartAll(func() {
		b.log.Info("vhost-user dirty log set", "bytes", l.Size)
		b.logMem.unmap()
		b.logMem = log
	})
}

// setVringNum serves SET_VRING_NUM.
func (b *Backend) setVringNum(s VringState) error {
	// Split rings have a power-of-two size (virtio 1.2 §2.7).
	if s.Num == 0 || s.Num > uint32(b.dev.MaxQueueSize()) || bits.OnesCount32(s.Num) != 1 {
		return fmt.Errorf("queue %d size %d is not a power of two in 1..%d", s.Index, s.Num, b.dev.MaxQueueSize())
	}
	return b.update(int(s.Index), func(v *ringSetup) { v.size = uint16(s.Num) })
}

// setVringAddr serves SET_VRING_ADDR.
func (b *Backend) setVringAddr(p []byte) ([]byte, error) {
	var a VringAddr
	if err := a.Unmarshal(p); err != nil {
		return nil, err
	}
	if int64(a.Index) >= int64(len(b.vrings)) {
		return nil, fmt.Errorf("queue index %d out of range (device has %d queues)", a.Index, len(b.vrings))
	}
	if b.mem == nil {
		return nil, fmt.Errorf("queue %d addresses set before SET_MEM_TABLE", a.Index)
	}
	if _, _, _, err := b.ringAddrs(a); err != nil {
		return nil, fmt.Errorf("queue %d: %w", a.Index, err)
	}
	return nil, b.update(int(a.Index), func(v *ringSetup) { v.addr = &a })
}

// setVringBase serves SET_VRING_BASE.
func (b *Backend) setVringBase(s VringState) error {
	if s.Num > 0xffff {
		return fmt.Errorf("queue %d base %d does not fit 16 bits", s.Index, s.Num)
	}
	return b.update(int(s.Index), func(v *ringSetup) { v.base = uint16(s.Num) })
}

// getVringBase serves GET_VRING_BASE: it stops the ring and reports where
// it stopped. Like libvhost-user it also drops kick and call: the ring
// starts again only after the front-end sends them anew (vhost-user.rst
// "Ring states").
func (b *Backend) getVringBase(p []byte) ([]byte, error) {
	s, err := b.vringState(p)
	if err != nil {
		return nil, err
	}
	i := int(s.Index)
	b.stop(i)
	v := &b.vrings[i]
	closeFDs([]int{v.kick, v.call})
	v.kick, v.call = -1, -1
	b.log.Info("vhost-user queue stopped", "queue", i, "base", v.base)
	return VringState{Index: s.Index, Num: uint32(v.base)}.Marshal(), nil
}

// setVringKick serves SET_VRING_KICK.
func (b *Backend) setVringKick(p []byte, fds []int) ([]byte, error) {
	return nil, b.setVringFD(SetVringKick, func(v *ringSetup) *int { return &v.kick }, p, fds)
}

// setVringCall serves SET_VRING_CALL.
func (b *Backend) setVringCall(p []byte, fds []int) ([]byte, error) {
	return nil, b.setVringFD(SetVringCall, func(v *ringSetup) *int { return &v.call }, p, fds)
}

// setVringErr serves SET_VRING_ERR.
func (b *Backend) setVringErr(p []byte, fds []int) ([]byte, error) {
	return nil, b.setVringFD(SetVringErr, func(v *ringSetup) *int { return &v.err }, p, fds)
}

// setVringFD stores the descriptor of a SET_VRING_KICK, _CALL or _ERR in
// the queue's slot for it.
func (b *Backend) setVringFD(req Request, slot func(*ringSetup) *int, p []byte, fds []int) error {
	u, err := unmarshalU64(p)
	if err != nil {
		closeFDs(fds)
		return err
	}
	i := int(u & vringIndexMask)
	if i >= len(b.vrings) {
		closeFDs(fds)
		return fmt.Errorf("queue index %d out of range (device has %d queues)", i, len(b.vrings))
	}
	fd := -1
	if u&vringNoFD == 0 {
		if len(fds) != 1 {
			closeFDs(fds)
			return fmt.Errorf("queue %d: want one file descriptor, got %d", i, len(fds))
		}
		fd = fds[0]
	} else if len(fds) != 0 {
		closeFDs(fds)
		return fmt.Errorf("queue %d: file descriptor sent with the no-fd flag", i)
	}
	if fd < 0 && req != SetVringErr {
		// Polling instead of a kick or call is not implemented; the ring
		// stays stopped until a descriptor arrives.
		b.log.Warn("vhost-user queue without eventfd; it will not run", "request", req, "queue", i)
	}
	return b.update(i, func(v *ringSetup) {
		if old := slot(v); *old >= 0 {
			closeFDs([]int{*old})
		}
		*slot(v) = fd
	})
}

// setVringEnable serves SET_VRING_ENABLE.
func (b *Backend) setVringEnable(s VringState) error {
	if s.Num > 1 {
		return fmt.Errorf("queue %d enable value %d is not 0 or 1", s.Index, s.Num)
	}
	return b.update(int(s.Index), func(v *ringSetup) { v.enabled = s.Num == 1 })
}

// getConfig serves GET_CONFIG.
func (b *Backend) getConfig(p []byte) ([]byte, error) {
	c, err := b.configRequest(p, "read")
	if err != nil {
		return nil, err
	}
	c.Payload = make([]byte, c.Size)
	b.dev.ReadConfig(c.Offset, c.Payload)
	return c.Marshal(), nil
}

// setConfig serves SET_CONFIG.
func (b *Backend) setConfig(p []byte) ([]byte, error) {
	c, err := b.configRequest(p, "write")
	if err != nil {
		return nil, err
	}
	if err := b.dev.WriteConfig(c.Offset, c.Payload); err != nil {
		return nil, reject("device refused config write of %d bytes at %d: %w", c.Size, c.Offset, err)
	}
	return nil, nil
}

// configRequest decodes a config space access (op: read or write) and
// checks it stays inside the config space.
func (b *Backend) configRequest(p []byte, op string) (ConfigSpace, error) {
	var c ConfigSpace
	if b.protocol&ProtocolConfig == 0 {
		return c, fmt.Errorf("CONFIG protocol feature not negotiated")
	}
	if err := c.Unmarshal(p); err != nil {
		return c, err
	}
	if uint64(c.Offset)+uint64(c.Size) > MaxConfigSize {
		return c, fmt.Errorf("config %s of %d bytes at %d is beyond %d", op, c.Size, c.Offset, MaxConfigSize)
	}
	return c, nil
}

// The three postcopy messages (vhost-user.rst "Migration"): ADVISE hands
// the front-end our userfaultfd, LISTEN registers our guest memory
// mappings with it (and makes SET_MEM_TABLE reply with their addresses),
// END unregisters them once every page is in.

// postcopyRequest checks what every postcopy message needs.
func (b *Backend) postcopyRequest(p []byte) error {
	if b.protocol&ProtocolPagefault == 0 || b.uffd == nil {
		return fmt.Errorf("PAGEFAULT protocol feature not negotiated")
	}
	return noPayload(p)
}

// postcopyAdvise serves POSTCOPY_ADVISE.
func (b *Backend) postcopyAdvise(p []byte) ([]byte, error) {
	if err := b.postcopyRequest(p); err != nil {
		return nil, err
	}
	b.replyFDs = []int{b.uffd.Fd()} // sent as a copy; we keep ours
	return []byte{}, nil
}

// postcopyListen serves POSTCOPY_LISTEN.
func (b *Backend) postcopyListen(p []byte) ([]byte, error) {
	if err := b.postcopyRequest(p); err != nil {
		return nil, err
	}
	b.listening = true
	if b.mem != nil {
		return nil, b.mem.registerUserfault(b.uffd)
	}
	return nil, nil
}

// postcopyEnd serves POSTCOPY_END; its reply is a u64 status.
func (b *Backend) postcopyEnd(p []byte) ([]byte, error) {
	if err := b.postcopyRequest(p); err != nil {
		return nil, err
	}
	var err error
	if b.listening && b.mem != nil {
		err = b.mem.unregisterUserfault(b.uffd)
	}
	b.listening = false
	status := uint64(0)
	if err != nil {
		b.log.Warn("postcopy end", "err", err)
		status = 1
	}
	return marshalU64(status), nil
}
