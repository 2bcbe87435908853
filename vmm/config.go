package vmm

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

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

	Disks []DiskConfig
	// VhostUserBlk are unix sockets of vhost-user-blk backends the vmm
	// does not start (e.g. qemu-storage-daemon); they follow Disks.
	VhostUserBlk []string
	Net          *NetConfig
	Vsock        *VsockConfig
	RNG          bool
	// NoJail runs device processes unconfined: for debugging only.
	NoJail bool
	// DeviceUID is the host uid and gid device processes run as; 0 means
	// jail.NobodyID. A vmm that drops to a uid of its own gives it here.
	DeviceUID int
	// SeccompVCPU confines each vCPU thread with jail.VCPUThreadPolicy:
	// KVM_RUN, vCPU state, interrupts and vhost-user messages, nothing that
	// opens files or creates VMs or processes.
	SeccompVCPU bool
	// DeviceExe is the binary re-executed for device processes
	// (default /proc/self/exe; it must handle the `device` subcommand).
	DeviceExe string
	// DeviceStderr receives device processes' logs (default os.Stderr).
	DeviceStderr *os.File

	testDeviceArgs []string // extra flags for every device process (tests)

	Console io.Writer // receives the guest's serial output; nil discards it
	// QuietHint: on a host that emulates guest kernel mode, a guest that has
	// printed nothing on its console this long after Run is told about once
	// on the log (slow boot or stuck kernel; see quiet.go). 0: never.
	QuietHint time.Duration
	Log       *slog.Logger // nil uses slog.Default()
}

// DiskConfig is one virtio-blk disk: a raw image file.
type DiskConfig struct {
	Path     string
	ReadOnly bool
}

// NetConfig is one virtio-net device on an existing TAP interface.
type NetConfig struct {
	Tap string
	MAC net.HardwareAddr // nil: a locally administered address is made up
	// File, when set, is Tap already open (tap.Open), for a vmm that
	// cannot open it by name (a jailed one, in a network namespace of
	// its own). The machine takes it over.
	File *os.File
}

// VsockConfig is the virtio-vsock device: guest CID and the host unix
// socket path (Firecracker's scheme: CONNECT <port> on UDS, guest
// connections to port P go to UDS_P).
type VsockConfig struct {
	CID uint64
	UDS string
}

func (c *Config) virtioCount() int {
	n := len(c.Disks) + len(c.VhostUserBlk)
	if c.Net != nil {
		n++
	}
	if c.Vsock != nil {
		n++
	}
	if c.RNG {
		n++
	}
	return n
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
	if n := c.virtioCount(); n > MaxVirtio {
		errs = append(errs, fmt.Errorf("%d virtio devices, at most %d fit the interrupt lines", n, MaxVirtio))
	}
	if c.Vsock != nil && (c.Vsock.CID < 3 || c.Vsock.CID > 0xffffffff) {
		errs = append(errs, fmt.Errorf("vsock guest CID %d is outside 3..2^32-1 (0-2 are reserved)", c.Vsock.CID))
	}
	if c.Vsock != nil && c.Vsock.UDS == "" {
		errs = append(errs, errors.New("vsock needs a host unix socket path"))
	}
	if c.Net != nil && c.Net.Tap == "" {
		errs = append(errs, errors.New("net needs a TAP interface name"))
	}
	return errors.Join(errs...)
}
