package net

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/sietch-vm/sietch/virtio"
)

// txState is the transmit queue's, used by its Vring's worker: this run's
// offloads, and writeTap's vector, callback (made once in New: a closure
// per write would cost an allocation per frame) and result.
type txState struct {
	o     offloads
	iov   [][]byte
	write func(fd uintptr) bool
	werr  error
}

// errStopped means a tap read or write was cut short by Stop.
var errStopped = errors.New("queue stopped")

// HandleChain transmits one chain: a virtio_net_hdr and a frame (virtio
// 1.2 §5.1.6.2), written to the tap in one writev. The chain goes back
// with nothing written into it.
func (d *Device) HandleChain(queue int, c *virtio.Chain, mem virtio.GuestMemory) (uint32, error) {
	if queue != TxQueue {
		return 0, fmt.Errorf("virtio-net: queue %d is filled by the device, not served", queue)
	}
	d.transmit(c, mem)
	return 0, nil
}

// transmit writes one chain's frame to the tap. A malformed chain or a frame
// the tap refuses is dropped and counted; a write cut short by Stop is
// dropped without counting.
func (d *Device) transmit(c *virtio.Chain, mem virtio.GuestMemory) {
	var hb [hdrLen]byte
	iov := append(d.tx.iov[:0], hb[:])
	got, total := 0, 0
	for _, desc := range c.Descs {
		if desc.Write {
			break // a transmit chain has nothing for the device to write; ignore it
		}
		b, err := mem.Slice(desc.Addr, uint64(desc.Len))
		if err != nil || len(b) != int(desc.Len) {
			d.stats.txDropped.Add(1)
			return
		}
		total += len(b)
		if total > hdrLen+maxFrameLen {
			d.stats.txDropped.Add(1)
			return
		}
		// The header is copied, then checked, so the guest cannot change it
		// between the check and the write; the frame is the kernel's to check.
		n := copy(hb[got:], b)
		got += n
		if len(b) > n {
			iov = append(iov, b[n:])
		}
	}
	if got < hdrLen {
		d.stats.txDropped.Add(1)
		return
	}
	h := parseHeader(hb[:])
	if err := h.check(total-hdrLen, d.tx.o); err != nil {
		d.stats.txDropped.Add(1)
		return
	}
	// num_buffers means nothing on transmit (§5.1.6.2); the tap ignores it.
	iov[0] = hb[:]
	d.tx.iov = iov // kept for the next chain
	if err := d.writeTap(); err != nil {
		if !errors.Is(err, errStopped) {
			d.stats.txDropped.Add(1)
		}
		return
	}
	d.stats.txPackets.Add(1)
	d.stats.txBytes.Add(uint64(total - hdrLen))
}

// writeTap writes the frame in d.tx.iov. The tap takes a frame whole or not
// at all; EAGAIN (a full tap queue) waits in Go's poller, which Stop's write
// deadline cuts short.
func (d *Device) writeTap() error {
	if err := d.rc.Write(d.tx.write); err != nil {
		return fmt.Errorf("%w: %v", errStopped, err)
	}
	if d.tx.werr != nil {
		return fmt.Errorf("write frame to tap: %w", d.tx.werr)
	}
	return nil
}

// writeOnce is writeTap's callback: one writev of d.tx.iov, and whether it
// is the answer (false: wait for room in the tap and call again).
func (d *Device) writeOnce(fd uintptr) bool {
	for {
		_, d.tx.werr = unix.Writev(int(fd), d.tx.iov)
		if d.tx.werr != unix.EINTR {
			break
		}
	}
	return d.tx.werr != unix.EAGAIN
}
