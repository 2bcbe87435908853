package virtiotest

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/sietch-vm/sietch/virtio"
)

// Descriptor flags (virtio 1.2 §2.7.5), for RawDesc.
const (
	FlagNext     = 1
	FlagWrite    = 2
	FlagIndirect = 4
)

// Buf is one buffer of a chain to post: Out is device-readable (driver to
// device), In device-writable.
type Buf struct {
	data   []byte
	n      uint32
	write  bool
	placed bool   // already in guest RAM at gpa: not copied, not freed
	gpa    uint64 // when placed
}

// Out is a device-readable buffer holding a copy of b.
func Out(b []byte) Buf { return Buf{data: b, n: uint32(len(b))} }

// In is an n-byte device-writable buffer, filled with Poison so that bytes
// the device did not write stand out.
func In(n int) Buf { return Buf{n: uint32(n), write: true} }

// At is an n-byte buffer already in guest RAM at gpa (see Harness.Alloc),
// device-writable if write. Post neither fills nor frees it and Used.In
// does not copy it: for benchmarks and shared buffers.
func At(gpa uint64, n int, write bool) Buf {
	return Buf{n: uint32(n), write: write, placed: true, gpa: gpa}
}

// Poison fills In buffers before they are posted.
const Poison = 0xa5

// RawDesc is a descriptor as written to the table, for PostRaw and
// IndirectTable. Addr is guest-physical (see Harness.Alloc).
type RawDesc struct {
	Addr  uint64
	Len   uint32
	Flags uint16
	Next  uint16
}

// Used is one used-ring entry with copies of the chain's device-writable
// buffers (whole, whatever Len says).
type Used struct {
	Head uint16
	Len  uint32
	In   [][]byte
}

// Data is the device-writable bytes concatenated and cut to Len.
func (u Used) Data() []byte {
	var b []byte
	for _, in := range u.In {
		b = append(b, in...)
	}
	return b[:min(uint64(len(b)), uint64(u.Len))]
}

// Queue is the guest driver of one split virtqueue. Its methods are for
// one goroutine at a time. They do not call t.Helper (it costs a stack
// walk per request); failures name the queue and what went wrong instead.
type Queue struct {
	h     *Harness
	index int
	size  uint16

	descOff, availOff, usedOff, end uint64 // RAM offsets of the rings
	kick, call                      *eventFD

	freeDescs []uint16
	inflight  map[uint16]*posted // by head
	availIdx  uint16
	kickedIdx uint16 // availIdx at the last Kick
	lastUsed  uint16
	fence     atomic.Uint32
}

// posted is what the driver remembers of a chain until it is used.
type posted struct {
	descs []uint16
	spans []span   // arena space to release
	addrs []uint64 // guest-physical address of each posted Buf
	in    []span   // device-writable buffers, in order
}

func roundUp(n, a uint64) uint64 { return (n + a - 1) &^ (a - 1) }

func newQueue(h *Harness, i int, at uint64) *Queue {
	size := uint64(h.opts.QueueSize)
	q := &Queue{h: h, index: i, size: h.opts.QueueSize, inflight: map[uint16]*posted{}}
	q.descOff = at
	q.availOff = q.descOff + roundUp(16*size, 4096)
	q.usedOff = q.availOff + roundUp(6+2*size, 4096)
	q.end = q.usedOff + roundUp(6+8*size, 4096)
	for d := range q.size {
		q.freeDescs = append(q.freeDescs, q.size-1-d) // pop from the end: 0 first
	}
	q.kick = newEventFD(h.t, fmt.Sprintf("queue %d kick", i))
	q.call = newEventFD(h.t, fmt.Sprintf("queue %d call", i))
	return q
}

func (q *Queue) ringBytes() uint64 { return q.end - q.descOff }

// Size is the number of entries.
func (q *Queue) Size() uint16 { return q.size }

// InFlight is the number of chains posted and not yet seen used.
func (q *Queue) InFlight() int { return len(q.inflight) }

func (q *Queue) fatalf(format string, args ...any) {
	q.h.t.Helper()
	q.h.t.Fatalf("virtiotest: queue %d: "+format, append([]any{q.index}, args...)...)
}

