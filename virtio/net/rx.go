package net

import (
	"errors"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/sietch-vm/sietch/virtio"
	"github.com/sietch-vm/sietch/virtio/vhostuser"
)

// rxState is the receive path's memory. It outlives a run of the queue, so a
// frame already read from the tap is delivered after a restart, not lost.
type rxState struct {
	buf []byte // hdrLen + maxFrameLen: one frame as the tap hands it over
	n   int    // bytes of the pending frame in buf (header included); 0: none

	// With MRG_RXBUF, chains popped for the pending frame that are not
	// enough for it yet (virtio 1.2 §5.1.6.3.2). They belong to one run
	// of the queue and are returned unused when it stops.
	stash    []rxChain
	stashCap uint64

	// broken is set when the ring itself is unusable (virtio.ErrRingBroken):
	// then only a kick is worth a retry, not a re-check of the ring.
	broken bool

	gathered atomic.Int32 // len(stash), for tests to see the device waiting
}

type rxChain struct {
	head uint16
	w    *virtio.ChainWriter
}

// runRx is the receive queue's goroutine. It reads one frame from the tap and
// puts it into receive chains; while the guest has posted too few, it stops
// reading the tap (which queues, then drops, as a full NIC would) and waits
// for the guest's kick.
func (d *Device) runRx(r *runner, mem virtio.GuestMemory, kick, call *vhostuser.EventFD, acked uint64) {
	q, rx := r.q, &d.rx
	o, mrg := rxOffloads(acked), acked&FeatureMrgRxbuf != 0
	defer func() {
		for _, c := range rx.stash {
			q.Push(c.head, 0) // a used length below the header size: the driver drops it
		}
		rx.stash, rx.stashCap = rx.stash[:0], 0
		rx.gathered.Store(0)
		notify(q, call)
	}()
	batch := 0
	for !r.stop.Load() {
		if rx.n == 0 {
			n, err := d.readTap(q, call)
			switch {
			case errors.Is(err, errStopped), errors.Is(err, unix.EBADFD), errors.Is(err, unix.EBADF):
				return // stopped, or the tap is gone: nothing more will arrive
			case err != nil:
				d.stats.rxDropped.Add(1) // e.g. a frame the tap could not encode
				continue
			}
			rx.n = n
		}
		if !d.prepareRx(o) {
			rx.n = 0
			d.stats.rxDropped.Add(1)
			continue
		}
		var done bool
		if mrg {
			done = d.deliverMerged(q, mem)
		} else {
			done = d.deliverOne(q, mem)
		}
		if done {
			rx.n = 0
			if batch++; batch == notifyBatch {
				notify(q, call) // a long burst must not starve the driver of interrupts
				batch = 0
			}
			continue
		}
		// No room: let the guest know what it has, ask for a kick, and wait
		// (unless buffers came in before it could see the request).
		notify(q, call)
		if !rx.broken && q.EnableNotify() {
			continue
		}
		if _, err := kick.Wait(); err != nil {
			return // closed by the back-end: Stop follows
		}
	}
}

// readTap reads the next frame into d.rx.buf. Before it sleeps on an empty
// tap it interrupts the guest for what was delivered, so a burst costs one
// interrupt. Stop's read deadline wakes it with errStopped.
func (d *Device) readTap(q *virtio.Queue, call *vhostuser.EventFD) (int, error) {
	var n int
	var rerr error
	err := d.rc.Read(func(fd uintptr) bool {
		for {
			n, rerr = unix.Read(int(fd), d.rx.buf)
			if rerr != unix.EINTR {
				break
			}
		}
		if rerr == unix.EAGAIN {
			notify(q, call)
			return false
		}
		return true
	})
	if err != nil {
		return 0, errStopped
	}
	return n, rerr
}

