package vhostuser

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sietch-vm/sietch/virtio"
)

// serve runs a Backend for d on one end of a socket pair and returns a
// Frontend on the other end plus the channel Serve's result arrives on.
func serve(t *testing.T, d DeviceModel) (*Frontend, *net.UnixConn, <-chan error) {
	t.Helper()
	fc, bc := socketPair(t)
	done := make(chan error, 1)
	go func() { done <- NewBackend(d, nil).Serve(bc) }()
	return NewFrontend(fc), fc, done
}

func serveResult(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("Serve did not return after 30s")
		return nil
	}
}

func TestFrontendBackendEcho(t *testing.T) {
	d := newEchoDevice()
	f, _, done := serve(t, d)
	ram := newGuestRAM(t, ramSize)

	feat, err := f.GetFeatures()
	if err != nil {
		t.Fatal(err)
	}
	if feat != echoFeatures|FeatureProtocolFeatures|FeatureLogAll {
		t.Fatalf("features %#x, want the device's %#x plus PROTOCOL_FEATURES and LOG_ALL", feat, echoFeatures)
	}
	feat &^= FeatureLogAll
	if err := f.SetFeatures(feat); err != nil {
		t.Fatal(err)
	}
	pf, err := f.GetProtocolFeatures() // also orders SET_FEATURES before the check below
	if err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	acked := d.acked
	d.mu.Unlock()
	if acked != echoFeatures {
		t.Errorf("device got acked features %#x, want %#x (without bit 30)", acked, echoFeatures)
	}
	if want := ProtocolMQ | ProtocolReplyAck | ProtocolConfig | ProtocolLogSHMFD; pf != want {
		t.Fatalf("protocol features %#x, want %#x (device wants all, library implements MQ, REPLY_ACK, CONFIG, LOG_SHMFD)", pf, want)
	}
	if err := f.SetProtocolFeatures(pf); err != nil {
		t.Fatal(err)
	}
	if err := f.SetOwner(); err != nil {
		t.Fatal(err)
	}
	if n, err := f.GetQueueNum(); err != nil || n != 1 {
		t.Fatalf("GetQueueNum = %d, %v; want 1", n, err)
	}

	// Config space, including a write the device refuses: the refusal is
	// reported and the session carries on.
	if cfg, err := f.GetConfig(0, 4); err != nil || string(cfg) != "ECHO" {
		t.Fatalf("GetConfig = %q, %v; want ECHO", cfg, err)
	}
	if err := f.SetConfig(4, []byte("abcd")); err != nil {
		t.Fatal(err)
	}
	if err := f.SetConfig(0, []byte("x")); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("write to read-only config: err = %v, want a refusal", err)
	}
	if cfg, err := f.GetConfig(2, 8); err != nil || string(cfg) != "HOabcd\x00\x00" {
		t.Fatalf("GetConfig after write = %q, %v", cfg, err)
	}

	if err := f.SetMemTable([]MemoryRegion{ram.region()}, []int{ram.fd}); err != nil {
		t.Fatal(err)
	}
	kick, call := newEventFD(t), newEventFD(t)
	setupRing := func(base uint16) {
		t.Helper()
		for _, err := range []error{
			f.SetVringNum(0, ringSize),
			f.SetVringBase(0, base),
			f.SetVringAddr(0, ringAddr()),
			f.SetVringKick(0, kick.Fd()),
			f.SetVringCall(0, call.Fd()),
			f.SetVringEnable(0, true),
		} {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	setupRing(0)

	request := func(head uint16, msg string) {
		t.Helper()
		in, out := uint64(0x10000+0x1000*uint64(head)), uint64(0x80000+0x1000*uint64(head))
		copy(ram.mem[in:], msg)
		before := ram.usedIdx()
		ram.post(head, buf{gpa: in, len: uint32(len(msg))}, buf{gpa: out, len: 64, write: true})
		if err := kick.Signal(); err != nil {
			t.Fatal(err)
		}
		waitEvent(t, call, "call")
		if got := ram.usedIdx(); got != before+1 {
			t.Fatalf("used idx %d, want %d", got, before+1)
		}
		id, n := ram.usedElem(before)
		if id != uint32(head) || n != uint32(len(msg)) {
			t.Fatalf("used element (id %d, len %d), want (%d, %d)", id, n, head, len(msg))
		}
		if got, want := string(ram.mem[out:out+uint64(n)]), strings.ToUpper(msg); got != want {
			t.Fatalf("device wrote %q, want %q", got, want)
		}
	}
	request(0, "hello")
	request(2, "vhost-user")

	base, err := f.GetVringBase(0)
	if err != nil {
		t.Fatal(err)
	}
	if base != 2 {
		t.Fatalf("GetVringBase = %d, want 2 (two chains consumed)", base)
	}
	d.mu.Lock()
	stops := d.stops
	d.mu.Unlock()
	if stops != 1 {
		t.Fatalf("device Stop called %d times, want 1", stops)
	}

	// Resume as after a snapshot restore: the ring runs again only once kick
	// and call are sent anew.
	setupRing(base)
	request(4, "again")
	if base, err := f.GetVringBase(0); err != nil || base != 3 {
		t.Fatalf("GetVringBase = %d, %v; want 3", base, err)
	}

	f.Close()
	if err := serveResult(t, done); err != nil {
		t.Fatalf("Serve after the front-end closed: %v, want nil", err)
	}
}

func newEventFD(t testing.TB) *EventFD {
	t.Helper()
	e, err := NewEventFD()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// TestRingsStartEnabledWithoutProtocolFeatures: a front-end that does not
// ack bit 30 never sends SET_VRING_ENABLE, so rings must run without it.
func TestRingsStartEnabledWithoutProtocolFeatures(t *testing.T) {
	d := newEchoDevice()
	f, _, done := serve(t, d)
	ram := newGuestRAM(t, ramSize)
	kick, call := newEventFD(t), newEventFD(t)
	for _, err := range []error{
		f.SetFeatures(echoFeatures &^ virtio.FeatureEventIdx),
		f.SetMemTable([]MemoryRegion{ram.region()}, []int{ram.fd}),
		f.SetVringNum(0, ringSize),
		f.SetVringAddr(0, ringAddr()),
		f.SetVringKick(0, kick.Fd()),
		f.SetVringCall(0, call.Fd()),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	copy(ram.mem[0x10000:], "abc")
	ram.post(0, buf{gpa: 0x10000, len: 3}, buf{gpa: 0x20000, len: 3, write: true})
	kick.Signal()
	waitEvent(t, call, "call")
	if got := string(ram.mem[0x20000:0x20003]); got != "ABC" {
		t.Fatalf("device wrote %q, want ABC", got)
	}
	f.Close()
	if err := serveResult(t, done); err != nil {
		t.Fatal(err)
	}
}

func TestRingDisabledUntilEnable(t *testing.T) {
	d := newEchoDevice()
	f, _, done := serve(t, d)
	ram := newGuestRAM(t, ramSize)
	kick, call := newEventFD(t), newEventFD(t)
	for _, err := range []error{
		f.SetFeatures(echoFeatures | FeatureProtocolFeatures),
		f.SetMemTable([]MemoryRegion{ram.region()}, []int{ram.fd}),
		f.SetVringNum(0, ringSize),
		f.SetVringAddr(0, ringAddr()),
		f.SetVringKick(0, kick.Fd()),
		f.SetVringCall(0, call.Fd()),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	// GET_QUEUE_NUM round-trips after every message above, so if the ring
	// had started the device would already have been asked to.
	if _, err := f.GetQueueNum(); err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	started := len(d.runners)
	d.mu.Unlock()
	if started != 0 {
		t.Fatal("ring started before SET_VRING_ENABLE although PROTOCOL_FEATURES was acked")
	}
	if err := f.SetVringEnable(0, true); err != nil {
		t.Fatal(err)
	}
	if _, err := f.GetQueueNum(); err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	started = len(d.runners)
	d.mu.Unlock()
	if started != 1 {
		t.Fatal("ring did not start on SET_VRING_ENABLE")
	}
	f.Close()
	if err := serveResult(t, done); err != nil {
		t.Fatal(err)
	}
}

// rawMsg builds a message whose header size may lie about its payload.
func rawMsg(req Request, flags, size uint32, payload []byte) []byte {
	b := make([]byte, HeaderSize, HeaderSize+len(payload))
	binary.NativeEndian.PutUint32(b[0:], uint32(req))
	binary.NativeEndian.PutUint32(b[4:], flags)
	binary.NativeEndian.PutUint32(b[8:], size)
	return append(b, payload...)
}

func u64(v uint64) []byte { return marshalU64(v) }

func TestServeRejectsMalformed(t *testing.T) {
	ram := newGuestRAM(t, ramSize)
	small := newGuestRAM(t, 4096)
	region := ram.region()
	memTable := func(rs ...MemoryRegion) []byte { return MemoryTable{Regions: rs}.Marshal() }
	withMem := func(f *Frontend) error { return f.SetMemTable([]MemoryRegion{region}, []int{ram.fd}) }
	shifted := region
	shifted.GuestPhysAddr, shifted.UserspaceAddr = ramSize/2, fakeVA+ramSize

	tests := []struct {
		name  string
		setup func(*Frontend) error // before the bad message, through the API
		msg   []byte
		fds   []int
		want  string
	}{
		{name: "bad version", msg: rawMsg(GetFeatures, 2, 0, nil), want: "protocol version 2"},
		{name: "reply as request", msg: rawMsg(GetFeatures, FlagVersion|FlagReply, 0, nil), want: "sent a reply"},
		{name: "oversized payload", msg: rawMsg(SetConfig, FlagVersion, 1<<20, nil), want: "exceeds"},
		{name: "short vring state", msg: rawMsg(SetVringNum, FlagVersion, 4, []byte{0, 0, 0, 0}), want: "SET_VRING_NUM: vring state payload is 4 bytes"},
		{name: "payload on GET_FEATURES", msg: rawMsg(GetFeatures, FlagVersion, 8, u64(0)), want: "GET_FEATURES: payload is 8 bytes"},
		{name: "unknown request", msg: rawMsg(99, FlagVersion, 0, nil), want: "request(99): unsupported request"},
		{name: "unsupported request", msg: rawMsg(SetLogFD, FlagVersion, 0, nil), fds: []int{ram.fd}, want: "SET_LOG_FD: unsupported"},
		{name: "log base without LOG_SHMFD", msg: rawMsg(SetLogBase, FlagVersion, 16, make([]byte, 16)), fds: []int{ram.fd}, want: "LOG_SHMFD protocol feature not negotiated"},
		{name: "log base payload size", setup: func(f *Frontend) error { return f.SetProtocolFeatures(ProtocolLogSHMFD) },
			msg: rawMsg(SetLogBase, FlagVersion, 8, make([]byte, 8)), fds: []int{ram.fd}, want: "log base payload is 8 bytes"},
		{name: "kick without fd", msg: rawMsg(SetVringKick, FlagVersion, 8, u64(0)), want: "SET_VRING_KICK: got 0 file descriptors, want 1"},
		{name: "fd with no-fd flag", msg: rawMsg(SetVringCall, FlagVersion, 8, u64(vringNoFD)), fds: []int{ram.fd}, want: "got 1 file descriptors, want 0"},
		{name: "fd on a request without", msg: rawMsg(SetOwner, FlagVersion, 0, nil), fds: []int{ram.fd}, want: "SET_OWNER: got 1 file descriptors, want 0"},
		{name: "kick index out of range", msg: rawMsg(SetVringKick, FlagVersion, 8, u64(3|vringNoFD)), want: "queue index 3 out of range"},
		{name: "vring num index out of range", msg: rawMsg(SetVringNum, FlagVersion, 8, VringState{Index: 1, Num: 8}.Marshal()), want: "queue index 1 out of range"},
		{name: "vring size not power of two", msg: rawMsg(SetVringNum, FlagVersion, 8, VringState{Num: 6}.Marshal()), want: "not a power of two"},
		{name: "vring size above max", msg: rawMsg(SetVringNum, FlagVersion, 8, VringState{Num: 512}.Marshal()), want: "not a power of two in 1..256"},
		{name: "vring base above 16 bits", msg: rawMsg(SetVringBase, FlagVersion, 8, VringState{Num: 1 << 16}.Marshal()), want: "does not fit"},
		{name: "enable not 0 or 1", msg: rawMsg(SetVringEnable, FlagVersion, 8, VringState{Num: 2}.Marshal()), want: "not 0 or 1"},
		{name: "too many regions", msg: rawMsg(SetMemTable, FlagVersion, 8, []byte{9, 0, 0, 0, 0, 0, 0, 0}), want: "9 regions, at most 8"},
		{name: "no regions", msg: rawMsg(SetMemTable, FlagVersion, 8, make([]byte, 8)), want: "no regions"},
		{name: "region count and size disagree", msg: rawMsg(SetMemTable, FlagVersion, 8, []byte{1, 0, 0, 0, 0, 0, 0, 0}), fds: []int{ram.fd}, want: "want 40"},
		{name: "zero-size region", msg: func() []byte {
			r := region
			r.MemorySize = 0
			p := memTable(r)
			return rawMsg(SetMemTable, FlagVersion, uint32(len(p)), p)
		}(), fds: []int{ram.fd}, want: "zero size"},
		{name: "overlapping regions", msg: func() []byte {
			p := memTable(region, MemoryRegion{GuestPhysAddr: 0x1000, MemorySize: 0x1000, UserspaceAddr: 1 << 40})
			return rawMsg(SetMemTable, FlagVersion, uint32(len(p)), p)
		}(), fds: []int{ram.fd, ram.fd}, want: "overlap in guest-physical space"},
		{name: "regions overlapping in front-end space", msg: func() []byte {
			p := memTable(MemoryRegion{GuestPhysAddr: 0, MemorySize: 0x1000, UserspaceAddr: fakeVA},
				MemoryRegion{GuestPhysAddr: 0x10000, MemorySize: 0x1000, UserspaceAddr: fakeVA + 0x800})
			return rawMsg(SetMemTable, FlagVersion, uint32(len(p)), p)
		}(), fds: []int{ram.fd, ram.fd}, want: "overlap in front-end address space"},
		{name: "fewer fds than regions", msg: func() []byte {
			p := memTable(region, MemoryRegion{GuestPhysAddr: 1 << 30, MemorySize: 0x1000, UserspaceAddr: 1 << 40})
			return rawMsg(SetMemTable, FlagVersion, uint32(len(p)), p)
		}(), fds: []int{ram.fd}, want: "got 1 file descriptors, want 2"},
		{name: "region beyond its file", msg: func() []byte {
			p := memTable(region) // 1 MiB region on a 4 KiB memfd
			return rawMsg(SetMemTable, FlagVersion, uint32(len(p)), p)
		}(), fds: []int{small.fd}, want: "backing file is 4096 bytes"},
		{name: "vring addr before mem table", msg: rawMsg(SetVringAddr, FlagVersion, 40, ringAddr().Marshal()), want: "before SET_MEM_TABLE"},
		{name: "vring addr in no region", setup: withMem, msg: func() []byte {
			a := ringAddr()
			a.Used = 0x1234 // a guest-physical address, not a front-end one
			return rawMsg(SetVringAddr, FlagVersion, 40, a.Marshal())
		}(), want: "used ring address 0x1234 is in no memory region"},
		{name: "vring addr index out of range", setup: withMem, msg: func() []byte {
			a := ringAddr()
			a.Index = 7
			return rawMsg(SetVringAddr, FlagVersion, 40, a.Marshal())
		}(), want: "queue index 7 out of range"},
		{name: "features not offered", msg: rawMsg(SetFeatures, FlagVersion, 8, u64(1<<5)), want: "features 0x20 were not offered"},
		{name: "protocol features not offered", msg: rawMsg(SetProtocolFeatures, FlagVersion, 8, u64(ProtocolInflightSHMFD)), want: "protocol features 0x1000 were not offered"},
		{name: "config without CONFIG", msg: func() []byte {
			p := ConfigSpace{Payload: make([]byte, 4)}.Marshal()
			return rawMsg(GetConfig, FlagVersion, uint32(len(p)), p)
		}(), want: "CONFIG protocol feature not negotiated"},
		{name: "config size mismatch", setup: func(f *Frontend) error { return f.SetProtocolFeatures(ProtocolConfig) }, msg: func() []byte {
			p := ConfigSpace{Payload: make([]byte, 4)}.Marshal()
			binary.NativeEndian.PutUint32(p[4:], 8)
			return rawMsg(GetConfig, FlagVersion, uint32(len(p)), p)
		}(), want: "says 8 bytes but carries 4"},
		{name: "config beyond max", setup: func(f *Frontend) error { return f.SetProtocolFeatures(ProtocolConfig) }, msg: func() []byte {
			p := ConfigSpace{Offset: 250, Payload: make([]byte, 8)}.Marshal()
			return rawMsg(GetConfig, FlagVersion, uint32(len(p)), p)
		}(), want: "beyond 256"},
		{name: "truncated payload", msg: rawMsg(SetFeatures, FlagVersion, 8, []byte{1, 2}), want: "unexpected EOF"},
		{name: "truncated header", msg: rawMsg(SetFeatures, FlagVersion, 8, nil)[:7], want: "read vhost-user header"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, conn, done := serve(t, newEchoDevice())
			if tt.setup != nil {
				if err := tt.setup(f); err != nil {
					t.Fatalf("setup: %v", err)
				}
			}
			var oob []byte
			if len(tt.fds) > 0 {
				oob = unixRights(tt.fds)
			}
			if _, _, err := conn.WriteMsgUnix(tt.msg, oob, nil); err != nil {
				t.Fatal(err)
			}
			conn.CloseWrite()
			err := serveResult(t, done)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Serve = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestFrontendBrokenPeer: a back-end that hangs up or answers nonsense
// yields errors naming the request, and the Frontend stays failed.
func TestFrontendBrokenPeer(t *testing.T) {
	t.Run("eof", func(t *testing.T) {
		fc, bc := socketPair(t)
		f := NewFrontend(fc)
		go func() { ReadMessage(bc, MaxFDs); bc.Close() }()
		_, err := f.GetFeatures()
		if err == nil || !strings.Contains(err.Error(), "GET_FEATURES") || !errors.Is(err, ErrClosed) {
			t.Fatalf("GetFeatures = %v, want an ErrClosed naming GET_FEATURES", err)
		}
		if _, err := f.GetQueueNum(); err == nil || !strings.Contains(err.Error(), "unusable") {
			t.Fatalf("call after failure = %v, want unusable", err)
		}
	})
	t.Run("wrong reply", func(t *testing.T) {
		fc, bc := socketPair(t)
		f := NewFrontend(fc)
		go func() {
			ReadMessage(bc, MaxFDs)
			WriteMessage(bc, Header{Request: GetQueueNum, Flags: FlagVersion | FlagReply}, u64(1), nil)
		}()
		_, err := f.GetFeatures()
		if err == nil || !strings.Contains(err.Error(), "GET_FEATURES: back-end answered with GET_QUEUE_NUM") {
			t.Fatalf("GetFeatures = %v, want a mismatched-reply error", err)
		}
	})
	t.Run("short reply", func(t *testing.T) {
		fc, bc := socketPair(t)
		f := NewFrontend(fc)
		go func() {
			ReadMessage(bc, MaxFDs)
			WriteMessage(bc, Header{Request: GetVringBase, Flags: FlagVersion | FlagReply}, []byte{1}, nil)
		}()
		_, err := f.GetVringBase(0)
		if err == nil || !strings.Contains(err.Error(), "GET_VRING_BASE: reply: vring state payload is 1 bytes") {
			t.Fatalf("GetVringBase = %v", err)
		}
	})
}

func TestGuestMemorySlice(t *testing.T) {
	ram := newGuestRAM(t, 2*4096)
	ram2 := newGuestRAM(t, 3*4096)
	m, err := mapMemory([]MemoryRegion{
		{GuestPhysAddr: 0, MemorySize: 4096, UserspaceAddr: 0x10000, MmapOffset: 4096},
		{GuestPhysAddr: 0x100000, MemorySize: 100, UserspaceAddr: 0x20000, MmapOffset: 8192 + 12},
	}, []int{dup(t, ram.fd), dup(t, ram2.fd)})
	if err != nil {
		t.Fatal(err)
	}
	defer m.unmap()
	copy(ram.mem[4096:], "first")
	copy(ram2.mem[8192+12:], "second")
	tests := []struct {
		gpa, n uint64
		want   string // "" for an error
	}{
		{0, 5, "first"},
		{0x100000, 6, "second"},
		{4090, 6, "\x00\x00\x00\x00\x00\x00"},
		{4090, 7, ""},          // crosses the end of region 0
		{0x100000 + 99, 2, ""}, // crosses the end of region 1
		{4096, 1, ""},          // hole
		{^uint64(0), 2, ""},    // wraps
		{0x100000, ^uint64(0), ""},
	}
	for _, tt := range tests {
		b, err := m.Slice(tt.gpa, tt.n)
		if tt.want == "" {
			if err == nil {
				t.Errorf("Slice(%#x, %#x) = %d bytes, want an error", tt.gpa, tt.n, len(b))
			}
			continue
		}
		if err != nil || !bytes.Equal(b, []byte(tt.want)) {
			t.Errorf("Slice(%#x, %#x) = %q, %v; want %q", tt.gpa, tt.n, b, err, tt.want)
		}
	}
	if g, ok := m.guestAddr(0x20000 + 7); !ok || g != 0x100007 {
		t.Errorf("guestAddr(0x20007) = %#x, %v; want 0x100007", g, ok)
	}
	if _, ok := m.guestAddr(0x20000 + 100); ok {
		t.Error("guestAddr past the region's end translated")
	}
}

// FuzzServe feeds an arbitrary message stream to a Backend: it must end
// with nil or an error, never a panic or a hang.
func FuzzServe(f *testing.F) {
	seq := func(msgs ...[]byte) []byte { return bytes.Join(msgs, nil) }
	f.Add(seq(
		rawMsg(GetFeatures, FlagVersion, 0, nil),
		rawMsg(SetFeatures, FlagVersion|FlagNeedReply, 8, u64(echoFeatures|FeatureProtocolFeatures)),
		rawMsg(SetProtocolFeatures, FlagVersion, 8, u64(ProtocolConfig|ProtocolReplyAck)),
		rawMsg(GetConfig, FlagVersion, 16, ConfigSpace{Offset: 2, Payload: make([]byte, 4)}.Marshal()),
		rawMsg(SetConfig, FlagVersion|FlagNeedReply, 14, ConfigSpace{Offset: 0, Payload: []byte("zz")}.Marshal()),
		rawMsg(SetVringNum, FlagVersion, 8, VringState{Num: 8}.Marshal()),
		rawMsg(SetVringBase, FlagVersion, 8, VringState{Num: 3}.Marshal()),
		rawMsg(SetVringEnable, FlagVersion, 8, VringState{Num: 1}.Marshal()),
		rawMsg(GetVringBase, FlagVersion, 8, VringState{}.Marshal()),
		rawMsg(GetQueueNum, FlagVersion, 0, nil),
	))
	f.Add(rawMsg(SetVringAddr, FlagVersion, 40, ringAddr().Marshal()))
	f.Add(rawMsg(SetMemTable, FlagVersion, 8, []byte{0, 0, 0, 0, 0, 0, 0, 0}))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64<<10 {
			return
		}
		w, r := socketPair(t)
		done := make(chan error, 1)
		go func() { done <- NewBackend(newEchoDevice(), nil).Serve(r) }()
		// Replies are drained so the back-end never blocks on a full socket.
		go func() {
			var b [4096]byte
			for {
				if _, err := w.Read(b[:]); err != nil {
					return
				}
			}
		}()
		w.Write(data)
		w.CloseWrite()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatal("Serve did not return after its input ended")
		}
	})
}
