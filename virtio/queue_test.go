package virtio

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
)

func TestNewQueueValidates(t *testing.T) {
	mem := &testMem{base: testBase, b: make([]byte, testRAM)}
	ok := QueueConfig{Size: 256, Desc: testDesc, Avail: testAvail, Used: testUsed}
	tests := []struct {
		name string
		edit func(c *QueueConfig)
		want string // "" means valid
	}{
		{"valid", func(c *QueueConfig) {}, ""},
		{"size 1", func(c *QueueConfig) { c.Size = 1 }, ""},
		{"size 0", func(c *QueueConfig) { c.Size = 0 }, "power of two"},
		{"size 3", func(c *QueueConfig) { c.Size = 3 }, "power of two"},
		{"size 65535", func(c *QueueConfig) { c.Size = 65535 }, "power of two"},
		{"size 32768 does not fit", func(c *QueueConfig) { c.Size = 32768 }, "not RAM"},
		{"desc misaligned", func(c *QueueConfig) { c.Desc += 8 }, "16-byte aligned"},
		{"avail misaligned", func(c *QueueConfig) { c.Avail++ }, "2-byte aligned"},
		{"used misaligned", func(c *QueueConfig) { c.Used += 2 }, "4-byte aligned"},
		{"avail 2-aligned is fine", func(c *QueueConfig) { c.Avail += 2 }, ""},
		{"desc below RAM", func(c *QueueConfig) { c.Desc = 0 }, "not RAM"},
		{"used runs off RAM end", func(c *QueueConfig) { c.Used = testBase + testRAM - 8 }, "not RAM"},
		{"avail wraps address space", func(c *QueueConfig) { c.Avail = math.MaxUint64 - 1 }, "overflows"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.edit(&c)
			_, err := NewQueue(mem, c)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("NewQueue(%+v) = %v, want success", c, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrBadQueueConfig) {
				t.Fatalf("NewQueue(%+v) = %v, want error containing %q", c, err, tt.want)
			}
		})
	}
	if _, err := NewQueue(mem, QueueConfig{Size: 32768, Desc: testBase, Avail: testBase, Used: testBase}); err == nil {
		t.Fatal("NewQueue accepted areas that do not fit in 64 KiB of RAM")
	}
	big := &testMem{b: make([]byte, 1<<20)}
	if _, err := NewQueue(big, QueueConfig{Size: 32768, Desc: 0, Avail: 0x80000, Used: 0xa0000}); err != nil {
		t.Fatalf("NewQueue with the largest size: %v", err)
	}
}

