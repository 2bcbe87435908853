package vhostuser

import (
	"errors"
	"fmt"
	"math"
	"os"

	"golang.org/x/sys/unix"

	"github.com/sietch-vm/sietch/uffd"
)

// guestMemory is the back-end's view of guest RAM, built from a
// SET_MEM_TABLE: each region's descriptor mapped MAP_SHARED. It implements
// virtio.GuestMemory.
type guestMemory struct {
	regions []mappedRegion
}

type mappedRegion struct {
	MemoryRegion
	mapping []byte // what mmap returned, for munmap
	data    []byte // the region itself: mapping minus the alignment slack
}

// mapMemory validates regions and maps one descriptor per region. It takes
// ownership of fds: they are closed whatever happens (a mapping outlives
// its descriptor).
func mapMemory(regions []MemoryRegion, fds []int) (*guestMemory, error) {
	defer closeFDs(fds)
	if err := checkRegions(regions, len(fds)); err != nil {
		return nil, err
	}
	m := &guestMemory{}
	page := uint64(os.Getpagesize())
	for i, r := range regions {
		if err := checkBacking(fds[i], r); err != nil {
			m.unmap()
			return nil, fmt.Errorf("memory region %d: %w", i, err)
		}
		start := r.MmapOffset &^ (page - 1)
		slack := r.MmapOffset - start
		length := slack + r.MemorySize
		if length > math.MaxInt || start > math.MaxInt64 {
			m.unmap()
			return nil, fmt.Errorf("memory region %d: %d bytes at offset %#x cannot be mapped", i, r.MemorySize, r.MmapOffset)
		}
		b, err := unix.Mmap(fds[i], int64(start), int(length), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		if err != nil {
			m.unmap()
			return nil, fmt.Errorf("map memory region %d (%d MiB at guest %#x): %w", i, r.MemorySize>>20, r.GuestPhysAddr, err)
		}
		m.regions = append(m.regions, mappedRegion{MemoryRegion: r, mapping: b, data: b[slack:]})
	}
	return m, nil
}

// checkRegions rejects tables a back-end cannot use unambiguously: empty or
// wrapping regions, overlaps in guest-physical or front-end address space,
// and a descriptor count that does not match.
func checkRegions(regions []MemoryRegion, nfds int) error {
	if len(regions) == 0 {
		return fmt.Errorf("memory table has no regions")
	}
	if len(regions) > MaxRegions {
		return fmt.Errorf("memory table has %d regions, at most %d supported", len(regions), MaxRegions)
	}
	if nfds != len(regions) {
		return fmt.Errorf("memory table has %d regions but %d file descriptors", len(regions), nfds)
	}
	for i, r := range regions {
		if r.MemorySize == 0 {
			return fmt.Errorf("memory region %d has zero size", i)
		}
		if r.GuestPhysAddr+r.MemorySize < r.GuestPhysAddr ||
			r.UserspaceAddr+r.MemorySize < r.UserspaceAddr ||
			r.MmapOffset+r.MemorySize < r.MmapOffset {
			return fmt.Errorf("memory region %d (%#x bytes) wraps the address space", i, r.MemorySize)
		}
		for j := range i {
			o := regions[j]
			if overlaps(r.GuestPhysAddr, o.GuestPhysAddr, r.MemorySize, o.MemorySize) {
				return fmt.Errorf("memory regions %d and %d overlap in guest-physical space (%#x, %#x)", j, i, o.GuestPhysAddr, r.GuestPhysAddr)
			}
			if overlaps(r.UserspaceAddr, o.UserspaceAddr, r.MemorySize, o.MemorySize) {
				return fmt.Errorf("memory regions %d and %d overlap in front-end address space (%#x, %#x)", j, i, o.UserspaceAddr, r.UserspaceAddr)
			}
		}
	}
	return nil
}

func overlaps(a, b, alen, blen uint64) bool {
	return a < b+blen && b < a+alen
}

// checkBacking makes sure the region lies inside its file: touching a
// mapping past the end of a file raises SIGBUS, which would kill the
// device process.
func checkBacking(fd int, r MemoryRegion) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("stat backing descriptor: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("backing descriptor is not a memfd or regular file (mode %#o)", st.Mode)
	}
	if uint64(st.Size) < r.MmapOffset+r.MemorySize {
		return fmt.Errorf("backing file is %d bytes, region needs %d at offset %d", st.Size, r.MemorySize, r.MmapOffset)
	}
	return nil
}

// Slice returns the n bytes of guest memory at gpa; they must lie in one
// region.
func (m *guestMemory) Slice(gpa, n uint64) ([]byte, error) {
	for _, r := range m.regions {
		if gpa < r.GuestPhysAddr || gpa-r.GuestPhysAddr >= r.MemorySize {
			continue
		}
		off := gpa - r.GuestPhysAddr
		if n > r.MemorySize-off {
			return nil, fmt.Errorf("guest memory %#x+%#x crosses the end of its region", gpa, n)
		}
		return r.data[off : off+n : off+n], nil
	}
	return nil, fmt.Errorf("guest address %#x is not in guest memory", gpa)
}

// guestAddr translates a front-end virtual address (as in SET_VRING_ADDR)
// to guest-physical through the region that contains it.
func (m *guestMemory) guestAddr(va uint64) (uint64, bool) {
	for _, r := range m.regions {
		if va >= r.UserspaceAddr && va-r.UserspaceAddr < r.MemorySize {
			return r.GuestPhysAddr + (va - r.UserspaceAddr), true
		}
	}
	return 0, false
}

func (m *guestMemory) unmap() {
	if m == nil {
		return
	}
	for _, r := range m.regions {
		unix.Munmap(r.mapping)
	}
	m.regions = nil
}

// table is the memory table with this process's addresses of each region,
// the POSTCOPY SET_MEM_TABLE reply.
func (m *guestMemory) table() MemoryTable {
	var t MemoryTable
	for _, r := range m.regions {
		mr := r.MemoryRegion
		mr.UserspaceAddr = uffd.Addr(r.data)
		t.Regions = append(t.Regions, mr)
	}
	return t
}

// registerUserfault asks u for missing-page faults on every region.
func (m *guestMemory) registerUserfault(u *uffd.FD) error {
	for i, r := range m.regions {
		if err := u.RegisterBytes(r.mapping); err != nil {
			return fmt.Errorf("memory region %d: %w", i, err)
		}
	}
	return nil
}

func (m *guestMemory) unregisterUserfault(u *uffd.FD) error {
	var errs []error
	for _, r := range m.regions {
		errs = append(errs, u.Unregister(uffd.Addr(r.mapping), uint64(len(r.mapping))))
	}
	return errors.Join(errs...)
}
