package virtio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
)

// QueueConfig is where the driver put a split virtqueue, as the transport
// (virtio-mmio registers, vhost-user SET_VRING_*) reports it.
type QueueConfig struct {
	Index    int    // queue number, for error messages
	Size     uint16 // entries; a power of two, at most MaxQueueSize
	Desc     uint64 // guest-physical descriptor table
	Avail    uint64 // guest-physical driver area (available ring)
	Used     uint64 // guest-physical device area (used ring)
	EventIdx bool   // VIRTIO_F_EVENT_IDX negotiated
}

// Desc is one validated buffer of a chain: [Addr, Addr+Len) lies in guest RAM.
type Desc struct {
	Addr  uint64
	Len   uint32
	Write bool // device-writable
}

// Chain is one available descriptor chain, indirect tables flattened. The
// driver-readable descriptors come first, then the device-writable ones.
type Chain struct {
	Head  uint16
	Descs []Desc
}

// QueueState is what a queue holds beyond guest memory: the vhost-user
// GET/SET_VRING_BASE value (NextAvail) and the used index, for snapshots.
type QueueState struct {
	NextAvail uint16
	NextUsed  uint16
}

// Errors a chain or ring can have; test with errors.Is. Every error Pop
// returns also says which queue, which head and which descriptor.
var (
	ErrRingBroken     = errors.New("available index is further ahead than the queue size")
	ErrHeadOutOfRange = errors.New("head index is not below the queue size")
	ErrNextOutOfRange = errors.New("next index is not below the table size")
	ErrChainTooLong   = errors.New("chain is longer than its table (a loop?)")
	ErrNestedIndirect = errors.New("indirect descriptor inside an indirect table")
	ErrIndirectNext   = errors.New("indirect descriptor has VIRTQ_DESC_F_NEXT set")
	ErrIndirectLen    = errors.New("indirect table length is not a non-zero multiple of 16 at most the queue size")
	ErrReadAfterWrite = errors.New("device-readable descriptor after a device-writable one")
	ErrBufferNotInRAM = errors.New("buffer is not in guest RAM")
	ErrUsedOutOfRange = errors.New("pushed head is not below the queue size")
	ErrBadQueueConfig = errors.New("invalid queue configuration")
)

// ChainError is a problem with one descriptor chain. The chain's avail entry
// has been consumed; if Head is below the queue size the device should return
// it with Push(Head, 0) and carry on: the queue stays usable.
type ChainError struct {
	Queue    int
	Head     uint16
	Desc     int  // index in the descriptor table (or indirect table); -1 if none
	Indirect bool // Desc indexes the indirect table
	Err      error
}

func (e *ChainError) Error() string {
	where := ""
	switch {
	case e.Desc >= 0 && e.Indirect:
		where = fmt.Sprintf(" indirect descriptor %d:", e.Desc)
	case e.Desc >= 0:
		where = fmt.Sprintf(" descriptor %d:", e.Desc)
	}
	return fmt.Sprintf("virtqueue %d: chain at head %d:%s %v", e.Queue, e.Head, where, e.Err)
}

func (e *ChainError) Unwrap() error { return e.Err }

// Queue is the device side of a split virtqueue (virtio 1.2 §2.7). It is
// used by one goroutine at a time; the guest's vCPUs are the other party.
//
// Memory ordering (§2.7.13, §2.7.10; the device mirror of Linux virtio_ring):
//   - Pop loads avail->idx, then fences (acquire) before it reads ring entries
//     and descriptors, which the driver wrote before publishing idx.
//   - Push writes the used element, fences (release), then stores used->idx.
//   - NeedsNotify fences after the used->idx store and before it reads
//     used_event or avail->flags, and EnableNotify fences after it writes
//     avail_event or used->flags and before it re-reads avail->idx: both are
//     store-then-load patterns that the driver mirrors, so each needs a full
//     barrier or a notification can be lost.
//
// The fence is a sync/atomic read-modify-write (LOCK-prefixed on x86-64, a
// full barrier there and a compiler barrier for Go).
type Queue struct {
	mem      GuestMemory
	index    int
	size     uint16
	eventIdx bool

	desc, avail, used []byte // the three areas, mapped once in NewQueue

	nextAvail uint16
	nextUsed  uint16
	usedFlags uint16
	notify    bool   // device wants kicks (EnableNotify)
	pushed    uint32 // used entries since the last NeedsNotify, saturating

	usedGPA uint64    // the device area, for the dirty log
	log     *DirtyLog // nil unless the front-end asked for dirty logging

	barrier atomic.Uint32
}

