package vhostuser

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestPayloadRoundTrip(t *testing.T) {
	s := VringState{Index: 3, Num: 256}
	var s2 VringState
	if err := s2.Unmarshal(s.Marshal()); err != nil || s2 != s {
		t.Errorf("VringState round trip = %+v, %v", s2, err)
	}
	a := VringAddr{Index: 1, Flags: 1, Desc: 0x1000, Used: 0x3000, Avail: 0x2000, Log: 0x4000}
	var a2 VringAddr
	if err := a2.Unmarshal(a.Marshal()); err != nil || a2 != a {
		t.Errorf("VringAddr round trip = %+v, %v", a2, err)
	}
	// Wire order is desc, used, avail (vhost-user.rst "A vring address description").
	if b := a.Marshal(); b[16] != 0x00 || b[17] != 0x30 || b[25] != 0x20 {
		t.Errorf("VringAddr wire layout wrong: % x", b)
	}
	mt := MemoryTable{Regions: []MemoryRegion{{1, 2, 3, 4}, {5, 6, 7, 8}}}
	var mt2 MemoryTable
	if err := mt2.Unmarshal(mt.Marshal()); err != nil || !reflect.DeepEqual(mt, mt2) {
		t.Errorf("MemoryTable round trip = %+v, %v", mt2, err)
	}
	c := ConfigSpace{Offset: 4, Size: 3, Flags: ConfigFlagMigration, Payload: []byte("abc")}
	var c2 ConfigSpace
	if err := c2.Unmarshal(c.Marshal()); err != nil || !reflect.DeepEqual(c, c2) {
		t.Errorf("ConfigSpace round trip = %+v, %v", c2, err)
	}
}

func TestPayloadUnmarshalErrors(t *testing.T) {
	full := append(MemoryTable{Regions: []MemoryRegion{{1, 2, 3, 4}}}.Marshal(), make([]byte, 7*memoryRegionSize)...)
	tests := []struct {
		name string
		do   func() error
		want string // "" for success
	}{
		{"u64 short", func() error { _, err := unmarshalU64(make([]byte, 4)); return err }, "4 bytes, want 8"},
		{"state long", func() error { return new(VringState).Unmarshal(make([]byte, 9)) }, "9 bytes, want 8"},
		{"addr short", func() error { return new(VringAddr).Unmarshal(make([]byte, 32)) }, "32 bytes, want 40"},
		{"table empty", func() error { return new(MemoryTable).Unmarshal(nil) }, "shorter than its 8-byte head"},
		{"table 9 regions", func() error { return new(MemoryTable).Unmarshal([]byte{9, 0, 0, 0, 0, 0, 0, 0}) }, "9 regions"},
		{"table missing region", func() error { return new(MemoryTable).Unmarshal([]byte{1, 0, 0, 0, 0, 0, 0, 0}) }, "want 40"},
		{"table full struct", func() error { return new(MemoryTable).Unmarshal(full) }, ""},
		{"table trailing bytes", func() error { return new(MemoryTable).Unmarshal(append(full[:40:40], 0)) }, "want 40"},
		{"config short", func() error { return new(ConfigSpace).Unmarshal(make([]byte, 11)) }, "shorter than its 12-byte head"},
		{"config size lies", func() error {
			b := ConfigSpace{Payload: []byte("ab")}.Marshal()
			b[4] = 3
			return new(ConfigSpace).Unmarshal(b)
		}, "says 3 bytes but carries 2"},
		{"config too big", func() error {
			return new(ConfigSpace).Unmarshal(ConfigSpace{Payload: make([]byte, MaxConfigSize+1)}.Marshal())
		}, "exceeds 256"},
		{"config max", func() error {
			return new(ConfigSpace).Unmarshal(ConfigSpace{Payload: make([]byte, MaxConfigSize)}.Marshal())
		}, ""},
	}
	for _, tt := range tests {
		err := tt.do()
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: %v, want success", tt.name, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: %v, want an error containing %q", tt.name, err, tt.want)
		}
	}
}

func TestRequestString(t *testing.T) {
	if got := SetMemTable.String(); got != "SET_MEM_TABLE" {
		t.Errorf("SetMemTable.String() = %q", got)
	}
	if got := Request(1000).String(); got != "request(1000)" {
		t.Errorf("Request(1000).String() = %q", got)
	}
}

