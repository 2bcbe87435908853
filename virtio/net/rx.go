package net

import (
	"errors"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/sietch-vm/sietch/virtio"
	"github.com/sietch-vm/sietch/virtio/vhostuser"
)

// rxState is the receive queue's memory. It outlives a run of the queue, so
// a frame already read from the tap is delivered after a restart, not lost.
type rxState struct {
	buf []byte // hdrLen + maxFrameLen: one frame as the tap hands it over
	n   int    // bytes of the pending frame in buf (header included); 0: none

	// With MRG_RXBUF, chains popped for the pending frame that are not
	// enough for it yet (virtio 1.2 §5.1.6.3.2). They belong to one run
	// of the queue and are returned unused when it stops.
	stash    []rxChain
	stashCap uint64

	gathered atomic.Int32 // len(stash), for tests to see the device waiting

	// readTap's callback and its arguments, made once in New: a closure
	// per read would cost an allocation per frame.
	read     func(fd uintptr) bool
	readWait bool
	readRes  tapRead

	// This run's: what the driver acked, and the wait for an empty tap.
	o       offloads
	mrg     bool
	arm     chan struct{} // capacity 1: the waiter reads the next frame into buf
	got     chan tapRead  // capacity 1: what it read; buf is the worker's again
	done    chan struct{} // the waiter has returned
	waiting bool          // armed, got not received yet: buf is the waiter's
}

type rxChain struct {
	head uint16
	w    *virtio.ChainWriter
}

// tapRead is the outcome of one read of the tap.
type tapRead struct {
	n   int
	err error
}

// startRx begins a run of the receive queue r: its offloads, and the
// goroutine that waits for the tap when the worker finds it empty.
func (d *Device) startRx(r *vhostuser.Vring, acked uint64) {
	rx := &d.rx
	rx.o, rx.mrg = rxOffloads(acked), acked&FeatureMrgRxbuf != 0
	rx.arm, rx.got, rx.done = make(chan struct{}, 1), make(chan tapRead, 1), make(chan struct{})
	rx.waiting = false
	go d.waitTap(r, rx.arm, rx.got, rx.done)
}

// stopRx ends a run, on the worker: the waiter returns (InterruptVring's
// deadline cut its read short), a frame it read stays pending for the next
// run, and gathered chains go back to the driver with a used length below
// the header size, which it drops.
func (d *Device) stopRx(r *vhostuser.Vring) {
	rx := &d.rx
	close(rx.arm)
	<-rx.done
	if rx.waiting {
		if res := <-rx.got; res.err == nil {
			rx.n = res.n
		}
		rx.waiting = false
	}
	for _, c := range rx.stash {
		r.Push(c.head, 0)
	}
	rx.stash, rx.stashCap = rx.stash[:0], 0
	rx.gathered.Store(0)
}

// fillRx puts frames from the tap into receive chains, one frame at a time.
// While the guest has posted too few chains it stops reading the tap (which
// queues, then drops, as a full NIC would) until the driver's kick.
func (d *Device) fillRx(r *vhostuser.Vring) {
	rx := &d.rx
	for {
		if rx.n == 0 && !d.readFrame() {
			return
		}
		if !d.prepareRx(rx.o) {
			rx.n = 0
			d.stats.rxDropped.Add(1)
			continue
		}
		var done bool
		if rx.mrg {
			done = d.deliverMerged(r)
		} else {
			done = d.deliverOne(r)
		}
		if !done {
			return // no room: the driver's kick brings the worker back
		}
		rx.n = 0
	}
}

// readFrame reads the next frame into rx.buf without waiting. It returns
// false when the tap is empty, the queue is stopping or the tap is gone.
// An empty tap is handed to the waiter, which reads the next frame when it
// comes and wakes the queue: reading there, not just waiting, is what keeps
// a frame that arrives in between from going unnoticed.
func (d *Device) readFrame() bool {
	rx := &d.rx
	for {
		var res tapRead
		if rx.waiting {
			select {
			case res = <-rx.got:
				rx.waiting = false
			default:
				return false
			}
		} else {
			res.n, res.err = d.readTap(false)
		}
		switch {
		case res.err == nil:
			rx.n = res.n
			return true
		case errors.Is(res.err, unix.EAGAIN):
			rx.waiting = true
			rx.arm <- struct{}{}
			return false
		case errors.Is(res.err, errStopped), errors.Is(res.err, unix.EBADFD), errors.Is(res.err, unix.EBADF):
			return false // stopping, or the tap is gone: nothing more will arrive
		default:
			d.stats.rxDropped.Add(1) // e.g. a frame the tap could not encode
		}
	}
}