// NewQueue validates c against virtio 1.2 §2.7 (size a power of two at most
// 32768; descriptor table 16-byte, driver area 2-byte, device area 4-byte
// aligned) and maps the three areas, which must lie in guest RAM. The queue
// starts at NextAvail 0 and NextUsed = the used->idx in guest memory; use
// SetState to start elsewhere.
func NewQueue(mem GuestMemory, c QueueConfig) (*Queue, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("virtqueue %d: %w: %s", c.Index, ErrBadQueueConfig, fmt.Sprintf(format, args...))
	}
	if mem == nil {
		return nil, bad("no guest memory")
	}
	if c.Size == 0 || c.Size > MaxQueueSize || c.Size&(c.Size-1) != 0 {
		return nil, bad("size %d is not a power of two between 1 and %d", c.Size, MaxQueueSize)
	}
	areas := []struct {
		name  string
		gpa   uint64
		n     uint64
		align uint64
		dst   *[]byte
	}{
		{"descriptor table", c.Desc, descTableSize(c.Size), 16, nil},
		{"driver area (avail ring)", c.Avail, availRingSize(c.Size), 2, nil},
		{"device area (used ring)", c.Used, usedRingSize(c.Size), 4, nil},
	}
	q := &Queue{mem: mem, index: c.Index, size: c.Size, eventIdx: c.EventIdx, notify: true, usedGPA: c.Used}
	areas[0].dst, areas[1].dst, areas[2].dst = &q.desc, &q.avail, &q.used
	for _, a := range areas {
		if a.gpa%a.align != 0 {
			return nil, bad("%s at %#x is not %d-byte aligned", a.name, a.gpa, a.align)
		}
		b, err := slice(mem, a.gpa, a.n)
		if err != nil {
			return nil, bad("%s [%#x, +%#x): %v", a.name, a.gpa, a.n, err)
		}
		if !hostAligned(b, uintptr(a.align)) {
			return nil, bad("%s at %#x is mapped at a host address that is not %d-byte aligned", a.name, a.gpa, a.align)
		}
		*a.dst = b
	}
	// A queue set up again after the device stopped (vhost-user reconnect)
	// carries on from the used index the driver has already seen.
	q.nextUsed = load16(q.used, 2)
	return q, nil
}

// slice maps [gpa, gpa+n) and insists on getting exactly n bytes, so that a
// misbehaving GuestMemory cannot make later indexing panic.
func slice(mem GuestMemory, gpa, n uint64) ([]byte, error) {
	if gpa+n < gpa {
		return nil, fmt.Errorf("[%#x, +%#x) overflows the address space", gpa, n)
	}
	b, err := mem.Slice(gpa, n)
	if err != nil {
		return nil, err
	}
	if uint64(len(b)) != n {
		return nil, fmt.Errorf("[%#x, +%#x) mapped to %d bytes", gpa, n, len(b))
	}
	return b, nil
}

// Size is the number of entries in the queue.
func (q *Queue) Size() uint16 { return q.size }

func (q *Queue) fence() { q.barrier.Add(1) }

// availIdx reads avail->idx and orders every later read after it.
func (q *Queue) availIdx() uint16 {
	idx := load16(q.avail, 2)
	q.fence()
	return idx
}

// AvailIdx is the driver's avail->idx: how many chains it has made
// available in all (mod 2^16).
func (q *Queue) AvailIdx() uint16 { return q.availIdx() }

