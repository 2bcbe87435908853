package vhostuser

import (
	"encoding/binary"
	"fmt"
)

// Payload limits.
const (
	// MaxRegions is the number of memory regions SET_MEM_TABLE carries
	// without VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS.
	MaxRegions = 8
	// MaxConfigSize bounds a GET_CONFIG/SET_CONFIG access, as in QEMU.
	MaxConfigSize = 256
)

// Payload sizes on the wire.
const (
	u64Size          = 8
	vringStateSize   = 8
	vringAddrSize    = 40
	memoryRegionSize = 32
	memoryTableHead  = 8
	configHeadSize   = 12
)

func marshalU64(v uint64) []byte {
	return binary.NativeEndian.AppendUint64(nil, v)
}

func unmarshalU64(b []byte) (uint64, error) {
	if len(b) != u64Size {
		return 0, fmt.Errorf("u64 payload is %d bytes, want %d", len(b), u64Size)
	}
	return binary.NativeEndian.Uint64(b), nil
}

// VringState is the "vring state description": a queue index and a number
// whose meaning depends on the request (size, base index, enable).
type VringState struct {
	Index, Num uint32
}

// Marshal encodes s.
func (s VringState) Marshal() []byte {
	b := make([]byte, vringStateSize)
	binary.NativeEndian.PutUint32(b[0:], s.Index)
	binary.NativeEndian.PutUint32(b[4:], s.Num)
	return b
}

// Unmarshal decodes b into s.
func (s *VringState) Unmarshal(b []byte) error {
	if len(b) != vringStateSize {
		return fmt.Errorf("vring state payload is %d bytes, want %d", len(b), vringStateSize)
	}
	s.Index = binary.NativeEndian.Uint32(b[0:])
	s.Num = binary.NativeEndian.Uint32(b[4:])
	return nil
}

// VringAddr is the "vring address description". Desc, Used and Avail are
// front-end user virtual addresses (no IOMMU here); Log is a guest address
// used only for dirty logging.
type VringAddr struct {
	Index, Flags           uint32
	Desc, Used, Avail, Log uint64
}

// Marshal encodes a in the wire order index, flags, desc, used, avail, log.
func (a VringAddr) Marshal() []byte {
	b := make([]byte, vringAddrSize)
	binary.NativeEndian.PutUint32(b[0:], a.Index)
	binary.NativeEndian.PutUint32(b[4:], a.Flags)
	binary.NativeEndian.PutUint64(b[8:], a.Desc)
	binary.NativeEndian.PutUint64(b[16:], a.Used)
	binary.NativeEndian.PutUint64(b[24:], a.Avail)
	binary.NativeEndian.PutUint64(b[32:], a.Log)
	return b
}

// Unmarshal decodes b into a.
func (a *VringAddr) Unmarshal(b []byte) error {
	if len(b) != vringAddrSize {
		return fmt.Errorf("vring address payload is %d bytes, want %d", len(b), vringAddrSize)
	}
	a.Index = binary.NativeEndian.Uint32(b[0:])
	a.Flags = binary.NativeEndian.Uint32(b[4:])
	a.Desc = binary.NativeEndian.Uint64(b[8:])
	a.Used = binary.NativeEndian.Uint64(b[16:])
	a.Avail = binary.NativeEndian.Uint64(b[24:])
	a.Log = binary.NativeEndian.Uint64(b[32:])
	return nil
}

// MemoryRegion describes one shared memory region: guest-physical range,
// the front-end's virtual address for it, and where it starts in the file
// descriptor sent with it.
type MemoryRegion struct {
	GuestPhysAddr, MemorySize, UserspaceAddr, MmapOffset uint64
}

// MemoryTable is the SET_MEM_TABLE payload.
type MemoryTable struct {
	Regions []MemoryRegion
}