// Post places bufs in guest RAM, chains them (readable ones must come
// first, as the spec requires of drivers; the harness does not check) and
// publishes the chain. It returns the head; call Kick to notify.
func (q *Queue) Post(bufs ...Buf) uint16 {
	p := q.place(bufs)
	descs := make([]RawDesc, len(bufs))
	for i, b := range bufs {
		descs[i] = RawDesc{Addr: p.addrs[i], Len: b.n}
		if b.write {
			descs[i].Flags |= FlagWrite
		}
		if i+1 < len(bufs) {
			descs[i].Flags |= FlagNext
			descs[i].Next = uint16(i + 1)
		}
	}
	return q.publishChain(descs, p)
}

// PostIndirect is Post with the buffers in an indirect table (§2.7.5.3)
// referenced by a single descriptor.
func (q *Queue) PostIndirect(bufs ...Buf) uint16 {
	p := q.place(bufs)
	table := make([]RawDesc, len(bufs))
	for i, b := range bufs {
		table[i] = RawDesc{Addr: p.addrs[i], Len: b.n}
		if b.write {
			table[i].Flags |= FlagWrite
		}
		if i+1 < len(bufs) {
			table[i].Flags |= FlagNext
			table[i].Next = uint16(i + 1)
		}
	}
	off := q.alloc(uint64(16 * len(table)))
	p.spans = append(p.spans, span{off, uint64(16 * len(table))})
	writeDescs(q.h.ram[off:], table)
	return q.publishChain([]RawDesc{{Addr: RAMBase + off, Len: uint32(16 * len(table)), Flags: FlagIndirect}}, p)
}

// PostRaw publishes hand-built descriptors as one chain, taking
// descriptor slots from the free list. A Next below len(descs) is an index
// into descs and is translated to the slot used; a larger one is written
// as is. Buffers the descriptors point to are the caller's (Harness.Alloc).
func (q *Queue) PostRaw(descs ...RawDesc) uint16 {
	return q.publishChain(descs, &posted{})
}

// IndirectTable writes descs (Next values as is) into fresh guest RAM and
// returns a descriptor pointing at them, for PostRaw.
func (q *Queue) IndirectTable(descs ...RawDesc) RawDesc {
	n := uint64(16 * max(len(descs), 1))
	gpa := q.h.Alloc(int(n))
	writeDescs(q.h.ram[gpa-RAMBase:], descs)
	return RawDesc{Addr: gpa, Len: uint32(16 * len(descs)), Flags: FlagIndirect}
}

func (q *Queue) alloc(n uint64) uint64 {
	off, err := q.h.arena.alloc(n)
	if err != nil {
		q.fatalf("%v", err)
	}
	return off
}

// place copies bufs into fresh guest RAM.
func (q *Queue) place(bufs []Buf) *posted {
	p := &posted{}
	for _, b := range bufs {
		if b.placed {
			p.addrs = append(p.addrs, b.gpa)
			continue
		}
		off := q.alloc(uint64(b.n))
		p.addrs = append(p.addrs, RAMBase+off)
		dst := q.h.ram[off : off+uint64(b.n)]
		if b.write {
			if !q.h.opts.Bench {
				for i := range dst {
					dst[i] = Poison
				}
			}
			p.in = append(p.in, span{off, uint64(b.n)})
		} else {
			copy(dst, b.data)
		}
		p.spans = append(p.spans, span{off, uint64(b.n)})
	}
	return p
}

func writeDescs(b []byte, descs []RawDesc) {
	le := binary.LittleEndian
	for i, d := range descs {
		e := b[16*i:]
		le.PutUint64(e[0:], d.Addr)
		le.PutUint32(e[8:], d.Len)
		le.PutUint16(e[12:], d.Flags)
		le.PutUint16(e[14:], d.Next)
	}
}

// publishChain writes descs into free table slots and makes the first one
// available (§2.7.13: descriptors and ring entry before avail->idx).
func (q *Queue) publishChain(descs []RawDesc, p *posted) uint16 {
	if len(descs) == 0 {
		q.fatalf("post of an empty chain")
	}
	if len(descs) > len(q.freeDescs) {
		q.fatalf("chain of %d descriptors, %d free (of %d); wait for used chains first", len(descs), len(q.freeDescs), q.size)
	}
	slots := q.freeDescs[len(q.freeDescs)-len(descs):]
	q.freeDescs = q.freeDescs[:len(q.freeDescs)-len(descs)]
	p.descs = append([]uint16(nil), slots...)
	table := q.h.ram[q.descOff:]
	for i, d := range descs {
		if int(d.Next) < len(descs) {
			d.Next = slots[d.Next]
		}
		writeDescs(table[16*uint64(slots[i]):], []RawDesc{d})
	}
	head := slots[0]
	q.inflight[head] = p
	avail := q.h.ram[q.availOff:]
	binary.LittleEndian.PutUint16(avail[4+2*uint64(q.availIdx%q.size):], head)
	q.availIdx++
	q.fence.Add(1) // ring entry before the index that publishes it
	store16(avail[2:], q.availIdx)
	return head
}

