package vhostuser

import (
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"net"

	"github.com/sietch-vm/sietch/uffd"
	"github.com/sietch-vm/sietch/virtio"
)

// Backend serves the vhost-user protocol for one DeviceModel: the device
// process's side of the socket. It runs each queue the front-end sets up
// on a Vring.
type Backend struct {
	dev DeviceModel
	log *slog.Logger

	// Per-connection state, reset by Serve.
	features uint64 // acked, including FeatureProtocolFeatures
	protocol uint64 // acked protocol features
	mem      *guestMemory
	vrings   []ringSetup
	logMem   *dirtyLog // SET_LOG_BASE; used while FeatureLogAll is acked

	// Lazily restored memory (postcopy): the userfaultfd the process made
	// while privileged, and whether the front-end asked for faults.
	uffd      *uffd.FD
	listening bool
	replyFDs  []int // descriptors to attach to the next reply
}

// SetUserfault gives the back-end a userfaultfd for lazily restored guest
// memory; it offers PAGEFAULT and serves the postcopy messages with it.
// Call it before Serve. The Backend owns u.
func (b *Backend) SetUserfault(u *uffd.FD) { b.uffd = u }

// ringSetup is the back-end's record of one queue as the front-end set it
// up, and its Vring while it runs.
type ringSetup struct {
	size    uint16 // 0 until SET_VRING_NUM
	addr    *VringAddr
	base    uint16 // next available index to process
	kick    int    // -1 when unset
	call    int
	err     int
	enabled bool

	run *Vring // nil while stopped
}

// NewBackend returns a Backend for d. A nil log discards messages.
func NewBackend(d DeviceModel, log *slog.Logger) *Backend {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Backend{dev: d, log: log}
}

// rejectError is a failure the front-end is told about (a non-zero
// REPLY_ACK) without ending the session: the device refused a value.
type rejectError struct{ err error }

func (e *rejectError) Error() string { return e.err.Error() }
func (e *rejectError) Unwrap() error { return e.err }

func reject(format string, args ...any) error {
	return &rejectError{fmt.Errorf(format, args...)}
}

// Serve handles one front-end connection until it closes (nil) or sends a
// message that is malformed or unsupported (an error naming it). Either
// way all queues are stopped and guest memory is unmapped on return.
func (b *Backend) Serve(conn *net.UnixConn) error {
	b.reset()
	defer b.teardown()
	for {
		h, payload, fds, err := ReadMessage(conn, MaxFDs)
		if errors.Is(err, ErrClosed) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("vhost-user back-end: %w", err)
		}
		if h.isReply() {
			closeFDs(fds)
			return fmt.Errorf("vhost-user back-end: front-end sent a reply (%s) as a request", h.Request)
		}
		b.log.Debug("vhost-user request", "request", h.Request, "size", h.Size, "fds", len(fds))
		reply, err := b.handle(h.Request, payload, fds)
		var rej *rejectError
		if errors.As(err, &rej) {
			b.log.Warn("vhost-user request refused", "request", h.Request, "err", rej.err)
		} else if err != nil {
			return fmt.Errorf("vhost-user back-end: %s: %w", h.Request, err)
		}
		switch {
		case reply != nil:
			fds := b.replyFDs
			b.replyFDs = nil
			if err := WriteMessage(conn, Header{Request: h.Request, Flags: FlagVersion | FlagReply}, reply, fds); err != nil {
				return fmt.Errorf("vhost-user back-end: %w", err)
			}
		case h.Flags&FlagNeedReply != 0:
			var status uint64
			if rej != nil {
				status = 1
			}
			if err := WriteMessage(conn, Header{Request: h.Request, Flags: FlagVersion | FlagReply}, marshalU64(status), nil); err != nil {
				return fmt.Errorf("vhost-user back-end: %w", err)
			}
		}
	}
}

func (b *Backend) reset() {
	b.features, b.protocol, b.mem, b.logMem = 0, 0, nil, nil
	b.vrings = make([]ringSetup, max(b.dev.NumQueues(), 0))
	for i := range b.vrings {
		b.vrings[i] = ringSetup{kick: -1, call: -1, err: -1}
	}
}

func (b *Backend) teardown() {
	for i := range b.vrings {
		b.stop(i)
		v := &b.vrings[i]
		closeFDs([]int{v.kick, v.call, v.err})
		v.kick, v.call, v.err = -1, -1, -1
	}
	b.mem.unmap()
	b.mem = nil
	b.logMem.unmap()
	b.logMem = nil
}

