package net

import (
	"fmt"
	"time"

	"github.com/sietch-vm/sietch/virtio"
	"github.com/sietch-vm/sietch/virtio/vhostuser"
)

// The device's side of its queues' runs: what each run takes from the
// features the driver acked, and how Stop wakes a wait on the tap.

// StartVring prepares a run of queue r with the offloads the driver acked.
// A previous Stop set a deadline in the past on the tap to wake a wait; it
// is cleared.
func (d *Device) StartVring(r *vhostuser.Vring) error {
	acked := d.acked.Load()
	switch r.Index() {
	case RxQueue:
		if err := d.tap.SetReadDeadline(time.Time{}); err != nil {
			return fmt.Errorf("virtio-net: receive queue: clear tap deadline: %w", err)
		}
		d.startRx(r, acked)
	case TxQueue:
		if err := d.tap.SetWriteDeadline(time.Time{}); err != nil {
			return fmt.Errorf("virtio-net: transmit queue: clear tap deadline: %w", err)
		}
		d.tx.o = txOffloads(acked)
	}
	return nil
}

// InterruptVring wakes a wait on the tap with a deadline in the past; it
// fails only if the tap is closed, which wakes it too.
func (d *Device) InterruptVring(r *vhostuser.Vring) {
	past := time.Unix(1, 0)
	if r.Index() == RxQueue {
		d.tap.SetReadDeadline(past)
	} else {
		d.tap.SetWriteDeadline(past)
	}
}

// StopVring ends a run of the receive queue (see stopRx); the transmit
// queue holds nothing between chains.
func (d *Device) StopVring(r *vhostuser.Vring) {
	if r.Index() == RxQueue {
		d.stopRx(r)
	}
}

// Fills: the receive queue is filled from the tap.
func (d *Device) Fills(queue int) bool { return queue == RxQueue }

// FillVring delivers frames from the tap to the receive queue.
func (d *Device) FillVring(r *vhostuser.Vring) { d.fillRx(r) }

// BadChain counts a malformed chain the queue returned unused.
func (d *Device) BadChain(int, *virtio.ChainError) { d.stats.badChains.Add(1) }