// Pop returns the next available chain, or ok=false when there is none. A
// *ChainError concerns one chain only (see ChainError); an error wrapping
// ErrRingBroken means avail->idx is impossible and nothing was consumed.
func (q *Queue) Pop() (*Chain, bool, error) {
	idx := q.availIdx()
	pending := idx - q.nextAvail
	if pending == 0 {
		return nil, false, nil
	}
	if pending > q.size {
		return nil, false, fmt.Errorf("virtqueue %d: avail idx %d with %d consumed: %w (size %d)",
			q.index, idx, q.nextAvail, ErrRingBroken, q.size)
	}
	head := binary.LittleEndian.Uint16(q.avail[4+2*uint64(q.nextAvail&(q.size-1)):])
	q.nextAvail++
	if q.eventIdx && q.notify {
		// Ask for a kick as soon as the driver adds past what we consumed
		// (§2.7.10); without this a device that never calls
		// DisableNotify would stop getting kicks after one wrap.
		q.setAvailEvent(q.nextAvail)
	}
	c, err := q.walk(head)
	if err != nil {
		return nil, false, err
	}
	if q.log != nil {
		// Marked when the device takes the buffers rather than when it
		// returns them: the log is read only while the device is stopped
		// with nothing in flight, and this needs no per-chain record.
		for _, d := range c.Descs {
			if d.Write {
				q.log.Mark(d.Addr, uint64(d.Len))
			}
		}
	}
	return c, true, nil
}

// SetDirtyLog makes the queue record in log every guest page the device
// may write through it: the device-writable buffers of each chain it pops
// and the device area (vhost-user VHOST_F_LOG_ALL). nil stops recording.
// Call it before the device starts using the queue.
func (q *Queue) SetDirtyLog(log *DirtyLog) { q.log = log }

// logUsed records a write to the device area.
func (q *Queue) logUsed() {
	if q.log != nil {
		q.log.Mark(q.usedGPA, uint64(len(q.used)))
	}
}

// walk follows the chain at head, flattening at most one indirect table
// (§2.7.5.3). Every field is read once into a local before it is checked:
// the guest may change the table under us.
func (q *Queue) walk(head uint16) (*Chain, error) {
	fail := func(desc uint32, indirect bool, err error) error {
		return &ChainError{Queue: q.index, Head: head, Desc: int(desc), Indirect: indirect, Err: err}
	}
	if head >= q.size {
		return nil, &ChainError{Queue: q.index, Head: head, Desc: -1,
			Err: fmt.Errorf("%w: head %d, size %d", ErrHeadOutOfRange, head, q.size)}
	}
	c := &Chain{Head: head, Descs: make([]Desc, 0, 4)} // most chains are short: one allocation
	table, n, i := q.desc, uint32(q.size), uint32(head)
	indirect, steps, writable := false, uint32(0), false
	for {
		// Each table is walked at most n steps: a chain that revisits a
		// descriptor never ends, so it trips this limit.
		if steps == n {
			return nil, fail(i, indirect, fmt.Errorf("%w: more than %d descriptors", ErrChainTooLong, n))
		}
		steps++
		d := table[uint64(i)*descSize : uint64(i+1)*descSize]
		addr := binary.LittleEndian.Uint64(d[0:])
		length := binary.LittleEndian.Uint32(d[8:])
		flags := binary.LittleEndian.Uint16(d[12:])
		next := binary.LittleEndian.Uint16(d[14:])

		if flags&descFIndirect != 0 {
			switch {
			case indirect:
				return nil, fail(i, indirect, ErrNestedIndirect)
			case flags&descFNext != 0:
				return nil, fail(i, indirect, ErrIndirectNext)
			case length == 0 || length%descSize != 0 || length/descSize > uint32(q.size):
				return nil, fail(i, indirect, fmt.Errorf("%w: %d bytes", ErrIndirectLen, length))
			}
			t, err := slice(q.mem, addr, uint64(length))
			if err != nil {
				return nil, fail(i, indirect, fmt.Errorf("%w: indirect table: %v", ErrBufferNotInRAM, err))
			}
			table, n, i, indirect, steps = t, length/descSize, 0, true, 0
			continue
		}

		w := flags&descFWrite != 0
		if !w && writable {
			return nil, fail(i, indirect, ErrReadAfterWrite)
		}
		writable = writable || w
		if _, err := slice(q.mem, addr, uint64(length)); err != nil {
			return nil, fail(i, indirect, fmt.Errorf("%w: %v", ErrBufferNotInRAM, err))
		}
		c.Descs = append(c.Descs, Desc{Addr: addr, Len: length, Write: w})
		if flags&descFNext == 0 {
			return c, nil
		}
		if uint32(next) >= n {
			return nil, fail(i, indirect, fmt.Errorf("%w: next %d, table size %d", ErrNextOutOfRange, next, n))
		}
		i = uint32(next)
	}
}

