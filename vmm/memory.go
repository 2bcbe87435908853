package vmm

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/sietch-vm/sietch/boot"
)

// Region is one contiguous piece of guest RAM: guest-physical [GPA, GPA+Size)
// backed by the memfd at [Offset, Offset+Size).
type Region struct {
	GPA    uint64
	Size   uint64
	Offset uint64
}

// Memory is guest RAM: one memfd, mapped MAP_SHARED in the vmm so that device
// processes can map the same pages (vhost-user SET_MEM_TABLE passes the fd).
type Memory struct {
	fd      int
	mapping []byte
	regions []Region
}

// Layout splits size bytes of RAM around the 32-bit MMIO gap: RAM below
// boot.MMIOGapStart, the rest from boot.MMIOGapEnd (4 GiB) up.
func Layout(size uint64) []Region {
	low := boot.LowMemSize(size)
	rs := []Region{{GPA: 0, Size: low, Offset: 0}}
	if size > low {
		rs = append(rs, Region{GPA: boot.MMIOGapEnd, Size: size - low, Offset: low})
	}
	return rs
}

// NewMemory creates size bytes of guest RAM in a memfd. Pages are allocated
// by the kernel on first touch, so an idle guest costs only what it uses.
func NewMemory(size uint64) (*Memory, error) {
	if size == 0 || size%pageSize != 0 {
		return nil, fmt.Errorf("guest memory size %d is not a positive multiple of %d", size, pageSize)
	}
	fd, err := unix.MemfdCreate("sietch-guest-ram", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("size guest memory memfd to %d MiB: %w", size>>20, err)
	}
	m, err := unix.Mmap(fd, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_NORESERVE)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("map guest memory %d MiB: %w (is the address space limited? try a smaller --mem)", size>>20, err)
	}
	return &Memory{fd: fd, mapping: m, regions: Layout(size)}, nil
}

const pageSize = 4096

// FD is the memfd holding guest RAM.
func (m *Memory) FD() int { return m.fd }

// Size is the amount of guest RAM in bytes.
func (m *Memory) Size() uint64 { return uint64(len(m.mapping)) }

// Regions lists guest RAM as guest-physical ranges.
func (m *Memory) Regions() []Region { return m.regions }

// Mapping is the whole memfd mapping, in memfd order.
func (m *Memory) Mapping() []byte { return m.mapping }

// Low is RAM from guest-physical 0 up to the MMIO gap: where boot writes.
func (m *Memory) Low() []byte { return m.mapping[:m.regions[0].Size] }

// Slice returns guest-physical [gpa, gpa+n) if it lies inside one region.
func (m *Memory) Slice(gpa, n uint64) ([]byte, error) {
	for _, r := range m.regions {
		if gpa >= r.GPA && gpa-r.GPA <= r.Size && n <= r.Size-(gpa-r.GPA) {
			off := r.Offset + gpa - r.GPA
			return m.mapping[off : off+n], nil
		}
	}
	return nil, fmt.Errorf("guest range [%#x, +%#x) is not RAM", gpa, n)
}

// Close unmaps guest memory and closes the memfd.
func (m *Memory) Close() error {
	var first error
	if m.mapping != nil {
		if err := unix.Munmap(m.mapping); err != nil {
			first = fmt.Errorf("unmap guest memory: %w", err)
		}
		m.mapping = nil
	}
	if m.fd >= 0 {
		if err := unix.Close(m.fd); err != nil && first == nil {
			first = fmt.Errorf("close guest memory fd: %w", err)
		}
		m.fd = -1
	}
	return first
}
