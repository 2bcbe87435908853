package vhostuser

import (
	"fmt"

	"github.com/sietch-vm/sietch/virtio"
)

// The back-end's queue bookkeeping: each queue's set-up as the front-end
// sends it piece by piece, and starting and stopping its Vring as the
// pieces come and go.

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

// update changes queue i's setup. A running queue is stopped first and
// restarted afterwards if it is still complete, so the device always sees
// a consistent configuration.
func (b *Backend) update(i int, change func(*ringSetup)) error {
	b.stop(i)
	change(&b.vrings[i])
	return b.tryStart(i)
}

// restartAll stops the running queues, applies change, and starts them
// again, so no queue's worker sees a half-made change.
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