func TestPop(t *testing.T) {
	const size = 8
	const ind = testBufs + 0x8000 // indirect tables live here
	type want struct {
		descs    []Desc
		err      error
		desc     int // ChainError.Desc
		indirect bool
	}
	tests := []struct {
		name  string
		setup func(d *testDriver) uint16 // writes descriptors, returns the head
		want  want
	}{
		{"single readable", func(d *testDriver) uint16 {
			d.desc(2, testBufs, 100, 0, 0)
			return 2
		}, want{descs: []Desc{{testBufs, 100, false}}}},
		{"readable then writable", func(d *testDriver) uint16 {
			d.desc(0, testBufs, 16, descFNext, 5)
			d.desc(5, testBufs+0x100, 512, descFNext, 1)
			d.desc(1, testBufs+0x400, 1, descFWrite, 0)
			return 0
		}, want{descs: []Desc{{testBufs, 16, false}, {testBufs + 0x100, 512, false}, {testBufs + 0x400, 1, true}}}},
		{"zero length", func(d *testDriver) uint16 {
			d.desc(0, testBufs, 0, descFNext, 1)
			d.desc(1, testBufs, 4, descFWrite, 0)
			return 0
		}, want{descs: []Desc{{testBufs, 0, false}, {testBufs, 4, true}}}},
		{"buffer ends at RAM end", func(d *testDriver) uint16 {
			d.desc(0, testBase+testRAM-16, 16, 0, 0)
			return 0
		}, want{descs: []Desc{{testBase + testRAM - 16, 16, false}}}},
		{"indirect", func(d *testDriver) uint16 {
			d.descAt(ind, 0, testBufs, 16, descFNext, 2)
			d.descAt(ind, 2, testBufs+0x100, 64, descFNext|descFWrite, 1)
			d.descAt(ind, 1, testBufs+0x200, 1, descFWrite, 0)
			d.desc(4, ind, 3*16, descFIndirect, 0)
			return 4
		}, want{descs: []Desc{{testBufs, 16, false}, {testBufs + 0x100, 64, true}, {testBufs + 0x200, 1, true}}}},
		{"direct then indirect", func(d *testDriver) uint16 {
			d.desc(0, testBufs, 16, descFNext, 1)
			d.desc(1, ind, 2*16, descFIndirect|descFWrite, 0) // WRITE on an indirect desc is ignored
			d.descAt(ind, 0, testBufs+0x100, 8, descFNext, 1)
			d.descAt(ind, 1, testBufs+0x200, 8, descFWrite, 0)
			return 0
		}, want{descs: []Desc{{testBufs, 16, false}, {testBufs + 0x100, 8, false}, {testBufs + 0x200, 8, true}}}},
		{"self loop", func(d *testDriver) uint16 {
			d.desc(3, testBufs, 1, descFNext, 3)
			return 3
		}, want{err: ErrChainTooLong, desc: 3}},
		{"two-descriptor loop", func(d *testDriver) uint16 {
			d.desc(0, testBufs, 1, descFNext, 1)
			d.desc(1, testBufs, 1, descFNext, 0)
			return 0
		}, want{err: ErrChainTooLong, desc: 0}},
		{"loop in indirect table", func(d *testDriver) uint16 {
			d.descAt(ind, 0, testBufs, 1, descFNext, 1)
			d.descAt(ind, 1, testBufs, 1, descFNext, 0)
			d.desc(0, ind, 2*16, descFIndirect, 0)
			return 0
		}, want{err: ErrChainTooLong, desc: 0, indirect: true}},
		{"next beyond size", func(d *testDriver) uint16 {
			d.desc(0, testBufs, 1, descFNext, size)
			return 0
		}, want{err: ErrNextOutOfRange, desc: 0}},
		{"next beyond indirect table", func(d *testDriver) uint16 {
			d.descAt(ind, 0, testBufs, 1, descFNext, 2)
			d.desc(0, ind, 2*16, descFIndirect, 0)
			return 0
		}, want{err: ErrNextOutOfRange, desc: 0, indirect: true}},
		{"indirect inside indirect", func(d *testDriver) uint16 {
			d.descAt(ind, 0, testBufs, 1, descFNext, 1)
			d.descAt(ind, 1, ind, 2*16, descFIndirect, 0)
			d.desc(0, ind, 2*16, descFIndirect, 0)
			return 0
		}, want{err: ErrNestedIndirect, desc: 1, indirect: true}},
		{"indirect with next", func(d *testDriver) uint16 {
			d.descAt(ind, 0, testBufs, 1, 0, 0)
			d.desc(0, ind, 16, descFIndirect|descFNext, 1)
			return 0
		}, want{err: ErrIndirectNext, desc: 0}},
		{"indirect length not a multiple of 16", func(d *testDriver) uint16 {
			d.desc(0, ind, 24, descFIndirect, 0)
			return 0
		}, want{err: ErrIndirectLen, desc: 0}},
		{"indirect length zero", func(d *testDriver) uint16 {
			d.desc(0, ind, 0, descFIndirect, 0)
			return 0
		}, want{err: ErrIndirectLen, desc: 0}},
		{"indirect table longer than the queue", func(d *testDriver) uint16 {
			d.desc(0, ind, (size+1)*16, descFIndirect, 0)
			return 0
		}, want{err: ErrIndirectLen, desc: 0}},
		{"indirect table outside RAM", func(d *testDriver) uint16 {
			d.desc(0, testBase+testRAM-16, 32, descFIndirect, 0)
			return 0
		}, want{err: ErrBufferNotInRAM, desc: 0}},
		{"buffer beyond RAM", func(d *testDriver) uint16 {
			d.desc(0, testBufs, 16, descFNext, 1)
			d.desc(1, testBase+testRAM, 1, descFWrite, 0)
			return 0
		}, want{err: ErrBufferNotInRAM, desc: 1}},
		{"buffer below RAM", func(d *testDriver) uint16 {
			d.desc(0, 0x1000, 16, 0, 0)
			return 0
		}, want{err: ErrBufferNotInRAM, desc: 0}},
		{"buffer straddles RAM end", func(d *testDriver) uint16 {
			d.desc(0, testBase+testRAM-8, 16, 0, 0)
			return 0
		}, want{err: ErrBufferNotInRAM, desc: 0}},
		{"addr+len overflows", func(d *testDriver) uint16 {
			d.desc(0, math.MaxUint64-8, 16, 0, 0)
			return 0
		}, want{err: ErrBufferNotInRAM, desc: 0}},
		{"readable after writable", func(d *testDriver) uint16 {
			d.desc(0, testBufs, 16, descFWrite|descFNext, 1)
			d.desc(1, testBufs, 16, 0, 0)
			return 0
		}, want{err: ErrReadAfterWrite, desc: 1}},
		{"readable after writable across indirect", func(d *testDriver) uint16 {
			d.desc(0, testBufs, 16, descFWrite|descFNext, 1)
			d.desc(1, ind, 16, descFIndirect, 0)
			d.descAt(ind, 0, testBufs, 16, 0, 0)
			return 0
		}, want{err: ErrReadAfterWrite, desc: 0, indirect: true}},
		{"head beyond size", func(d *testDriver) uint16 {
			return size
		}, want{err: ErrHeadOutOfRange, desc: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newTestDriver(t, size, false)
			d.publish(tt.setup(d))
			c, ok, err := d.q.Pop()
			if tt.want.err == nil {
				if err != nil || !ok {
					t.Fatalf("Pop = %v, %v, %v; want a chain", c, ok, err)
				}
				if !slices.Equal(c.Descs, tt.want.descs) {
					t.Fatalf("Pop descs = %+v, want %+v", c.Descs, tt.want.descs)
				}
				return
			}
			var ce *ChainError
			if !errors.As(err, &ce) || !errors.Is(err, tt.want.err) || ok || c != nil {
				t.Fatalf("Pop = %v, %v, %v; want a ChainError wrapping %v", c, ok, err, tt.want.err)
			}
			if ce.Queue != 3 || ce.Desc != tt.want.desc || ce.Indirect != tt.want.indirect {
				t.Fatalf("ChainError{Queue %d Desc %d Indirect %v}, want {3 %d %v}: %v",
					ce.Queue, ce.Desc, ce.Indirect, tt.want.desc, tt.want.indirect, err)
			}
			if !strings.Contains(err.Error(), "virtqueue 3") {
				t.Errorf("error %q does not name the queue", err)
			}
			// The bad chain is consumed; the queue carries on.
			if ce.Head < d.q.Size() {
				if err := d.q.Push(ce.Head, 0); err != nil {
					t.Fatalf("Push after a bad chain: %v", err)
				}
			}
			d.desc(7, testBufs, 8, 0, 0)
			d.publish(7)
			c, ok, err = d.q.Pop()
			if err != nil || !ok || c.Head != 7 {
				t.Fatalf("Pop after a bad chain = %v, %v, %v; want head 7", c, ok, err)
			}
		})
	}
}

