// Package rng is the virtio entropy device (virtio 1.2 §5.4), served as a vhost-user back-end.
package rng

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/sietch-vm/sietch/virtio"
	"github.com/sietch-vm/sietch/virtio/vhostuser"
)

// MaxPerRequest bounds the bytes given to one chain: a guest asking for
// gigabytes gets them a piece at a time, not all at once.
const MaxPerRequest = 64 << 10

// Device is a virtio-rng device fed by getrandom(2). It implements
// vhostuser.Device. At run time it needs getrandom and the eventfd reads
// and writes (plus the Go runtime's system calls).
type Device struct {
	log *slog.Logger

	mu      sync.Mutex
	runners map[int]*runner
}

type runner struct {
	q    *virtio.Queue
	done chan struct{}
}

var _ vhostuser.Device = (*Device)(nil)

// New returns a virtio-rng device; a nil log discards messages.
func New(log *slog.Logger) *Device {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Device{log: log, runners: map[int]*runner{}}
}

// Features: nothing device-specific (§5.4.3).
func (d *Device) Features() uint64 {
	return virtio.FeatureVersion1 | virtio.FeatureEventIdx | virtio.FeatureIndirectDesc
}

// ProtocolFeatures: REPLY_ACK and MQ (GET_QUEUE_NUM).
func (d *Device) ProtocolFeatures() uint64 {
	return vhostuser.ProtocolReplyAck | vhostuser.ProtocolMQ
}

// NumQueues is 1: requestq (§5.4.2).
func (d *Device) NumQueues() int { return 1 }

// MaxQueueSize is the most entries the request queue may have.
func (d *Device) MaxQueueSize() uint16 { return 1024 }

// ReadConfig: there is no config space (§5.4.4); everything reads zero.
func (d *Device) ReadConfig(off uint32, data []byte) { clear(data) }

// WriteConfig refuses: there is no config space.
func (d *Device) WriteConfig(off uint32, data []byte) error {
	return errors.New("virtio-rng has no config space")
}

// SetFeatures accepts any subset of Features.
func (d *Device) SetFeatures(acked uint64) error {
	if extra := acked &^ d.Features(); extra != 0 {
		return fmt.Errorf("virtio-rng: driver acked features %#x that were not offered", extra)
	}
	return nil
}

// Start serves queue 0 until Stop.
func (d *Device) Start(i int, q *virtio.Queue, mem virtio.GuestMemory, kick, call *vhostuser.EventFD) error {
	if i != 0 {
		return fmt.Errorf("virtio-rng has one queue, not %d", i+1)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.runners[i] != nil {
		return fmt.Errorf("virtio-rng queue %d is already running", i)
	}
	r := &runner{q: q, done: make(chan struct{})}
	d.runners[i] = r
	go d.run(r, mem, kick, call)
	return nil
}

// Stop waits for queue i's goroutine, which Backend woke by closing kick.
func (d *Device) Stop(i int) (virtio.QueueState, error) {
	d.mu.Lock()
	r := d.runners[i]
	delete(d.runners, i)
	d.mu.Unlock()
	if r == nil {
		return virtio.QueueState{}, fmt.Errorf("virtio-rng queue %d is not running", i)
	}
	<-r.done
	return r.q.State(), nil
}

func (d *Device) run(r *runner, mem virtio.GuestMemory, kick, call *vhostuser.EventFD) {
	defer close(r.done)
	q := r.q
	for {
		if _, err := kick.Wait(); err != nil {
			if !errors.Is(err, vhostuser.ErrEventFDClosed) {
				d.log.Warn("virtio-rng: kick eventfd", "err", err)
			}
			return
		}
		for {
			c, ok, err := q.Pop()
			var ce *virtio.ChainError
			if errors.As(err, &ce) {
				d.log.Debug("virtio-rng: bad chain", "err", err)
				if ce.Head < q.Size() {
					q.Push(ce.Head, 0)
				}
				continue
			}
			if err != nil {
				d.log.Warn("virtio-rng: queue unusable until the driver fixes it", "err", err)
				break
			}
			if !ok {
				if q.EnableNotify() {
					continue
				}
				break
			}
			n, err := fill(mem, c)
			if err != nil {
				d.log.Warn("virtio-rng: getrandom", "err", err)
			}
			q.Push(c.Head, n)
		}
		if q.NeedsNotify() {
			call.Signal()
		}
	}
}

// fill writes random bytes straight into c's device-writable buffers, at
// most MaxPerRequest, and returns how many (§5.4.6: readable buffers are
// ignored).
func fill(mem virtio.GuestMemory, c *virtio.Chain) (uint32, error) {
	var n uint32
	for _, desc := range c.Descs {
		if !desc.Write || n == MaxPerRequest {
			continue
		}
		want := min(desc.Len, MaxPerRequest-n)
		b, err := mem.Slice(desc.Addr, uint64(want))
		if err != nil || uint32(len(b)) != want {
			return n, fmt.Errorf("buffer [%#x, +%#x) is not guest RAM", desc.Addr, want)
		}
		for len(b) > 0 {
			k, err := unix.Getrandom(b, 0)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				return n, err
			}
			b = b[k:]
			n += uint32(k)
		}
	}
	return n, nil
}