// handle runs one request. A non-nil reply is sent back as the request's
// reply payload. fds are owned by handle.
func (b *Backend) handle(req Request, p []byte, fds []int) ([]byte, error) {
	switch req {
	case GetFeatures, SetFeatures, GetProtocolFeatures, SetProtocolFeatures, SetOwner, ResetOwner,
		SetVringNum, SetVringAddr, SetVringBase, GetVringBase, SetVringEnable,
		GetConfig, SetConfig, GetQueueNum, PostcopyAdvise, PostcopyListen, PostcopyEnd:
	case SetMemTable:
		if err := b.setMemTable(p, fds); err != nil {
			return nil, err
		}
		if b.listening {
			// Postcopy: the front-end needs our addresses of the regions
			// to resolve our faults (vhost-user.rst, POSTCOPY_LISTEN).
			return b.mem.table().Marshal(), nil
		}
		return nil, nil
	case SetVringKick, SetVringCall, SetVringErr:
		return nil, b.setVringFD(req, p, fds)
	case SetLogBase:
		// Front-ends wait for a reply whatever the REPLY_ACK setting
		// (QEMU reads it and ignores its payload); ours carries a u64
		// status like an acknowledgement: 0 when the log is in use.
		err := b.setLogBase(p, fds)
		var rej *rejectError
		if errors.As(err, &rej) {
			return marshalU64(1), err
		}
		return marshalU64(0), err
	default:
		closeFDs(fds)
		return nil, fmt.Errorf("unsupported request")
	}
	if len(fds) != 0 { // ReadMessage guarantees this; keep handle safe alone
		closeFDs(fds)
		return nil, fmt.Errorf("unexpected file descriptors")
	}
	switch req {
	case GetFeatures:
		if err := noPayload(p); err != nil {
			return nil, err
		}
		return marshalU64(b.dev.Features() | FeatureProtocolFeatures | FeatureLogAll), nil
	case SetFeatures:
		return nil, b.setFeatures(p)
	case GetProtocolFeatures:
		if err := noPayload(p); err != nil {
			return nil, err
		}
		return marshalU64(b.offeredProtocol()), nil
	case SetProtocolFeatures:
		v, err := unmarshalU64(p)
		if err != nil {
			return nil, err
		}
		if extra := v &^ b.offeredProtocol(); extra != 0 {
			return nil, fmt.Errorf("protocol features %#x were not offered", extra)
		}
		b.protocol = v
		return nil, nil
	case SetOwner, ResetOwner:
		// RESET_OWNER is deprecated; vhost-user.rst recommends ignoring it.
		return nil, noPayload(p)
	case SetVringNum:
		return nil, b.setVringNum(p)
	case SetVringAddr:
		return nil, b.setVringAddr(p)
	case SetVringBase:
		return nil, b.setVringBase(p)
	case GetVringBase:
		return b.getVringBase(p)
	case SetVringEnable:
		return nil, b.setVringEnable(p)
	case GetConfig:
		return b.getConfig(p)
	case SetConfig:
		return nil, b.setConfig(p)
	case GetQueueNum:
		if err := noPayload(p); err != nil {
			return nil, err
		}
		return marshalU64(uint64(len(b.vrings))), nil
	case PostcopyAdvise, PostcopyListen, PostcopyEnd:
		return b.postcopy(req, p)
	}
	return nil, fmt.Errorf("unsupported request") // unreachable: filtered above
}

func noPayload(p []byte) error {
	if len(p) != 0 {
		return fmt.Errorf("payload is %d bytes, want none", len(p))
	}
	return nil
}

func (b *Backend) offeredProtocol() uint64 {
	f := (b.dev.ProtocolFeatures() | alwaysOffered) & backendProtocolFeatures
	if b.uffd == nil {
		f &^= ProtocolPagefault
	}
	return f
}