// Marshal encodes t with exactly len(t.Regions) regions, as QEMU sends it.
func (t MemoryTable) Marshal() []byte {
	b := make([]byte, memoryTableHead+memoryRegionSize*len(t.Regions))
	binary.NativeEndian.PutUint32(b[0:], uint32(len(t.Regions)))
	for i, r := range t.Regions {
		o := memoryTableHead + memoryRegionSize*i
		binary.NativeEndian.PutUint64(b[o:], r.GuestPhysAddr)
		binary.NativeEndian.PutUint64(b[o+8:], r.MemorySize)
		binary.NativeEndian.PutUint64(b[o+16:], r.UserspaceAddr)
		binary.NativeEndian.PutUint64(b[o+24:], r.MmapOffset)
	}
	return b
}

// Unmarshal decodes b into t. It accepts a payload sized for exactly the
// stated number of regions, or for all MaxRegions slots (the C struct's
// size, which some front-ends send whole).
func (t *MemoryTable) Unmarshal(b []byte) error {
	if len(b) < memoryTableHead {
		return fmt.Errorf("memory table payload is %d bytes, shorter than its %d-byte head", len(b), memoryTableHead)
	}
	n := binary.NativeEndian.Uint32(b)
	if n > MaxRegions {
		return fmt.Errorf("memory table has %d regions, at most %d supported", n, MaxRegions)
	}
	exact := memoryTableHead + memoryRegionSize*int(n)
	full := memoryTableHead + memoryRegionSize*MaxRegions
	if len(b) != exact && len(b) != full {
		return fmt.Errorf("memory table of %d regions is %d bytes, want %d", n, len(b), exact)
	}
	t.Regions = make([]MemoryRegion, n)
	for i := range t.Regions {
		o := memoryTableHead + memoryRegionSize*i
		t.Regions[i] = MemoryRegion{
			GuestPhysAddr: binary.NativeEndian.Uint64(b[o:]),
			MemorySize:    binary.NativeEndian.Uint64(b[o+8:]),
			UserspaceAddr: binary.NativeEndian.Uint64(b[o+16:]),
			MmapOffset:    binary.NativeEndian.Uint64(b[o+24:]),
		}
	}
	return nil
}

// Config space access flags (vhost-user.rst "Virtio device config space").
const (
	ConfigFlagWritable  = 0 // a driver write to a writable field
	ConfigFlagMigration = 1 // restoring state on a migration destination
)

// ConfigSpace is the GET_CONFIG/SET_CONFIG payload: an access of Size bytes
// at Offset in the device's config space. In a GET_CONFIG request Payload
// is Size zero bytes; a reply with Size 0 reports an error.
type ConfigSpace struct {
	Offset, Size, Flags uint32
	Payload             []byte
}

// Marshal encodes c; Size is taken from len(c.Payload).
func (c ConfigSpace) Marshal() []byte {
	b := make([]byte, configHeadSize+len(c.Payload))
	binary.NativeEndian.PutUint32(b[0:], c.Offset)
	binary.NativeEndian.PutUint32(b[4:], uint32(len(c.Payload)))
	binary.NativeEndian.PutUint32(b[8:], c.Flags)
	copy(b[configHeadSize:], c.Payload)
	return b
}

// Unmarshal decodes b into c, checking that the stated size matches the
// bytes present and stays within MaxConfigSize.
func (c *ConfigSpace) Unmarshal(b []byte) error {
	if len(b) < configHeadSize {
		return fmt.Errorf("config payload is %d bytes, shorter than its %d-byte head", len(b), configHeadSize)
	}
	c.Offset = binary.NativeEndian.Uint32(b[0:])
	c.Size = binary.NativeEndian.Uint32(b[4:])
	c.Flags = binary.NativeEndian.Uint32(b[8:])
	if c.Size > MaxConfigSize {
		return fmt.Errorf("config access of %d bytes exceeds %d", c.Size, MaxConfigSize)
	}
	if int(c.Size) != len(b)-configHeadSize {
		return fmt.Errorf("config access says %d bytes but carries %d", c.Size, len(b)-configHeadSize)
	}
	c.Payload = append([]byte(nil), b[configHeadSize:]...)
	return nil
}
