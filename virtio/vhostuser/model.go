package vhostuser

import "github.com/sietch-vm/sietch/virtio"

// DeviceModel is a virtio device as a device process implements it: its
// features and config space, and what it does with one chain. Backend
// serves the vhost-user protocol for it and runs each started queue on a
// Vring, which does the ring work (waiting for kicks, popping, returning
// malformed chains, pushing, interrupting the driver, stopping for
// snapshots), so that the device holds only its own logic.
//
// Backend calls the configuration methods from the goroutine running
// Serve, and HandleChain from the queue's worker goroutine.
type DeviceModel interface {
	// Features are the virtio device features offered; Backend adds
	// FeatureProtocolFeatures.
	Features() uint64
	// ProtocolFeatures are the vhost-user protocol features the device
	// wants; Backend offers them ANDed with those it implements (MQ,
	// REPLY_ACK, CONFIG).
	ProtocolFeatures() uint64
	NumQueues() int
	MaxQueueSize() uint16
	// ReadConfig fills data from config space at off; bytes past the end of
	// the device's config space read as zero.
	ReadConfig(off uint32, data []byte)
	// WriteConfig stores a driver write; an error is reported to the
	// front-end and the session goes on.
	WriteConfig(off uint32, data []byte) error
	// SetFeatures receives the features the driver acked (without
	// FeatureProtocolFeatures); an error is reported to the front-end.
	SetFeatures(acked uint64) error
	// HandleChain serves one chain the driver made available on queue and
	// returns how many bytes it wrote into the chain's device-writable
	// buffers; the Vring returns the chain to the driver with that length.
	// An error is logged as a warning and the chain is returned all the
	// same: errors are for failures on the host side. A chain the guest got
	// wrong is the device's to answer (a status byte, a drop counter).
	HandleChain(queue int, c *virtio.Chain, mem virtio.GuestMemory) (written uint32, err error)
}

// The optional interfaces below give a DeviceModel more of the Vring than
// HandleChain does. A device implements only those it needs.

// VringLifecycle is implemented by a device that keeps per-run state or
// goroutines of its own, or that needs its queues' Vrings: to Wake them
// from its own goroutines or to complete chains later (BatchHandler).
type VringLifecycle interface {
	// StartVring runs on the goroutine serving the protocol before r's
	// worker starts. An error refuses the queue; the front-end is told.
	StartVring(r *Vring) error
	// InterruptVring runs when the queue is being stopped, on the stopping
	// goroutine, while r's worker may still be inside the device. It makes
	// any wait of the device's own there return (a deadline in the past on
	// a tap read or write). It must not touch the queue.
	InterruptVring(r *Vring)
	// StopVring runs on r's worker once it takes no more chains. The device
	// returns every chain it holds (r.Push, or r.Complete from its own
	// goroutines) and ends the goroutines StartVring made. The worker then
	// pushes the outstanding completions, and Stop returns.
	StopVring(r *Vring)
}

// VringFiller is implemented by a device that fills some of its queues
// from sources of its own (frames from a tap, host socket data, events)
// rather than serving what the driver posts: rust-vmm's back-ends register
// such sources in their queue's epoll loop; here the device calls
// r.Wake from any goroutine when its source has something.
type VringFiller interface {
	// Fills reports whether the device fills queue: its Vring then calls
	// FillVring instead of popping chains for HandleChain.
	Fills(queue int) bool
	// FillVring runs on r's worker at every kick of the queue and every
	// r.Wake. The device takes chains with r.Next as long as it has
	// something to put into them and returns them with r.Push; it may keep
	// chains for later runs (StopVring gives them back).
	FillVring(r *Vring)
}

// BatchHandler is implemented by a device that serves chains concurrently,
// off the worker goroutine (virtio-blk's I/O goroutines), and completes
// them in any order.
type BatchHandler interface {
	// MaxInFlight bounds the chains of queue handed to HandleBatch and not
	// completed yet; the worker pops no more until some complete.
	MaxInFlight(queue int) int
	// HandleBatch takes the chains the worker popped; the device completes
	// each with r.Complete, from any goroutine. chains is valid only during
	// the call. A lone chain with nothing in flight goes to HandleChain on
	// the worker instead: handing it over costs more than serving a read
	// from the page cache.
	HandleBatch(r *Vring, chains []*virtio.Chain)
}

// BadChainObserver is implemented by a device that counts the malformed
// chains its Vrings returned unused.
type BadChainObserver interface {
	BadChain(queue int, err *virtio.ChainError)
}
