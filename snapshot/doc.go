// Package snapshot is the on-disk snapshot format: a versioned, checksummed state file and sparse guest memory files (full, diff, merge).
//
// A snapshot is a directory holding StateFile (see format.go for the
// layout) and the memory file State.Memory.File. Write the memory file
// (WriteFull or WriteDiff) first and the state last: Write replaces the
// state file atomically, so a directory with a readable state is a whole
// snapshot. Read refuses anything else with an error wrapping one of the
// Err* values.
//
// # Restoring memory lazily
//
// Guest RAM must stay one shared object after restore, because device
// processes map the same memfd through vhost-user SET_MEM_TABLE. So the vmm
// cannot simply map the memory file MAP_PRIVATE: device processes would not
// see the guest's writes, nor the guest theirs. The mechanism chosen by
// measurement (docs/SNAPSHOTS.md) is userfaultfd: restore creates a fresh,
// empty memfd, maps it MAP_SHARED, and registers the mapping in MISSING
// mode; the first touch of a page, by a vCPU (KVM faults from kernel mode)
// or the vmm, stops until a handler copies that page of the memory file in
// with UFFDIO_COPY. The page then lives in the memfd's page cache, so every
// mapping sees it. Each device process registers its own mapping with its
// own userfaultfd (a device may DMA into a page the guest has not touched
// since restore), and that fd is served from the same memory file; a fault
// another mapping already filled gets EEXIST and is just woken. The
// prototype and its tests are uffd_unsafe.go and uffd_test.go. Until every
// page is filled, every mapping of the memfd must be registered, and
// nothing may write to it through the fd, or a page would read as zeros.
package snapshot
