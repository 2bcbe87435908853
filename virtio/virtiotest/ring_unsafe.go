package virtiotest

import "unsafe"

// The device reads and writes the ring indexes concurrently with the test
// driver, so each 16-bit index is accessed with one 16-bit load or store
// (single-copy atomic on x86-64); a byte-wise store could be seen half done
// and look like a broken ring (virtio 1.2 §2.7.13.3).

func load16(b []byte) uint16 {
	_ = b[1]
	return *(*uint16)(unsafe.Pointer(&b[0]))
}

func store16(b []byte, v uint16) {
	_ = b[1]
	*(*uint16)(unsafe.Pointer(&b[0])) = v
}
