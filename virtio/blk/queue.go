package blk

import (
	"errors"
	"sync"

	"github.com/sietch-vm/sietch/virtio"
	"github.com/sietch-vm/sietch/virtio/vhostuser"
)

// Per-queue concurrency: requests run on a few workers so that a slow
// read does not hold up the rest; completions may be pushed in any order
// (§5.2.6 imposes none).
const (
	workers     = 8
	maxInflight = 64
)

// runner serves one queue: its loop owns the virtio.Queue (Pop, Push,
// notifications); workers only touch the disk and the chains' buffers.
type runner struct {
	d            *Device
	q            *virtio.Queue
	mem          virtio.GuestMemory
	kick, call   *vhostuser.EventFD
	writeThrough bool

	work    chan *virtio.Chain
	done    chan completion
	stop    chan struct{} // closed by Stop
	stopped chan struct{} // closed when run returns
	once    sync.Once
}

type completion struct {
	head    uint16
	written uint32
}

func newRunner(d *Device, q *virtio.Queue, mem virtio.GuestMemory, kick, call *vhostuser.EventFD, writeThrough bool) *runner {
	return &runner{
		d: d, q: q, mem: mem, kick: kick, call: call, writeThrough: writeThrough,
		work:    make(chan *virtio.Chain, maxInflight),
		done:    make(chan completion, maxInflight),
		stop:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
}

func (r *runner) stopAndWait() {
	r.once.Do(func() { close(r.stop) })
	<-r.stopped
}

func (r *runner) run() {
	defer close(r.stopped)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range r.work {
				r.done <- completion{c.Head, r.d.handle(r.mem, c, r.writeThrough)}
			}
		}()
	}
	defer func() {
		close(r.work)
		wg.Wait()
	}()

	// kick.Wait blocks in a read; a helper turns kicks into channel sends.
	// It ends when Backend closes kick, which it does before Stop.
	kicks := make(chan struct{}, 1)
	go func() {
		defer close(kicks)
		for {
			if _, err := r.kick.Wait(); err != nil {
				if !errors.Is(err, vhostuser.ErrEventFDClosed) {
					r.d.log.Warn("virtio-blk: kick eventfd", "err", err)
				}
				return
			}
			select {
			case kicks <- struct{}{}:
			default: // one pending kick is as good as many
			}
		}
	}()

	inflight, stopping, stop := 0, false, r.stop
	for {
		if !stopping {
			inflight = r.fill(inflight)
		}
		if stopping && inflight == 0 {
			return
		}
		select {
		case _, ok := <-kicks:
			if !ok {
				kicks, stopping = nil, true
			}
		case <-stop:
			stop, stopping = nil, true
		case c := <-r.done:
			// Push everything that has finished, then at most one
			// interrupt for the batch.
			for more := true; more; {
				if err := r.q.Push(c.head, c.written); err != nil {
					r.d.log.Error("virtio-blk: push", "err", err)
				}
				inflight--
				select {
				case c = <-r.done:
				default:
					more = false
				}
			}
			r.notify()
		}
	}
}

// fill pops chains and hands them to workers until the queue is empty or
// maxInflight requests are running. A lone chain with nothing else in
// flight runs inline: the hand-offs to and from a worker cost more than a
// page-cache read. It returns the new in-flight count.
func (r *runner) fill(inflight int) int {
	defer r.notify() // for chains completed here
	for {
		batch := r.pop(maxInflight - inflight)
		if len(batch) == 0 {
			return inflight
		}
		if len(batch) == 1 && inflight == 0 {
			c := batch[0]
			if err := r.q.Push(c.Head, r.d.handle(r.mem, c, r.writeThrough)); err != nil {
				r.d.log.Error("virtio-blk: push", "err", err)
			}
			r.notify()
			continue
		}
		for _, c := range batch {
			r.work <- c
		}
		return inflight + len(batch)
	}
}

// pop returns up to n available chains. Bad chains are returned to the
// driver at once with length 0.
func (r *runner) pop(n int) []*virtio.Chain {
	var batch []*virtio.Chain
	disabled := false
	for len(batch) < n {
		c, ok, err := r.q.Pop()
		var ce *virtio.ChainError
		switch {
		case errors.As(err, &ce):
			r.d.log.Debug("virtio-blk: bad chain", "err", err)
			if ce.Head < r.q.Size() {
				r.q.Push(ce.Head, 0)
			}
			continue
		case err != nil:
			// Nothing was consumed; look again at the next kick.
			r.d.log.Warn("virtio-blk: queue unusable until the driver fixes it", "err", err)
			return batch
		case !ok:
			if r.q.EnableNotify() {
				continue // added while kicks were off
			}
			return batch
		}
		if !disabled {
			r.q.DisableNotify() // busy: kicks would be wasted
			disabled = true
		}
		batch = append(batch, c)
	}
	return batch
}

func (r *runner) notify() {
	if r.q.NeedsNotify() {
		if err := r.call.Signal(); err != nil && !errors.Is(err, vhostuser.ErrEventFDClosed) {
			r.d.log.Warn("virtio-blk: call eventfd", "err", err)
		}
	}
}
