package blk

import (
	"sync"

	"github.com/sietch-vm/sietch/virtio"
	"github.com/sietch-vm/sietch/virtio/vhostuser"
)

// Per-queue concurrency: requests run on a few goroutines so that a slow
// read does not hold up the rest; completions may be pushed in any order
// (§5.2.6 imposes none).
const (
	workers     = 8
	maxInflight = 64
)

// pool serves one run of the request queue's batches. Its goroutines touch
// only the disk and the chains' buffers; the queue's Vring pushes what they
// complete.
type pool struct {
	work         chan *virtio.Chain
	wg           sync.WaitGroup
	writeThrough bool
}

// StartVring starts the pool for queue r.
func (d *Device) StartVring(r *vhostuser.Vring) error {
	d.mu.Lock()
	// Without FLUSH acked the driver cannot ask for durability, so every
	// write is made durable before it completes (§5.2.6.2, write-through).
	p := &pool{work: make(chan *virtio.Chain, maxInflight), writeThrough: d.acked&FeatureFlush == 0}
	d.mu.Unlock()
	mem := r.Memory()
	for range workers {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for c := range p.work {
				r.Complete(c.Head, d.handle(mem, c, p.writeThrough))
			}
		}()
	}
	d.pool = p
	return nil
}

// InterruptVring does nothing: requests in flight finish by themselves.
func (d *Device) InterruptVring(*vhostuser.Vring) {}

// StopVring ends the pool once its requests in flight have completed.
func (d *Device) StopVring(*vhostuser.Vring) {
	close(d.pool.work)
	d.pool.wg.Wait()
	d.pool = nil
}

// MaxInFlight bounds the requests the pool holds.
func (d *Device) MaxInFlight(int) int { return maxInflight }

// HandleBatch hands chains to the pool; it has room for all of them.
func (d *Device) HandleBatch(_ *vhostuser.Vring, chains []*virtio.Chain) {
	for _, c := range chains {
		d.pool.work <- c
	}
}

// HandleChain serves one request on the worker: the lone request the Vring
// does not hand to the pool.
func (d *Device) HandleChain(_ int, c *virtio.Chain, mem virtio.GuestMemory) (uint32, error) {
	return d.handle(mem, c, d.pool.writeThrough), nil
}