// prepareRx checks the pending frame's header, as the tap wrote it, against
// what the guest negotiated (virtio 1.2 §5.1.6.4), and reports whether the
// frame may be delivered.
func (d *Device) prepareRx(o offloads) bool {
	rx := &d.rx
	if rx.n < hdrLen {
		return false
	}
	h := parseHeader(rx.buf)
	if !o.csum {
		// The tap may mark a frame DATA_VALID; without GUEST_CSUM the
		// device must leave flags zero.
		h.flags &^= hdrFDataValid
	}
	if h.check(rx.n-hdrLen, o) != nil {
		return false
	}
	h.numBuffers = 1
	h.put(rx.buf)
	return true
}

// popRx returns the next receive chain's writer, returning malformed ones
// unused; ok=false when the guest has posted none, or when the ring is
// broken (d.rx.broken), which only the guest can mend.
func (d *Device) popRx(q *virtio.Queue, mem virtio.GuestMemory) (uint16, *virtio.ChainWriter, bool) {
	d.rx.broken = false
	for {
		c, ok, err := q.Pop()
		if err != nil {
			if d.returnBad(q, err) {
				continue
			}
			d.rx.broken = true
			return 0, nil, false
		}
		if !ok {
			return 0, nil, false
		}
		return c.Head, virtio.NewChainWriter(mem, c), true
	}
}

// deliverOne puts the pending frame into one chain, as a driver without
// MRG_RXBUF expects (virtio 1.2 §5.1.6.3.1), and reports whether the frame is
// done with (delivered or dropped) rather than waiting for a chain.
func (d *Device) deliverOne(q *virtio.Queue, mem virtio.GuestMemory) bool {
	frame := d.rx.buf[:d.rx.n]
	head, w, ok := d.popRx(q, mem)
	if !ok {
		return false
	}
	if w.Remaining() < uint64(len(frame)) {
		// The driver's buffers must hold a whole frame; this one cannot.
		q.Push(head, 0)
		d.stats.rxDropped.Add(1)
		return true
	}
	w.Write(frame) // fits; a mapping error leaves a short count the driver drops
	q.Push(head, w.Written())
	d.stats.rxPackets.Add(1)
	d.stats.rxBytes.Add(uint64(len(frame) - hdrLen))
	return true
}

// deliverMerged spreads the pending frame over as many chains as it needs,
// setting num_buffers (virtio 1.2 §5.1.6.4.2). Chains are gathered in the
// stash until there is room for the whole frame, so nothing is pushed for
// a frame that cannot be finished.
func (d *Device) deliverMerged(q *virtio.Queue, mem virtio.GuestMemory) bool {
	rx := &d.rx
	frame := rx.buf[:rx.n]
	for rx.stashCap < uint64(len(frame)) {
		if len(rx.stash) >= int(q.Size()) {
			// Every buffer the guest could post is here and the frame still
			// does not fit: drop it, keep the chains for smaller frames.
			d.stats.rxDropped.Add(1)
			return true
		}
		head, w, ok := d.popRx(q, mem)
		if !ok {
			return false
		}
		space := w.Remaining()
		if space < hdrLen {
			// Each buffer must at least hold the header (§5.1.6.3.1).
			q.Push(head, 0)
			d.stats.badChains.Add(1)
			continue
		}
		rx.stash = append(rx.stash, rxChain{head, w})
		rx.stashCap += space
		rx.gathered.Store(int32(len(rx.stash)))
	}
	used := 0
	for off := 0; off < len(frame); used++ {
		off += int(min(rx.stash[used].w.Remaining(), uint64(len(frame)-off)))
	}
	h := parseHeader(frame)
	h.numBuffers = uint16(used) // at most the queue size
	h.put(frame)
	off := 0
	for _, c := range rx.stash[:used] {
		k := int(min(c.w.Remaining(), uint64(len(frame)-off)))
		c.w.Write(frame[off : off+k])
		off += k
		rx.stashCap -= uint64(c.w.Written()) + c.w.Remaining()
		q.Push(c.head, c.w.Written())
	}
	rx.stash = append(rx.stash[:0], rx.stash[used:]...)
	rx.gathered.Store(int32(len(rx.stash)))
	d.stats.rxPackets.Add(1)
	d.stats.rxBytes.Add(uint64(len(frame) - hdrLen))
	return true
}
