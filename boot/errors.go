package boot

import (
	"errors"
	"fmt"
)

// Sentinel errors, for errors.Is: every problem with the kernel image, or
// with something not fitting in guest memory, wraps one of them.
var (
	// ErrTruncated: the file ends before a structure it declares.
	ErrTruncated = errors.New("kernel image is truncated")
	// ErrNotX86: neither a bzImage nor an x86-64 ELF file.
	ErrNotX86 = errors.New("not an x86-64 kernel")
	// ErrProtocolTooOld: a bzImage without the 64-bit entry point
	// (boot protocol 2.12 with XLF_KERNEL_64).
	ErrProtocolTooOld = errors.New("kernel boot protocol is too old")
	// ErrTooLarge: the kernel, command line or initrd does not fit in guest
	// memory below the MMIO gap.
	ErrTooLarge = errors.New("too large for guest memory")
	// ErrBadImage: the image is inconsistent (a segment outside the file,
	// overlapping the boot structures below 1 MiB, overlapping another).
	ErrBadImage = errors.New("bad kernel image")
	// ErrNoPVH: the PVH entry was asked for but the kernel has no
	// XEN_ELFNOTE_PHYS32_ENTRY note.
	ErrNoPVH = errors.New("kernel has no PVH entry point")
)

// errorf builds an error that wraps kind and reads "<kind>: <details>".
func errorf(kind error, format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{kind}, args...)...)
}
