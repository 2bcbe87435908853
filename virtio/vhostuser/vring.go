package vhostuser

import (
	"errors"
	"log/slog"
	"sync/atomic"

	"github.com/sietch-vm/sietch/virtio"
)

// notifyBatch is how many chains a worker returns, at most, before it
// checks whether the driver wants an interrupt: a long burst must not keep
// the driver from reclaiming buffers until it ends.
const notifyBatch = 64

// Vring is one started queue of a DeviceModel. Its worker goroutine owns
// the virtio.Queue: it waits for the driver's kicks and the device's
// wake-ups, pops chains and hands them to the device, returns malformed
// ones, pushes results, interrupts the driver when it asks, and enables
// kicks again without losing one (rust-vmm's VringEpollHandler, as a
// goroutine). Stop ends it, for a snapshot or a change of set-up.
//
// Methods documented "worker only" may be called only from the device
// methods the worker runs: HandleChain, HandleBatch, FillVring and
// StopVring.
type Vring struct {
	index int
	q     *virtio.Queue
	mem   virtio.GuestMemory
	kick  *EventFD // closed by Stop, which ends waits on it
	call  *EventFD
	log   *slog.Logger

	dev     DeviceModel
	filler  VringFiller // nil unless the device fills this queue
	batcher BatchHandler
	life    VringLifecycle
	bad     BadChainObserver
	// maxInFlight bounds the chains handed to the batcher; 0 without one.
	maxInFlight int

	// How the worker waits. A queue served chain by chain has nothing to
	// wait for but the driver, so its worker reads the kick eventfd
	// itself, as a device's own loop would: a hand-off from another
	// goroutine costs microseconds per kick on a small host. Queues with
	// other sources (FillVring, Complete) have a goroutine turn kicks
	// into events, next to Wake's and Complete's.
	events   chan struct{} // nil when the worker reads kick; else capacity 1
	kicked   atomic.Bool   // what is waiting includes a kick
	stop     chan struct{} // closed by Stop
	stopping atomic.Bool
	done     chan struct{} // the worker has returned
	kickDone chan struct{} // readKicks has returned (closed at once without it)

	// Complete's, for the worker to push; nil without a batcher. It holds
	// maxInFlight, so Complete never blocks.
	completed chan completion

	// The worker's own.
	inFlight    int  // chains handed to the batcher and not pushed yet
	unsignalled int  // chains pushed since the last interrupt check
	broken      bool // the ring is broken: look again at the next kick
	logged      bool // that it is broken has been logged
	batch       []*virtio.Chain
}

type completion struct {
	head    uint16
	written uint32
}

// startVring runs queue index of dev on q, taking kick and call: they are
// closed by Stop (or here, on error).
func startVring(dev DeviceModel, index int, q *virtio.Queue, mem virtio.GuestMemory, kick, call *EventFD, log *slog.Logger) (*Vring, error) {
	r := &Vring{
		index: index, q: q, mem: mem, kick: kick, call: call,
		log:      log.With("queue", index),
		dev:      dev,
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		kickDone: make(chan struct{}),
	}
	if f, ok := dev.(VringFiller); ok && f.Fills(index) {
		r.filler = f
	} else if b, ok := dev.(BatchHandler); ok {
		r.batcher, r.maxInFlight = b, max(b.MaxInFlight(index), 1)
	}
	if r.filler != nil || r.batcher != nil {
		r.events = make(chan struct{}, 1)
	}
	if r.batcher != nil {
		r.completed = make(chan completion, r.maxInFlight)
	}
	r.life, _ = dev.(VringLifecycle)
	r.bad, _ = dev.(BadChainObserver)
	if r.life != nil {
		if err := r.life.StartVring(r); err != nil {
			kick.Close()
			call.Close()
			return nil, err
		}
	}
	if r.events != nil {
		go r.readKicks()
	} else {
		close(r.kickDone)
	}
	go r.work()
	return r, nil
}

// Index is the queue's number.
func (r *Vring) Index() int { return r.index }

// Memory is guest memory as the device sees it.
func (r *Vring) Memory() virtio.GuestMemory { return r.mem }

// Size is the number of entries in the ring.
func (r *Vring) Size() uint16 { return r.q.Size() }