func TestReadMessage(t *testing.T) {
	pipe := func(t *testing.T) int {
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(p[0]); unix.Close(p[1]) })
		return p[1]
	}
	tests := []struct {
		name    string
		msg     []byte
		nfds    int
		maxFDs  int
		wantReq Request
		wantFDs int
		err     string
	}{
		{name: "get features", msg: rawMsg(GetFeatures, FlagVersion, 0, nil), wantReq: GetFeatures},
		{name: "reply with payload", msg: rawMsg(GetFeatures, FlagVersion|FlagReply, 8, u64(7)), wantReq: GetFeatures},
		{name: "kick with fd", msg: rawMsg(SetVringKick, FlagVersion, 8, u64(0)), nfds: 1, maxFDs: 8, wantReq: SetVringKick, wantFDs: 1},
		{name: "kick no-fd", msg: rawMsg(SetVringKick, FlagVersion, 8, u64(vringNoFD)), maxFDs: 8, wantReq: SetVringKick},
		{name: "mem table two fds", msg: func() []byte {
			p := MemoryTable{Regions: make([]MemoryRegion, 2)}.Marshal()
			return rawMsg(SetMemTable, FlagVersion, uint32(len(p)), p)
		}(), nfds: 2, maxFDs: 8, wantReq: SetMemTable, wantFDs: 2},
		{name: "more fds than allowed", msg: rawMsg(SetVringKick, FlagVersion, 8, u64(0)), nfds: 3, maxFDs: 1, err: "file descriptors attached"},
		{name: "fd on a reply", msg: rawMsg(GetFeatures, FlagVersion|FlagReply, 8, u64(7)), nfds: 1, maxFDs: 8, err: "got 1 file descriptors, want 0"},
		{name: "kick payload short", msg: rawMsg(SetVringKick, FlagVersion, 4, make([]byte, 4)), err: "payload is 4 bytes, want 8"},
		{name: "version 0", msg: rawMsg(GetFeatures, 0, 0, nil), err: "version 0"},
		{name: "too big", msg: rawMsg(GetFeatures, FlagVersion, MaxPayload+1, nil), err: "exceeds"},
		{name: "eof", msg: nil, err: ErrClosed.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, r := socketPair(t)
			var oob []byte
			if tt.nfds > 0 {
				fds := make([]int, tt.nfds)
				for i := range fds {
					fds[i] = pipe(t)
				}
				oob = unix.UnixRights(fds...)
			}
			if len(tt.msg) > 0 {
				if _, _, err := w.WriteMsgUnix(tt.msg, oob, nil); err != nil {
					t.Fatal(err)
				}
			}
			w.CloseWrite()
			h, p, fds, err := ReadMessage(r, tt.maxFDs)
			defer closeFDs(fds)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ReadMessage = %v, want an error containing %q", err, tt.err)
				}
				if fds != nil {
					t.Fatal("descriptors returned with an error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.Request != tt.wantReq || len(fds) != tt.wantFDs || !bytes.Equal(p, tt.msg[HeaderSize:]) {
				t.Fatalf("got %v with %d fds and payload % x", h, len(fds), p)
			}
		})
	}
}

func TestWriteReadMessage(t *testing.T) {
	w, r := socketPair(t)
	e := newEventFD(t)
	if err := WriteMessage(w, Header{Request: SetVringCall, Flags: FlagVersion}, u64(2), []int{e.Fd()}); err != nil {
		t.Fatal(err)
	}
	h, p, fds, err := ReadMessage(r, MaxFDs)
	if err != nil {
		t.Fatal(err)
	}
	defer closeFDs(fds)
	if h != (Header{Request: SetVringCall, Flags: FlagVersion, Size: 8}) || !bytes.Equal(p, u64(2)) || len(fds) != 1 {
		t.Fatalf("got %+v % x %v", h, p, fds)
	}
	// The received descriptor is the same eventfd.
	got, err := eventFDFrom(fds[0], "received")
	if err != nil {
		t.Fatal(err)
	}
	fds = nil
	defer got.Close()
	if err := got.Signal(); err != nil {
		t.Fatal(err)
	}
	if n, err := e.Wait(); err != nil || n != 1 {
		t.Fatalf("Wait = %d, %v", n, err)
	}
}

// FuzzReadMessage feeds arbitrary bytes with descriptors attached. Whatever
// happens, ReadMessage must not panic and must not keep a descriptor it
// does not return: every descriptor sent is a pipe's write end, so once the
// test closes what it got back, the read end must see EOF.
func FuzzReadMessage(f *testing.F) {
	memTable := MemoryTable{Regions: make([]MemoryRegion, 2)}.Marshal()
	f.Add(rawMsg(GetFeatures, FlagVersion, 0, nil), uint8(0))
	f.Add(rawMsg(SetVringKick, FlagVersion, 8, u64(1)), uint8(1))
	f.Add(rawMsg(SetVringKick, FlagVersion, 8, u64(1|vringNoFD)), uint8(1))
	f.Add(rawMsg(SetMemTable, FlagVersion, uint32(len(memTable)), memTable), uint8(2))
	f.Add(rawMsg(SetMemTable, FlagVersion, uint32(len(memTable)), memTable), uint8(9))
	f.Add(rawMsg(SetMemTable, FlagVersion, 8, []byte{200, 0, 0, 0, 0, 0, 0, 0}), uint8(3))
	f.Add(rawMsg(GetConfig, FlagVersion, 0xffffffff, nil), uint8(0))
	f.Add(append(rawMsg(GetFeatures, FlagVersion, 0, nil), rawMsg(SetVringCall, FlagVersion, 8, u64(0))...), uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, nfds uint8) {
		if len(data) == 0 || len(data) > 16<<10 {
			return
		}
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
			t.Fatal(err)
		}
		defer unix.Close(p[0])
		w, r := socketPair(t)
		var oob []byte
		if n := int(nfds % 12); n > 0 {
			fds := make([]int, n)
			for i := range fds {
				fds[i] = p[1]
			}
			oob = unix.UnixRights(fds...)
		}
		if _, _, err := w.WriteMsgUnix(data, oob, nil); err != nil {
			t.Fatal(err)
		}
		w.Close()
		for {
			_, _, fds, err := ReadMessage(r, MaxFDs)
			closeFDs(fds)
			if err != nil {
				if fds != nil {
					t.Fatal("descriptors returned with an error")
				}
				break
			}
		}
		r.Close() // drops descriptors still queued in the socket
		unix.Close(p[1])
		var b [1]byte
		n, err := unix.Read(p[0], b[:])
		if errors.Is(err, unix.EAGAIN) {
			t.Fatal("a received descriptor was leaked: the pipe still has a writer")
		}
		if n != 0 || err != nil {
			t.Fatalf("read pipe = %d, %v; want EOF", n, err)
		}
	})
}
