package net

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/sietch-vm/sietch/virtio"
	"github.com/sietch-vm/sietch/virtio/vhostuser"
)

// runTx is the transmit queue's goroutine: each chain is a virtio_net_hdr and
// a frame (virtio 1.2 §5.1.6.2), written to the tap in one writev.
func (d *Device) runTx(r *runner, mem virtio.GuestMemory, kick, call *vhostuser.EventFD, acked uint64) {
	q, o := r.q, txOffloads(acked)
	iov := make([][]byte, 0, 8)
	batch := 0
	for !r.stop.Load() {
		if _, err := kick.Wait(); err != nil {
			return // closed by the back-end: Stop follows
		}
		for !r.stop.Load() {
			c, ok, err := q.Pop()
			if err != nil {
				if d.returnBad(q, err) {
					continue
				}
				break // a broken ring: wait for the next kick
			}
			if !ok {
				if q.EnableNotify() {
					continue // added before the driver saw our request for kicks
				}
				break
			}
			var werr error
			iov, werr = d.transmit(c, mem, iov, o)
			q.Push(c.Head, 0)
			if errors.Is(werr, errStopped) {
				break
			}
			if batch++; batch == notifyBatch {
				notify(q, call) // let the driver reclaim buffers during a long burst
				batch = 0
			}
		}
		notify(q, call)
	}
}

// notifyBatch is how many chains a queue completes, at most, before it
// checks whether the driver wants an interrupt.
const notifyBatch = 64

// errStopped means a tap write was cut short by Stop.
var errStopped = errors.New("queue stopped")

// transmit writes one chain's frame to the tap. A malformed chain or a frame
// the tap refuses is dropped and counted; only errStopped is returned. iov is
// scratch space, returned for reuse.
func (d *Device) transmit(c *virtio.Chain, mem virtio.GuestMemory, iov [][]byte, o offloads) ([][]byte, error) {
	var hb [hdrLen]byte
	iov = append(iov[:0], hb[:])
	got, total := 0, 0
	for _, desc := range c.Descs {
		if desc.Write {
			break // a transmit chain has nothing for the device to write; ignore it
		}
		b, err := mem.Slice(desc.Addr, uint64(desc.Len))
		if err != nil || len(b) != int(desc.Len) {
			d.stats.txDropped.Add(1)
			return iov, nil
		}
		total += len(b)
		if total > hdrLen+maxFrameLen {
			d.stats.txDropped.Add(1)
			return iov, nil
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
		return iov, nil
	}
	h := parseHeader(hb[:])
	if err := h.check(total-hdrLen, o); err != nil {
		d.stats.txDropped.Add(1)
		return iov, nil
	}
	// num_buffers means nothing on transmit (§5.1.6.2); the tap ignores it.
	iov[0] = hb[:]
	if err := d.writeTap(iov); err != nil {
		if errors.Is(err, errStopped) {
			return iov, err
		}
		d.stats.txDropped.Add(1)
		return iov, nil
	}
	d.stats.txPackets.Add(1)
	d.stats.txBytes.Add(uint64(total - hdrLen))
	return iov, nil
}

// writeTap writes one frame. The tap takes a frame whole or not at all;
// EAGAIN (a full tap queue) waits in Go's poller, which Stop's write
// deadline cuts short.
func (d *Device) writeTap(iov [][]byte) error {
	var werr error
	err := d.rc.Write(func(fd uintptr) bool {
		for {
			_, werr = unix.Writev(int(fd), iov)
			if werr != unix.EINTR {
				break
			}
		}
		return werr != unix.EAGAIN
	})
	if err != nil {
		return fmt.Errorf("%w: %v", errStopped, err)
	}
	if werr != nil {
		return fmt.Errorf("write frame to tap: %w", werr)
	}
	return nil
}