// Wake makes the worker run the queue (FillVring, or serving what the
// driver posted) as soon as it can. Any goroutine may call it, any number
// of times, also once the queue has stopped (it then does nothing). On a
// queue served chain by chain it is a kick: a system call.
func (r *Vring) Wake() {
	if r.events == nil {
		r.kick.Signal() // fails only once Stop closed kick
		return
	}
	select {
	case r.events <- struct{}{}:
	default: // one pending run is as good as many
	}
}

// Complete returns a chain handed to HandleBatch to the driver, with
// written bytes written. Any goroutine may call it; the worker pushes it.
func (r *Vring) Complete(head uint16, written uint32) {
	r.completed <- completion{head, written}
}

// Next returns the next chain the driver made available, returning
// malformed ones to it unused on the way. It returns false when there is
// none (kicks are then enabled, so the worker runs at the driver's next
// one), when the ring is broken (logged once; looked at again at the next
// kick) and when the queue is stopping. Worker only.
func (r *Vring) Next() (*virtio.Chain, bool) {
	if r.unsignalled >= notifyBatch {
		// Checked here rather than in Push, so that what one device run
		// pushes in a row (a frame's buffers) is announced together.
		r.notify()
	}
	for !r.broken && !r.stopping.Load() {
		c, ok, err := r.q.Pop()
		switch {
		case err != nil:
			r.popFailed(err)
		case ok:
			r.logged = false
			return c, true
		case r.q.EnableNotify():
			// The driver added chains before it could see that we want
			// kicks again, so it will not kick for them (§2.7.10).
		default:
			r.logged = false
			return nil, false
		}
	}
	return nil, false
}

// popFailed deals with an error from Pop: a malformed chain goes back to
// the driver unused; a broken ring is left alone until the driver kicks.
func (r *Vring) popFailed(err error) {
	var ce *virtio.ChainError
	if errors.As(err, &ce) {
		r.log.Debug("vhost-user queue: malformed chain returned unused", "err", err)
		if ce.Head < r.q.Size() {
			r.Push(ce.Head, 0)
		}
		if r.bad != nil {
			r.bad.BadChain(r.index, ce)
		}
		return
	}
	// Nothing was consumed. Kicks stay on so that the driver's next one
	// (after it mends the ring) brings the worker back.
	r.broken = true
	r.q.EnableNotify()
	if !r.logged {
		r.logged = true
		r.log.Warn("vhost-user queue unusable until the driver fixes it", "err", err)
	}
}

// Push returns the chain at head to the driver with written bytes written
// into its device-writable buffers. Worker only; other goroutines use
// Complete.
func (r *Vring) Push(head uint16, written uint32) {
	if err := r.q.Push(head, written); err != nil {
		r.log.Error("vhost-user queue: push", "err", err)
		return
	}
	r.unsignalled++
}

// AvailIdx is the driver's avail->idx: how many chains it has made
// available in all (mod 2^16). Worker only.
func (r *Vring) AvailIdx() uint16 { return r.q.AvailIdx() }

// KickOnNextAdd asks the driver to kick when it next makes a chain
// available, even while others it made available are not taken yet
// (virtio.Queue.KickOnNextAdd). Worker only.
func (r *Vring) KickOnNextAdd() { r.q.KickOnNextAdd() }

// notify interrupts the driver if it wants to hear about the chains pushed
// since the last check.
func (r *Vring) notify() {
	if r.unsignalled == 0 {
		return
	}
	r.unsignalled = 0
	if r.q.NeedsNotify() {
		if err := r.call.Signal(); err != nil && !errors.Is(err, ErrEventFDClosed) {
			r.log.Warn("vhost-user queue: call eventfd", "err", err)
		}
	}
}

// readKicks turns the driver's kicks into events for the worker until
// Stop closes kick.
func (r *Vring) readKicks() {
	defer close(r.kickDone)
	for {
		if _, err := r.kick.Wait(); err != nil {
			if !errors.Is(err, ErrEventFDClosed) {
				r.log.Warn("vhost-user queue: kick eventfd; the queue gets no more kicks", "err", err)
			}
			return
		}
		r.kicked.Store(true)
		r.Wake()
	}
}