// Kick notifies the device of the chains posted since the last Kick,
// unless the device said it needs no notification (VIRTQ_USED_F_NO_NOTIFY,
// or avail_event with EVENT_IDX; §2.7.10), as a real driver does.
func (q *Queue) Kick() {
	old := q.kickedIdx
	q.kickedIdx = q.availIdx
	q.fence.Add(1) // avail->idx store before the suppression fields' loads
	used := q.h.ram[q.usedOff:]
	if q.h.features&virtio.FeatureEventIdx != 0 {
		event := load16(used[4+8*uint64(q.size):])
		if q.availIdx-event-1 >= q.availIdx-old { // !vring_need_event
			return
		}
	} else if load16(used)&1 != 0 {
		return
	}
	q.ForceKick()
}

// ForceKick notifies the device whatever it asked for.
func (q *Queue) ForceKick() {
	if err := q.kick.signal(); err != nil {
		q.fatalf("kick: %v", err)
	}
}

// CorruptAvailIdx publishes an avail->idx further ahead of the device than
// the ring has entries, as a broken or hostile driver might: the device's
// Pop fails with virtio.ErrRingBroken until MendAvailIdx.
func (q *Queue) CorruptAvailIdx() { store16(q.h.ram[q.availOff+2:], q.availIdx+q.size+1) }

// MendAvailIdx publishes the driver's real avail->idx again.
func (q *Queue) MendAvailIdx() { store16(q.h.ram[q.availOff+2:], q.availIdx) }

// Poll returns the next used entry if there is one, without waiting.
func (q *Queue) Poll() (Used, bool) {
	used := q.h.ram[q.usedOff:]
	if load16(used[2:]) == q.lastUsed {
		return Used{}, false
	}
	q.fence.Add(1) // index before the element it covers
	e := used[4+8*uint64(q.lastUsed%q.size):]
	id, n := binary.LittleEndian.Uint32(e), binary.LittleEndian.Uint32(e[4:])
	q.lastUsed++
	p, ok := q.inflight[uint16(id)]
	if id >= uint32(q.size) || !ok {
		q.fatalf("device used id %d (len %d), which is not an available chain", id, n)
	}
	delete(q.inflight, uint16(id))
	u := Used{Head: uint16(id), Len: n}
	for _, s := range p.in {
		if q.h.opts.Bench {
			break
		}
		u.In = append(u.In, append([]byte(nil), q.h.ram[s.off:s.off+s.n]...))
	}
	for _, s := range p.spans {
		q.h.arena.release(s.off, s.n)
	}
	q.freeDescs = append(q.freeDescs, p.descs...)
	return u, true
}

// WaitUsed waits for the next used entry, failing the test after
// Options.Timeout.
func (q *Queue) WaitUsed() Used {
	u, ok := q.WaitUsedFor(q.h.opts.Timeout)
	if !ok {
		q.fatalf("no used entry after %v (%d chains in flight)", q.h.opts.Timeout, len(q.inflight))
	}
	return u
}

// WaitUsedFor waits up to d for the next used entry; ok is false if none
// came, e.g. to check that a device does not complete something.
func (q *Queue) WaitUsedFor(d time.Duration) (Used, bool) {
	deadline := time.Now().Add(d)
	for {
		if q.h.features&virtio.FeatureEventIdx != 0 {
			// used_event: interrupt as soon as the next entry is used
			// (§2.7.10), then look again in case it already was.
			store16(q.h.ram[q.availOff+4+2*uint64(q.size):], q.lastUsed)
			q.fence.Add(1)
		}
		if u, ok := q.Poll(); ok {
			return u, true
		}
		got, err := q.call.wait(deadline)
		if err != nil {
			q.fatalf("wait for call: %v", err)
		}
		if !got {
			// A device between its Push and its signal at the deadline.
			return q.Poll()
		}
	}
}

// Do posts one chain, kicks and waits for it to be used.
func (q *Queue) Do(bufs ...Buf) Used {
	head := q.Post(bufs...)
	q.Kick()
	u := q.WaitUsed()
	if u.Head != head {
		q.fatalf("posted head %d alone, device used head %d", head, u.Head)
	}
	return u
}
