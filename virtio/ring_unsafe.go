package virtio

import "unsafe"

// The guest's vCPUs read and write the rings concurrently with us. The 16-bit
// ring fields (idx, flags, used_event, avail_event) must be read and written
// as single 16-bit accesses so that neither side sees a torn value; Go's
// sync/atomic has no 16-bit operations, hence these helpers. On x86-64 an
// aligned 16-bit MOV is single-copy atomic, and the Go compiler neither
// splits nor merges a load or store through a *uint16. Ordering against other
// accesses is the caller's job (Queue.fence). Virtio rings are little-endian,
// as is every host sietch runs on (x86-64).

// load16 reads the ring field at b[off:off+2] with one 16-bit load.
func load16(b []byte, off uint64) uint16 {
	_ = b[off+1]
	return *(*uint16)(unsafe.Pointer(&b[off]))
}

// store16 writes the ring field at b[off:off+2] with one 16-bit store.
func store16(b []byte, off uint64, v uint16) {
	_ = b[off+1]
	*(*uint16)(unsafe.Pointer(&b[off])) = v
}

// hostAligned reports whether b's first byte sits at a host address that is a
// multiple of n (a power of two). An empty b counts as aligned.
func hostAligned(b []byte, n uintptr) bool {
	if len(b) == 0 {
		return true
	}
	return uintptr(unsafe.Pointer(&b[0]))&(n-1) == 0
}