// waitTap is a run's waiter: each time it is armed it reads one frame into
// d.rx.buf, waiting in Go's poller for the tap, and wakes the queue. Stop's
// read deadline cuts a wait short with errStopped.
func (d *Device) waitTap(r *vhostuser.Vring, arm <-chan struct{}, got chan<- tapRead, done chan<- struct{}) {
	defer close(done)
	for range arm {
		var res tapRead
		res.n, res.err = d.readTap(true)
		got <- res
		r.Wake()
	}
}

// readTap reads one frame into d.rx.buf. With wait, an empty tap waits in
// Go's poller; without, it is unix.EAGAIN.
func (d *Device) readTap(wait bool) (int, error) {
	rx := &d.rx
	rx.readWait = wait
	if err := d.rc.Read(rx.read); err != nil {
		return 0, errStopped
	}
	return rx.readRes.n, rx.readRes.err
}

// readOnce is readTap's callback: one read, and whether it is the answer
// (false: wait for the tap to become readable and call again).
func (d *Device) readOnce(fd uintptr) bool {
	rx := &d.rx
	for {
		rx.readRes.n, rx.readRes.err = unix.Read(int(fd), rx.buf)
		if rx.readRes.err != unix.EINTR {
			break
		}
	}
	return !rx.readWait || rx.readRes.err != unix.EAGAIN
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

// nextRx returns the next receive chain's writer; ok=false when the guest
// has posted none (or the ring is broken, which only the guest can mend).
func nextRx(r *vhostuser.Vring) (uint16, *virtio.ChainWriter, bool) {
	c, ok := r.Next()
	if !ok {
		return 0, nil, false
	}
	return c.Head, virtio.NewChainWriter(r.Memory(), c), true
}

// deliverOne puts the pending frame into one chain, as a driver without
// MRG_RXBUF expects (virtio 1.2 §5.1.6.3.1), and reports whether the frame is
// done with (delivered or dropped) rather than waiting for a chain.
func (d *Device) deliverOne(r *vhostuser.Vring) bool {
	frame := d.rx.buf[:d.rx.n]
	head, w, ok := nextRx(r)
	if !ok {
		return false
	}
	if w.Remaining() < uint64(len(frame)) {
		// The driver's buffers must hold a whole frame; this one cannot.
		r.Push(head, 0)
		d.stats.rxDropped.Add(1)
		return true
	}
	w.Write(frame) // fits; a mapping error leaves a short count the driver drops
	r.Push(head, w.Written())
	d.stats.rxPackets.Add(1)
	d.stats.rxBytes.Add(uint64(len(frame) - hdrLen))
	return true
}

// deliverMerged spreads the pending frame over as many chains as it needs,
// setting num_buffers (virtio 1.2 §5.1.6.4.2). Chains are gathered in the
// stash until there is room for the whole frame, so nothing is pushed for
// a frame that cannot be finished.
func (d *Device) deliverMerged(r *vhostuser.Vring) bool {
	rx := &d.rx
	frame := rx.buf[:rx.n]
	for rx.stashCap < uint64(len(frame)) {
		if len(rx.stash) >= int(r.Size()) {
			// Every buffer the guest could post is here and the frame still
			// does not fit: drop it, keep the chains for smaller frames.
			d.stats.rxDropped.Add(1)
			return true
		}
		head, w, ok := nextRx(r)
		if !ok {
			return false
		}
		space := w.Remaining()
		if space < hdrLen {
			// Each buffer must at least hold the header (§5.1.6.3.1).
			r.Push(head, 0)
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
		r.Push(c.head, c.w.Written())
	}
	rx.stash = append(rx.stash[:0], rx.stash[used:]...)
	rx.gathered.Store(int32(len(rx.stash)))
	d.stats.rxPackets.Add(1)
	d.stats.rxBytes.Add(uint64(len(frame) - hdrLen))
	return true
}