// work is the worker goroutine. It runs the queue once at the start:
// chains posted while the queue was stopped have had their kick consumed
// or never delivered, and a spurious run is harmless.
func (r *Vring) work() {
	defer close(r.done)
	r.kicked.Store(true)
	for {
		r.run()
		if !r.wait() {
			r.finish()
			return
		}
	}
}

// wait blocks until the queue has something to do; false once it stops.
func (r *Vring) wait() bool {
	if r.events == nil {
		if _, err := r.kick.Wait(); err != nil {
			if !errors.Is(err, ErrEventFDClosed) {
				r.log.Warn("vhost-user queue: kick eventfd; the queue stops", "err", err)
			}
			return false
		}
		r.kicked.Store(true)
		return !r.stopping.Load()
	}
	select {
	case <-r.events:
		return true
	case c := <-r.completed:
		r.pushCompletion(c)
		return true
	case <-r.stop:
		return false
	}
}

// run serves what there is: completions, then the driver's chains or the
// device's filling, then at most one interrupt.
func (r *Vring) run() {
	if r.kicked.Swap(false) {
		r.broken = false
	}
	// Completions first (wait may have taken one), with their interrupt,
	// so that serving the next chain inline does not hold them up.
	r.pushCompleted()
	r.notify()
	if r.filler != nil {
		r.filler.FillVring(r)
	} else {
		r.serve()
	}
	r.notify()
}

// serve hands the chains the driver made available to the device, while
// kicks are off: they would only wake the worker to find it busy.
func (r *Vring) serve() {
	if r.batcher != nil {
		r.serveBatches()
		return
	}
	for quiet := false; ; quiet = true {
		c, ok := r.Next()
		if !ok {
			return
		}
		if !quiet {
			r.q.DisableNotify()
		}
		r.handle(c)
	}
}

// serveBatches pops up to the in-flight limit and hands the chains over
// in batches; a lone chain with nothing in flight is served inline.
func (r *Vring) serveBatches() {
	for r.inFlight < r.maxInFlight {
		batch := r.batch[:0]
		for len(batch) < r.maxInFlight-r.inFlight {
			c, ok := r.Next()
			if !ok {
				break
			}
			if len(batch) == 0 {
				r.q.DisableNotify()
			}
			batch = append(batch, c)
		}
		r.batch = batch[:0]
		switch {
		case len(batch) == 0:
			return
		case len(batch) == 1 && r.inFlight == 0:
			r.handle(batch[0])
		default:
			r.inFlight += len(batch)
			r.batcher.HandleBatch(r, batch)
			clear(batch) // the chains are the device's now
		}
	}
}

func (r *Vring) handle(c *virtio.Chain) {
	n, err := r.dev.HandleChain(r.index, c, r.mem)
	if err != nil {
		r.log.Warn("vhost-user queue: handle chain", "head", c.Head, "err", err)
	}
	r.Push(c.Head, n)
}

// pushCompleted pushes every completion waiting.
func (r *Vring) pushCompleted() {
	for {
		select {
		case c := <-r.completed:
			r.pushCompletion(c)
		default:
			return
		}
	}
}

func (r *Vring) pushCompletion(c completion) {
	r.Push(c.head, c.written)
	r.inFlight--
}

// finish runs on the worker when it stops: the device gives back what it
// holds, and everything handed over is pushed before the worker returns.
func (r *Vring) finish() {
	if r.life != nil {
		r.life.StopVring(r)
	}
	r.pushCompleted()
	for r.inFlight > 0 {
		r.pushCompletion(<-r.completed) // only batchers have chains in flight
	}
	r.notify()
}

// Stop stops the queue and returns its position once nothing touches the
// queue or guest memory any more: the worker has returned, the device has
// given back the chains it held, and every chain handed to HandleBatch has
// been completed and pushed. It closes kick and call.
func (r *Vring) Stop() virtio.QueueState {
	r.stopping.Store(true)
	close(r.stop)
	r.kick.Close() // wakes a wait on it
	if r.life != nil {
		r.life.InterruptVring(r)
	}
	<-r.done
	<-r.kickDone
	r.call.Close()
	return r.q.State()
}