// Push returns the chain at head to the driver with written bytes written
// into its device-writable buffers, then publishes the new used->idx.
func (q *Queue) Push(head uint16, written uint32) error {
	if head >= q.size {
		return fmt.Errorf("virtqueue %d: push head %d: %w (size %d)", q.index, head, ErrUsedOutOfRange, q.size)
	}
	e := q.used[4+usedElemSize*uint64(q.nextUsed&(q.size-1)):]
	binary.LittleEndian.PutUint32(e[0:], uint32(head))
	binary.LittleEndian.PutUint32(e[4:], written)
	q.nextUsed++
	q.fence() // release: the element is visible before the index that covers it
	store16(q.used, 2, q.nextUsed)
	q.logUsed()
	if q.pushed < 1<<16 {
		q.pushed++
	}
	return nil
}

// NeedsNotify reports whether the driver wants an interrupt for the entries
// pushed since the last call (§2.7.10): without EVENT_IDX, unless it set
// VIRTQ_AVAIL_F_NO_INTERRUPT; with EVENT_IDX, if used->idx moved past
// used_event (Linux vring_need_event).
func (q *Queue) NeedsNotify() bool {
	q.fence() // our used->idx store before the driver's suppression fields
	pushed := q.pushed
	q.pushed = 0
	if pushed == 0 {
		return false
	}
	if !q.eventIdx {
		return load16(q.avail, 0)&availFNoInterrupt == 0
	}
	if pushed >= 1<<16 {
		return true // used->idx lapped used_event at least once
	}
	event := load16(q.avail, 4+2*uint64(q.size))
	newIdx := q.nextUsed
	old := newIdx - uint16(pushed)
	return needEvent(event, newIdx, old)
}

// needEvent is vring_need_event: whether moving an index from old to new
// crossed event, in 16-bit modular arithmetic.
func needEvent(event, new, old uint16) bool {
	return new-event-1 < new-old
}

// EnableNotify asks the driver to kick the device when it adds buffers
// (VIRTQ_USED_F_NO_NOTIFY cleared, or avail_event with EVENT_IDX). It
// reports whether buffers are already available: then the caller must Pop
// again, since the driver may have added them before it saw the request and
// so will not kick (§2.7.10).
func (q *Queue) EnableNotify() bool {
	q.notify = true
	if q.eventIdx {
		q.setAvailEvent(q.nextAvail)
	} else {
		q.usedFlags &^= usedFNoNotify
		store16(q.used, 0, q.usedFlags)
		q.logUsed()
		q.fence()
	}
	return q.availIdx() != q.nextAvail
}

// KickOnNextAdd asks the driver to kick when it next makes a chain
// available, however many it has made available that the device has not
// popped: with EVENT_IDX avail_event is set to avail->idx rather than to
// the next chain to pop (§2.7.10).
func (q *Queue) KickOnNextAdd() {
	if !q.eventIdx {
		q.EnableNotify()
		return
	}
	q.notify = true
	q.setAvailEvent(q.availIdx())
}

// DisableNotify tells the driver that kicks are not needed while the device
// is busy. It is a hint: the driver may still kick. With EVENT_IDX it writes
// nothing; avail_event simply stops advancing.
func (q *Queue) DisableNotify() {
	q.notify = false
	if !q.eventIdx {
		q.usedFlags |= usedFNoNotify
		store16(q.used, 0, q.usedFlags)
		q.logUsed()
	}
}

// setAvailEvent writes avail_event and fences so that a following read of
// avail->idx happens after the driver can see it.
func (q *Queue) setAvailEvent(v uint16) {
	store16(q.used, 4+usedElemSize*uint64(q.size), v)
	q.logUsed()
	q.fence()
}

// State returns the queue's position, for vhost-user GET_VRING_BASE and
// snapshots.
func (q *Queue) State() QueueState {
	return QueueState{NextAvail: q.nextAvail, NextUsed: q.nextUsed}
}

// SetState restores a position from State (vhost-user SET_VRING_BASE,
// snapshot restore). Guest memory is not written: used->idx there already
// matches NextUsed.
func (q *Queue) SetState(s QueueState) {
	q.nextAvail, q.nextUsed, q.pushed = s.NextAvail, s.NextUsed, 0
}