// postcopy serves the three postcopy messages (vhost-user.rst "Migration"):
// ADVISE hands the front-end our userfaultfd, LISTEN registers our guest
// memory mappings with it (and makes SET_MEM_TABLE reply with their
// addresses), END unregisters them once every page is in.
func (b *Backend) postcopy(req Request, p []byte) ([]byte, error) {
	if b.protocol&ProtocolPagefault == 0 || b.uffd == nil {
		return nil, fmt.Errorf("PAGEFAULT protocol feature not negotiated")
	}
	if err := noPayload(p); err != nil {
		return nil, err
	}
	switch req {
	case PostcopyAdvise:
		b.replyFDs = []int{b.uffd.Fd()} // sent as a copy; we keep ours
		return []byte{}, nil
	case PostcopyListen:
		b.listening = true
		if b.mem != nil {
			return nil, b.mem.registerUserfault(b.uffd)
		}
		return nil, nil
	default: // PostcopyEnd
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
}

func (b *Backend) setFeatures(p []byte) error {
	v, err := unmarshalU64(p)
	if err != nil {
		return err
	}
	if extra := v &^ (b.dev.Features() | FeatureProtocolFeatures | FeatureLogAll); extra != 0 {
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

func (b *Backend) setMemTable(p []byte, fds []int) error {
	var t MemoryTable
	if err := t.Unmarshal(p); err != nil {
		closeFDs(fds)
		return err
	}
	if err := checkRegions(t.Regions, len(fds)); err != nil {
		closeFDs(fds)
		return err
	}
	// Queues hold the old mapping: stop them, swap, restart.
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
		return mapErr
	}
	if err != nil {
		return err
	}
	b.log.Info("vhost-user memory table set", "regions", len(t.Regions))
	return nil
}

// restartAll stops the running queues, applies change, and starts them
// again, so no device goroutine sees a half-made change.
func (b *Backend) restartAll(change func()) error {
	var running []int
	for i := range b.vrings {
		if b.vrings[i].run != nil {
			running = append(running, i)
			b.stop(i)
		}
	}
	change()
	for _, i := range running {
		if err := b.tryStart(i); err != nil {
			return err
		}
	}
	return nil
}

// setLogBase maps the dirty log the front-end shares (LOG_SHMFD).
func (b *Backend) setLogBase(p []byte, fds []int) error {
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

// vringState decodes a vring state payload and checks its index.
func (b *Backend) vringState(p []byte) (VringState, error) {
	var s VringState
	if err := s.Unmarshal(p); err != nil {
		return s, err
	}
	if int64(s.Index) >= int64(len(b.vrings)) {
		return s, fmt.Errorf("queue index %d out of range (device has %d queues)", s.Index, len(b.vrings))
	}
	return s, nil
}

func (b *Backend) setVringNum(p []byte) error {
	s, err := b.vringState(p)
	if err != nil {
		return err
	}
	// Split rings have a power-of-two size (virtio 1.2 §2.7).
	if s.Num == 0 || s.Num > uint32(b.dev.MaxQueueSize()) || bits.OnesCount32(s.Num) != 1 {
		return fmt.Errorf("queue %d size %d is not a power of two in 1..%d", s.Index, s.Num, b.dev.MaxQueueSize())
	}
	return b.update(int(s.Index), func(v *ringSetup) { v.size = uint16(s.Num) })
}

func (b *Backend) setVringAddr(p []byte) error {
	var a VringAddr
	if err := a.Unmarshal(p); err != nil {
		return err
	}
	if int64(a.Index) >= int64(len(b.vrings)) {
		return fmt.Errorf("queue index %d out of range (device has %d queues)", a.Index, len(b.vrings))
	}
	if b.mem == nil {
		return fmt.Errorf("queue %d addresses set before SET_MEM_TABLE", a.Index)
	}
	if _, _, _, err := b.ringAddrs(a); err != nil {
		return fmt.Errorf("queue %d: %w", a.Index, err)
	}
	return b.update(int(a.Index), func(v *ringSetup) { v.addr = &a })
}

// ringAddrs translates the ring's front-end addresses to guest-physical.
func (b *Backend) ringAddrs(a VringAddr) (desc, avail, used uint64, err error) {
	for _, x := range []struct {
		name string
		va   uint64
		gpa  *uint64
	}{{"descriptor table", a.Desc, &desc}, {"available ring", a.Avail, &avail}, {"used ring", a.Used, &used}} {
		g, ok := b.mem.guestAddr(x.va)
		if !ok {
			return 0, 0, 0, fmt.Errorf("%s address %#x is in no memory region", x.name, x.va)
		}
		*x.gpa = g
	}
	return desc, avail, used, nil
}

func (b *Backend) setVringBase(p []byte) error {
	s, err := b.vringState(p)
	if err != nil {
		return err
	}
	if s.Num > 0xffff {
		return fmt.Errorf("queue %d base %d does not fit 16 bits", s.Index, s.Num)
	}
	return b.update(int(s.Index), func(v *ringSetup) { v.base = uint16(s.Num) })
}

// getVringBase stops the ring and reports where it stopped. Like
// libvhost-user it also drops kick and call: the ring starts again only
// after the front-end sends them anew (vhost-user.rst "Ring states").
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

func (b *Backend) setVringFD(req Request, p []byte, fds []int) error {
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
		slot := map[Request]*int{SetVringKick: &v.kick, SetVringCall: &v.call, SetVringErr: &v.err}[req]
		if *slot >= 0 {
			closeFDs([]int{*slot})
		}
		*slot = fd
	})
}

func (b *Backend) setVringEnable(p []byte) error {
	s, err := b.vringState(p)
	if err != nil {
		return err
	}
	if s.Num > 1 {
		return fmt.Errorf("queue %d enable value %d is not 0 or 1", s.Index, s.Num)
	}
	return b.update(int(s.Index), func(v *ringSetup) { v.enabled = s.Num == 1 })
}

func (b *Backend) getConfig(p []byte) ([]byte, error) {
	if b.protocol&ProtocolConfig == 0 {
		return nil, fmt.Errorf("CONFIG protocol feature not negotiated")
	}
	var c ConfigSpace
	if err := c.Unmarshal(p); err != nil {
		return nil, err
	}
	if uint64(c.Offset)+uint64(c.Size) > MaxConfigSize {
		return nil, fmt.Errorf("config read of %d bytes at %d is beyond %d", c.Size, c.Offset, MaxConfigSize)
	}
	c.Payload = make([]byte, c.Size)
	b.dev.ReadConfig(c.Offset, c.Payload)
	return c.Marshal(), nil
}

func (b *Backend) setConfig(p []byte) error {
	if b.protocol&ProtocolConfig == 0 {
		return fmt.Errorf("CONFIG protocol feature not negotiated")
	}
	var c ConfigSpace
	if err := c.Unmarshal(p); err != nil {
		return err
	}
	if uint64(c.Offset)+uint64(c.Size) > MaxConfigSize {
		return fmt.Errorf("config write of %d bytes at %d is beyond %d", c.Size, c.Offset, MaxConfigSize)
	}
	if err := b.dev.WriteConfig(c.Offset, c.Payload); err != nil {
		return reject("device refused config write of %d bytes at %d: %w", c.Size, c.Offset, err)
	}
	return nil
}

// update changes queue i's setup. A running queue is stopped first and
// restarted afterwards if it is still complete, so the device always sees
// a consistent configuration.
func (b *Backend) update(i int, change func(*ringSetup)) error {
	b.stop(i)
	change(&b.vrings[i])
	return b.tryStart(i)
}

// tryStart starts queue i if everything it needs is there.
func (b *Backend) tryStart(i int) error {
	v := &b.vrings[i]
	if v.run != nil || !v.enabled || v.size == 0 || v.addr == nil || v.kick < 0 || v.call < 0 || b.mem == nil {
		return nil
	}
	desc, avail, used, err := b.ringAddrs(*v.addr)
	if err != nil {
		return fmt.Errorf("queue %d: %w", i, err)
	}
	q, err := virtio.NewQueue(b.mem, virtio.QueueConfig{
		Index: i, Size: v.size, Desc: desc, Avail: avail, Used: used,
		EventIdx: b.features&virtio.FeatureEventIdx != 0,
	})
	if err != nil {
		return reject("%w", err)
	}
	if b.features&FeatureLogAll != 0 && b.logMem != nil {
		q.SetDirtyLog(b.logMem.log)
	}
	// NewQueue took the used index from guest memory (virtio 1.2 §2.7.8),
	// where the last run left it; the available side resumes from the base.
	q.SetState(virtio.QueueState{NextAvail: v.base, NextUsed: q.State().NextUsed})
	// The Vring gets handles of its own, so that closing them stops only
	// it, not the ring's long-lived descriptors.
	kick, err := dupEventFD(v.kick, fmt.Sprintf("queue %d kick", i))
	if err != nil {
		return err
	}
	call, err := dupEventFD(v.call, fmt.Sprintf("queue %d call", i))
	if err != nil {
		kick.Close()
		return err
	}
	run, err := startVring(b.dev, i, q, b.mem, kick, call, b.log)
	if err != nil {
		return reject("device refused to start queue %d: %w", i, err)
	}
	v.run = run
	b.log.Info("vhost-user queue started", "queue", i, "size", v.size, "base", v.base)
	return nil
}

// stop stops queue i if it runs and records where it stopped. It returns
// once the device no longer touches the queue or guest memory.
func (b *Backend) stop(i int) {
	v := &b.vrings[i]
	if v.run == nil {
		return
	}
	v.base = v.run.Stop().NextAvail
	v.run = nil
}
