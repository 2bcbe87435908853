package vmm

import (
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/sietch-vm/sietch/boot"
)

// CompatMode chooses whether the compatibility profile for hosts whose KVM
// emulates guest kernel mode is applied (see Probe and compat.go).
type CompatMode int

const (
	CompatAuto CompatMode = iota // probe the host and decide
	CompatOn
	CompatOff
)

// MaxCPUs bounds --cpus: the MP table and the guest kernel config (NR_CPUS)
// are sized for small microVMs.
const MaxCPUs = 64

// Config describes one VM.
type Config struct {
	Kernel  []byte // kernel image: bzImage or ELF vmlinux (or a test guest)
	Initrd  []byte // optional initramfs
	Cmdline string // kernel command line as given by the user
	MemSize uint64 // bytes of guest RAM
	CPUs    int
	Entry   boot.EntryMode
	Compat  CompatMode

	Console io.Writer    // receives the guest's serial output; nil discards it
	Log     *slog.Logger // nil uses slog.Default()
}

func (c *Config) validate() error {
	var errs []error
	if len(c.Kernel) == 0 {
		errs = append(errs, errors.New("no kernel image given"))
	}
	if c.MemSize < 16<<20 {
		errs = append(errs, fmt.Errorf("guest memory %d bytes is below the 16 MiB minimum", c.MemSize))
	}
	if c.MemSize%(2<<20) != 0 {
		errs = append(errs, fmt.Errorf("guest memory %d bytes is not a multiple of 2 MiB", c.MemSize))
	}
	if c.CPUs < 1 || c.CPUs > MaxCPUs {
		errs = append(errs, fmt.Errorf("vCPU count %d is outside 1..%d", c.CPUs, MaxCPUs))
	}
	return errors.Join(errs...)
}