func TestPopEmptyAndRingBroken(t *testing.T) {
	d := newTestDriver(t, 4, false)
	if c, ok, err := d.q.Pop(); c != nil || ok || err != nil {
		t.Fatalf("Pop on an empty queue = %v, %v, %v", c, ok, err)
	}
	d.setAvailIdx(5) // 5 entries in a 4-entry ring
	for range 2 {
		if _, ok, err := d.q.Pop(); ok || !errors.Is(err, ErrRingBroken) {
			t.Fatalf("Pop with avail idx 5 of 4 = %v, %v; want ErrRingBroken", ok, err)
		}
	}
	if s := d.q.State(); s.NextAvail != 0 {
		t.Fatalf("a broken ring consumed entries: %+v", s)
	}
	// Exactly a full ring is fine.
	for i := range 4 {
		d.desc(i, testBufs, 1, 0, 0)
	}
	d.idx = 0
	for i := range 4 {
		d.publish(uint16(i))
	}
	for i := range 4 {
		c, ok, err := d.q.Pop()
		if err != nil || !ok || c.Head != uint16(i) {
			t.Fatalf("Pop %d of a full ring = %v, %v, %v", i, c, ok, err)
		}
	}
}

func TestPushWritesUsedRing(t *testing.T) {
	d := newTestDriver(t, 4, false)
	for i := range 4 {
		d.desc(i, testBufs, 1, descFWrite, 0)
	}
	// Six round trips: the used ring wraps.
	for i := range 6 {
		head := uint16(3 - i%4)
		d.publish(head)
		c, ok, err := d.q.Pop()
		if err != nil || !ok || c.Head != head {
			t.Fatalf("Pop = %v, %v, %v; want head %d", c, ok, err, head)
		}
		if err := d.q.Push(c.Head, uint32(100+i)); err != nil {
			t.Fatal(err)
		}
		if got := d.usedIdx(); got != uint16(i+1) {
			t.Fatalf("used idx = %d, want %d", got, i+1)
		}
		if id, n := d.usedElem(uint16(i)); id != uint32(head) || n != uint32(100+i) {
			t.Fatalf("used[%d] = {%d %d}, want {%d %d}", i%4, id, n, head, 100+i)
		}
	}
	if err := d.q.Push(4, 0); !errors.Is(err, ErrUsedOutOfRange) {
		t.Fatalf("Push(4) on a 4-entry queue = %v, want ErrUsedOutOfRange", err)
	}
}

