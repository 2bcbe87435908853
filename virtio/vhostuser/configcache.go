package vhostuser

import (
	"errors"
	"fmt"
	"sync"
)

// ConfigCache is a front-end's copy of its back-end's config space, so that
// a driver's config reads, each one a vCPU exit, are answered without a
// round trip to the device process (Firecracker's front-end keeps one too).
// Writes go through to the back-end. The zero ConfigCache, for a back-end
// without the CONFIG protocol feature, has no config space: it reads as
// zeros and refuses writes.
type ConfigCache struct {
	fe   *Frontend
	mu   sync.Mutex
	data []byte // as much of the config space as the back-end lets be read
}

// LoadConfig reads the config space of fe's back-end (which must have
// acked ProtocolConfig) into a new cache.
func LoadConfig(fe *Frontend) (*ConfigCache, error) {
	c := &ConfigCache{fe: fe}
	if err := c.Refresh(); err != nil {
		return nil, err
	}
	return c, nil
}

// Refresh reads the config space again, after the device changed it: the
// whole MaxConfigSize window if the back-end lets it be read, else the
// longest part from offset 0 it does, found by bisection. libvhost-user
// back-ends (qemu-storage-daemon) refuse reads past their struct, and read
// from offset 0 whatever offset is asked, as QEMU only ever asks for 0.
func (c *ConfigCache) Refresh() error {
	if c.fe == nil {
		return nil
	}
	data, err := c.fe.GetConfig(0, MaxConfigSize)
	if errors.Is(err, errConfigRefused) {
		data, err = c.readLongest()
	}
	if err != nil {
		return fmt.Errorf("read config space: %w", err)
	}
	c.mu.Lock()
	c.data = data
	c.mu.Unlock()
	return nil
}

// readLongest bisects for the most bytes the back-end reads from offset 0,
// knowing it refuses MaxConfigSize. A back-end refusing every size has none.
func (c *ConfigCache) readLongest() ([]byte, error) {
	var best []byte
	ok, refused := uint32(0), uint32(MaxConfigSize)
	for refused-ok > 1 {
		n := ok + (refused-ok)/2
		b, err := c.fe.GetConfig(0, n)
		switch {
		case err == nil:
			ok, best = n, b
		case errors.Is(err, errConfigRefused):
			refused = n
		default:
			return nil, err
		}
	}
	return best, nil
}

// Read copies config space [off, off+len(data)) into data; bytes past what
// the back-end lets be read are zero.
func (c *ConfigCache) Read(off uint64, data []byte) {
	clear(data)
	c.mu.Lock()
	defer c.mu.Unlock()
	if off < uint64(len(c.data)) {
		copy(data, c.data[off:])
	}
}

// Write sends a driver's write to the back-end (SET_CONFIG) and, once the
// back-end took it (as far as REPLY_ACK tells), keeps it in the copy.
func (c *ConfigCache) Write(off uint32, data []byte) error {
	if c.fe == nil {
		return errors.New("the back-end has no config space (CONFIG protocol feature not negotiated)")
	}
	if err := c.fe.SetConfig(off, data); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if uint64(off) < uint64(len(c.data)) {
		copy(c.data[off:], data)
	}
	return nil
}
