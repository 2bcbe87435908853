// Package uffd wraps userfaultfd(2) for lazily restored guest memory: create, register MISSING-mode ranges, resolve faults with UFFDIO_COPY or UFFDIO_WAKE.
//
// x/sys/unix has no userfaultfd ABI; the numbers and structs here are
// spelled out from include/uapi/linux/userfaultfd.h. A userfaultfd carries
// the address space that created it, so one process (the vmm) can resolve
// faults of another (a device process) that sent it the descriptor, as
// vhost-user's postcopy messages do.
package uffd
