package devices

import (
	"fmt"
	"slices"
	"sync"
)

// Device is a register block on a Bus. Offsets are relative to the device's
// base. Implementations must be safe for concurrent use and must accept any
// offset and any length without panicking: both come from the guest.
type Device interface {
	// Read fills data with the bytes at offset.
	Read(offset uint64, data []byte)
	// Write stores data at offset.
	Write(offset uint64, data []byte)
}

// BusRange describes one registered device, for info and debugging.
type BusRange struct {
	Base uint64
	Size uint64
	Name string
}

type busEntry struct {
	BusRange
	dev Device
}

// Bus routes accesses in an address space (port I/O or MMIO) to the device
// whose range contains them. It is safe for concurrent use; lookups take a
// read lock only, since they run on every vCPU exit.
type Bus struct {
	name    string
	mu      sync.RWMutex
	entries []busEntry // sorted by Base, non-overlapping
}

// NewBus returns an empty bus; name ("pio", "mmio") prefixes its errors.
func NewBus(name string) *Bus {
	return &Bus{name: name}
}

// Insert registers d for [base, base+size). It fails if the range is empty,
// wraps around the address space, or overlaps a registered range.
func (b *Bus) Insert(base, size uint64, name string, d Device) error {
	if d == nil {
		return fmt.Errorf("%s bus: insert %s at %#x: device is nil", b.name, name, base)
	}
	if size == 0 {
		return fmt.Errorf("%s bus: insert %s at %#x: size is 0; give the register block's length", b.name, name, base)
	}
	if base+size < base {
		return fmt.Errorf("%s bus: insert %s at %#x size %#x: range overflows the 64-bit address space", b.name, name, base, size)
	}
	last := base + size - 1

	b.mu.Lock()
	defer b.mu.Unlock()
	i, _ := slices.BinarySearchFunc(b.entries, base, func(e busEntry, t uint64) int {
		switch {
		case e.Base < t:
			return -1
		case e.Base > t:
			return 1
		}
		return 0
	})
	// Only the neighbours can overlap: the one starting at or after base and
	// the one before it.
	for _, j := range []int{i - 1, i} {
		if j < 0 || j >= len(b.entries) {
			continue
		}
		e := b.entries[j]
		eLast := e.Base + (e.Size - 1)
		if e.Base <= last && base <= eLast {
			return fmt.Errorf("%s bus: insert %s %s: overlaps %s %s; move one of them",
				b.name, name, fmtRange(base, size), e.Name, fmtRange(e.Base, e.Size))
		}
	}
	b.entries = slices.Insert(b.entries, i, busEntry{BusRange{base, size, name}, d})
	return nil
}

func fmtRange(base, size uint64) string {
	return fmt.Sprintf("[%#x-%#x]", base, base+(size-1))
}

// find returns the device covering [addr, addr+n) and the offset of addr in
// it. An access that is empty or straddles the end of a range is not handled.
func (b *Bus) find(addr uint64, n int) (Device, uint64, bool) {
	if n <= 0 {
		return nil, 0, false
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	// First entry with Base > addr; the candidate is the one before it.
	i, _ := slices.BinarySearchFunc(b.entries, addr, func(e busEntry, t uint64) int {
		if e.Base <= t {
			return -1
		}
		return 1
	})
	if i == 0 {
		return nil, 0, false
	}
	e := b.entries[i-1]
	off := addr - e.Base
	if off >= e.Size || uint64(n) > e.Size-off {
		return nil, 0, false
	}
	return e.dev, off, true
}

// Read fills data from the device covering [addr, addr+len(data)) and reports
// whether one did. The device is called without the bus lock held.
func (b *Bus) Read(addr uint64, data []byte) bool {
	d, off, ok := b.find(addr, len(data))
	if ok {
		d.Read(off, data)
	}
	return ok
}

// Write passes data to the device covering [addr, addr+len(data)) and reports
// whether one did.
func (b *Bus) Write(addr uint64, data []byte) bool {
	d, off, ok := b.find(addr, len(data))
	if ok {
		d.Write(off, data)
	}
	return ok
}

// Devices lists the registered ranges in address order.
func (b *Bus) Devices() []BusRange {
	b.mu.RLock()
	defer b.mu.RUnlock()
	out := make([]BusRange, len(b.entries))
	for i, e := range b.entries {
		out[i] = e.BusRange
	}
	return out
}
