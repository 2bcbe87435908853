package vmm

import "unsafe"

// hostAddr is the host virtual address of b's first byte, as KVM's
// userspace_addr wants it. b must be non-empty and stay mapped.
func hostAddr(b []byte) uint64 { return uint64(uintptr(unsafe.Pointer(&b[0]))) }
