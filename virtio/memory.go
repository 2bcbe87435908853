package virtio

// GuestMemory maps guest-physical addresses to host memory. The vmm's RAM and
// a device process's view of the vhost-user memory table both satisfy it.
type GuestMemory interface {
	// Slice returns guest-physical [gpa, gpa+n) as one contiguous host slice,
	// or an error if any part is not RAM. It must not panic on any input,
	// including gpa+n overflowing.
	Slice(gpa, n uint64) ([]byte, error)
}
