// Package rng is the virtio entropy device (virtio 1.2 §5.4), served as a vhost-user back-end.
package rng

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/sietch-vm/sietch/virtio"
	"github.com/sietch-vm/sietch/virtio/vhostuser"
)

// MaxPerRequest bounds the bytes given to one chain: a guest asking for
// gigabytes gets them a piece at a time, not all at once.
const MaxPerRequest = 64 << 10

// Device is a virtio-rng device fed by getrandom(2). It implements
// vhostuser.DeviceModel. At run time it needs getrandom and the eventfd
// reads and writes (plus the Go runtime's system calls).
type Device struct{}

var _ vhostuser.DeviceModel = (*Device)(nil)

// New returns a virtio-rng device.
func New() *Device { return &Device{} }

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

// HandleChain fills the request's device-writable buffers (§5.4.6).
func (d *Device) HandleChain(queue int, c *virtio.Chain, mem virtio.GuestMemory) (uint32, error) {
	return fill(mem, c)
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
				return n, fmt.Errorf("getrandom: %w", err)
			}
			b = b[k:]
			n += uint32(k)
		}
	}
	return n, nil
}
