package kvm

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// DefaultPath is the KVM device node.
const DefaultPath = "/dev/kvm"

// System is an open /dev/kvm: the system-wide ioctls and the VM factory.
type System struct {
	fd int
}

// Open opens /dev/kvm.
func Open() (*System, error) { return OpenPath(DefaultPath) }

// OpenPath opens a KVM device node at path.
func OpenPath(path string) (*System, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w: is KVM enabled and are you in the kvm group?", path, err)
	}
	return &System{fd: fd}, nil
}

// Close closes the device; VMs created from it stay usable.
func (s *System) Close() error { return closeFD(&s.fd, "/dev/kvm") }

// FD returns the file descriptor of /dev/kvm.
func (s *System) FD() int { return s.fd }

// APIVersion returns KVM_GET_API_VERSION; every kernel since 2.6.22 says 12.
func (s *System) APIVersion() (int, error) {
	v, err := ioctl(s.fd, reqGetAPIVersion, 0)
	if err != nil {
		return 0, fmt.Errorf("KVM_GET_API_VERSION: %w", err)
	}
	return v, nil
}

// CheckExtension returns KVM_CHECK_EXTENSION for c: 0 if unsupported, else
// 1 or a capability-specific value (a count, a bit mask).
func (s *System) CheckExtension(c Cap) (int, error) {
	v, err := ioctl(s.fd, reqCheckExtension, uintptr(c))
	if err != nil {
		return 0, fmt.Errorf("KVM_CHECK_EXTENSION %d: %w", c, err)
	}
	return v, nil
}

// VCPUMmapSize returns the size of the per-vCPU kvm_run mapping.
func (s *System) VCPUMmapSize() (int, error) {
	v, err := ioctl(s.fd, reqGetVCPUMmapSize, 0)
	if err != nil {
		return 0, fmt.Errorf("KVM_GET_VCPU_MMAP_SIZE: %w", err)
	}
	return v, nil
}

// maxListEntries bounds the retry loops of the list ioctls; real lists hold
// a few hundred entries at most.
const maxListEntries = 1 << 16

// SupportedCPUID returns the CPUID leaves KVM can present to a guest.
func (s *System) SupportedCPUID() ([]CPUIDEntry2, error) {
	for n := 64; n <= maxListEntries; n *= 2 {
		entries, err := cpuidIoctl(s.fd, reqGetSupportedCPUID, make([]CPUIDEntry2, n))
		if errors.Is(err, unix.E2BIG) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("KVM_GET_SUPPORTED_CPUID: %w", err)
		}
		return entries, nil
	}
	return nil, fmt.Errorf("KVM_GET_SUPPORTED_CPUID: more than %d entries", maxListEntries)
}

// MSRIndexList returns the MSRs KVM saves and restores for a guest.
func (s *System) MSRIndexList() ([]uint32, error) {
	n := 0
	for n <= maxListEntries {
		// struct kvm_msr_list: u32 nmsrs, then the indices.
		buf := make([]uint32, 1+n)
		buf[0] = uint32(n)
		_, err := ioctlPtr(s.fd, reqGetMSRIndexList, unsafe.Pointer(&buf[0]))
		if errors.Is(err, unix.E2BIG) {
			// The kernel reports the needed count in nmsrs.
			n = max(int(buf[0]), 2*n, 64)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("KVM_GET_MSR_INDEX_LIST: %w", err)
		}
		got := min(int(buf[0]), n)
		return append([]uint32(nil), buf[1:1+got]...), nil
	}
	return nil, fmt.Errorf("KVM_GET_MSR_INDEX_LIST: more than %d entries", maxListEntries)
}

// CreateVM creates a VM of the default type.
func (s *System) CreateVM() (*VM, error) {
	size, err := s.VCPUMmapSize()
	if err != nil {
		return nil, fmt.Errorf("create VM: %w", err)
	}
	if uintptr(size) < unsafe.Sizeof(Run{}) {
		return nil, fmt.Errorf("create VM: vCPU mmap size %d is smaller than struct kvm_run (%d)", size, unsafe.Sizeof(Run{}))
	}
	fd, err := ioctl(s.fd, reqCreateVM, 0)
	if err != nil {
		return nil, fmt.Errorf("KVM_CREATE_VM: %w (too many VMs, or no memory?)", err)
	}
	return &VM{fd: fd, mmapSize: size, slots: map[uint32]uint64{}}, nil
}

// cpuidIoctl passes entries inside a struct kvm_cpuid2 and returns the
// entries the kernel left there.
func cpuidIoctl(fd int, req uintptr, entries []CPUIDEntry2) ([]CPUIDEntry2, error) {
	const hdr = unsafe.Sizeof(cpuid2{})
	const entSize = unsafe.Sizeof(CPUIDEntry2{})
	// A []uint64 backing keeps the header and entries 8-byte aligned.
	buf := make([]uint64, (hdr+uintptr(len(entries))*entSize+7)/8)
	h := (*cpuid2)(unsafe.Pointer(&buf[0]))
	h.Nent = uint32(len(entries))
	view := unsafe.Slice((*CPUIDEntry2)(unsafe.Add(unsafe.Pointer(&buf[0]), hdr)), len(entries))
	copy(view, entries)
	if _, err := ioctlPtr(fd, req, unsafe.Pointer(&buf[0])); err != nil {
		return nil, err
	}
	n := min(int(h.Nent), len(entries))
	return append([]CPUIDEntry2(nil), view[:n]...), nil
}

// closeFD closes *fd once; later calls are no-ops.
func closeFD(fd *int, what string) error {
	if *fd < 0 {
		return nil
	}
	err := unix.Close(*fd)
	*fd = -1
	if err != nil {
		return fmt.Errorf("close %s: %w", what, err)
	}
	return nil
}