func TestNeedEventMath(t *testing.T) {
	tests := []struct {
		event, new, old uint16
		want            bool
	}{
		{0, 1, 0, true},
		{0, 2, 1, false}, // already past event before this batch
		{5, 6, 5, true},
		{5, 10, 0, true},
		{10, 10, 0, false}, // event not yet passed: driver wants entry 11
		{65535, 1, 65534, true},
		{0, 1, 65534, true},
		{1, 1, 65534, false},
		{65533, 1, 65534, false},
		{65534, 65535, 65534, true},
		{7, 7, 7, false},
	}
	for _, tt := range tests {
		if got := needEvent(tt.event, tt.new, tt.old); got != tt.want {
			t.Errorf("needEvent(event %d, new %d, old %d) = %v, want %v", tt.event, tt.new, tt.old, got, tt.want)
		}
	}
}

func TestNeedsNotify(t *testing.T) {
	t.Run("flags", func(t *testing.T) {
		d := newTestDriver(t, 4, false)
		if d.q.NeedsNotify() {
			t.Fatal("NeedsNotify with nothing pushed")
		}
		d.q.Push(0, 0)
		if !d.q.NeedsNotify() {
			t.Fatal("NeedsNotify = false with interrupts wanted")
		}
		d.setAvailFlags(availFNoInterrupt)
		d.q.Push(1, 0)
		if d.q.NeedsNotify() {
			t.Fatal("NeedsNotify = true with VIRTQ_AVAIL_F_NO_INTERRUPT")
		}
	})
	tests := []struct {
		name      string
		startUsed uint16
		pushes    int
		usedEvent uint16
		want      bool
	}{
		{"crossed", 0, 1, 0, true},
		{"not reached", 0, 3, 5, false},
		{"reached exactly", 0, 6, 5, true},
		{"wrap crossing 65535", 65534, 3, 65535, true},
		{"wrap crossing 0", 65534, 3, 0, true},
		{"wrap not reached", 65534, 3, 1, false},
		{"event behind the batch", 65534, 3, 65533, false},
		{"lapped", 0, 1 << 16, 12345, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newTestDriver(t, 4, true)
			d.q.SetState(QueueState{NextUsed: tt.startUsed})
			d.setUsedEvent(tt.usedEvent)
			d.setAvailFlags(availFNoInterrupt) // ignored with EVENT_IDX
			for range tt.pushes {
				d.q.Push(0, 0)
			}
			if got := d.q.NeedsNotify(); got != tt.want {
				t.Fatalf("NeedsNotify = %v, want %v (used idx %d, used_event %d)", got, tt.want, d.usedIdx(), tt.usedEvent)
			}
			if d.q.NeedsNotify() {
				t.Fatal("NeedsNotify = true again with nothing new pushed")
			}
		})
	}
}

func TestNotifySuppression(t *testing.T) {
	t.Run("flags", func(t *testing.T) {
		d := newTestDriver(t, 4, false)
		d.q.DisableNotify()
		if d.usedFlags() != usedFNoNotify {
			t.Fatalf("used flags = %d after DisableNotify", d.usedFlags())
		}
		if d.q.EnableNotify() {
			t.Fatal("EnableNotify reported buffers on an empty queue")
		}
		if d.usedFlags() != 0 {
			t.Fatalf("used flags = %d after EnableNotify", d.usedFlags())
		}
		d.q.DisableNotify()
		d.desc(0, testBufs, 1, 0, 0)
		d.publish(0) // added while disabled: no kick will come
		if !d.q.EnableNotify() {
			t.Fatal("EnableNotify did not report the buffer added while disabled")
		}
		if d.usedIdx() != 0 {
			t.Fatal("notify flags changed used idx")
		}
	})
	t.Run("event idx", func(t *testing.T) {
		d := newTestDriver(t, 4, true)
		d.desc(0, testBufs, 1, 0, 0)
		d.publish(0)
		d.publish(0)
		d.q.Pop()
		if d.availEvent() != 1 {
			t.Fatalf("avail_event = %d after one Pop, want 1", d.availEvent())
		}
		d.q.DisableNotify()
		d.q.Pop()
		if d.availEvent() != 1 {
			t.Fatalf("avail_event = %d moved while disabled", d.availEvent())
		}
		if d.q.EnableNotify() {
			t.Fatal("EnableNotify reported buffers on a drained queue")
		}
		if d.availEvent() != 2 {
			t.Fatalf("avail_event = %d after EnableNotify, want 2", d.availEvent())
		}
		if d.usedFlags() != 0 {
			t.Fatal("used flags written with EVENT_IDX")
		}
	})
}

func TestStateRoundTrip(t *testing.T) {
	d := newTestDriver(t, 4, false)
	for i := range 4 {
		d.desc(i, testBufs, 1, 0, 0)
		d.publish(uint16(i))
	}
	d.q.Pop()
	c, _, _ := d.q.Pop()
	d.q.Push(c.Head, 0)
	s := d.q.State()
	if s != (QueueState{NextAvail: 2, NextUsed: 1}) {
		t.Fatalf("State = %+v", s)
	}
	// A new queue on the same rings (restore, vhost-user reconnect) picks
	// up the used index from memory and the avail position from SetState.
	q2, err := NewQueue(d.mem, d.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := q2.State().NextUsed; got != 1 {
		t.Fatalf("new queue NextUsed = %d, want used->idx 1", got)
	}
	q2.SetState(s)
	if q2.State() != s {
		t.Fatalf("State after SetState = %+v, want %+v", q2.State(), s)
	}
	c, ok, err := q2.Pop()
	if err != nil || !ok || c.Head != 2 {
		t.Fatalf("Pop after restore = %v, %v, %v; want head 2", c, ok, err)
	}
	q2.Push(c.Head, 9)
	if id, n := d.usedElem(1); d.usedIdx() != 2 || id != 2 || n != 9 {
		t.Fatalf("used after restore: idx %d elem {%d %d}", d.usedIdx(), id, n)
	}
}

func BenchmarkPopPush(b *testing.B) {
	d := newTestDriver(b, 256, true)
	for i := range 256 {
		d.desc(i, testBufs, 64, descFNext, uint16((i+1)%256))
	}
	for i := 0; i < 256; i += 2 {
		d.desc(i+1, testBufs+0x100, 64, descFWrite, 0)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		d.publish(uint16(i*2) % 256)
		c, ok, err := d.q.Pop()
		if !ok || err != nil {
			b.Fatalf("Pop = %v, %v", ok, err)
		}
		d.q.Push(c.Head, 64)
		d.q.NeedsNotify()
	}
}

// TestDirtyLogMark covers page ranges within a word, across words and past
// the end of the log.
func TestDirtyLogMark(t *testing.T) {
	raw := make([]byte, 16) // 128 pages
	l := NewDirtyLog(raw)
	l.Mark(0x1fff, 2)            // pages 1 and 2
	l.Mark(62*4096, 3*4096)      // pages 62, 63, 64
	l.Mark(127*4096, 10*4096)    // page 127 and beyond the log
	l.Mark(^uint64(0)-4095, 100) // far beyond: ignored
	got := make([]uint64, 2)
	l.Collect(got)
	want := []uint64{1<<1 | 1<<2 | 1<<62 | 1<<63, 1<<0 | 1<<63}
	if got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("log words %#x, want %#x", got, want)
	}
	again := make([]uint64, 2)
	l.Collect(again)
	if again[0] != 0 || again[1] != 0 {
		t.Fatalf("Collect did not clear the log: %#x", again)
	}
}
