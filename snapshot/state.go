package snapshot

import (
	"time"

	"github.com/sietch-vm/sietch/boot"
	"github.com/sietch-vm/sietch/devices"
	"github.com/sietch-vm/sietch/kvm"
	"github.com/sietch-vm/sietch/virtio"
)

// FormatVersion is the state file format this package writes and reads.
// Any change to State or its encoding that an older reader would
// misunderstand bumps it; there is no silent forward compatibility.
const FormatVersion = 1

// Memory kinds.
const (
	KindFull = "full" // the memory file holds all of guest RAM
	KindDiff = "diff" // the memory file holds only Memory.DirtyPages; the rest is in Memory.Base
)

// State is everything in a snapshot except guest RAM: enough to rebuild the
// VM in a new process and continue it where it stopped.
type State struct {
	Version int // FormatVersion; Write fills it in
	Created time.Time
	Machine Machine
	VCPUs   []VCPU // indexed by vCPU id: VCPUs[i].ID == i
	VM      VM
	Devices Devices
	Memory  Memory
}

// Machine is the configuration the VM was built with, as the guest saw it.
type Machine struct {
	MemSize uint64
	CPUs    int
	// Cmdline is the final kernel command line, compatibility profile
	// included, as the guest got it: restore must not rebuild it.
	Cmdline string
	Compat  bool // the compatibility profile was applied
	Entry   boot.EntryMode
	Disks   []Disk
	// VhostUserBlk are external vhost-user-blk backends (sockets); they
	// follow Disks in virtio order, as in vmm.Config.
	VhostUserBlk []string `json:",omitempty"`
	Net          *Net     `json:",omitempty"`
	Vsock        *Vsock   `json:",omitempty"`
	RNG          bool
}

// Disk is one virtio-blk disk, recorded so that restore never pairs memory
// with a disk that has moved on: either SHA256 (the content at snapshot
// time, checked on restore) or Clone (a copy-on-write clone taken at
// snapshot time, which restore attaches instead of Path) is set.
//
// A read-only disk has no clone: nothing writes it, so restores and forks
// attach Path itself once its content is confirmed. FileID lets restore
// confirm it without reading it: the kernel changes a file's ctime on
// every write and no one can set it back, so a file whose identity still
// matches still holds the content hashed then; any other file is hashed.
type Disk struct {
	Path     string
	ReadOnly bool
	Size     int64
	SHA256   string  `json:",omitempty"` // hex
	FileID   *FileID `json:",omitempty"` // Path's identity when SHA256 was taken
	Clone    string  `json:",omitempty"` // relative to the snapshot directory, or absolute
}

// FileID identifies one version of a file: device, inode, size and the
// modification and change times in nanoseconds.
type FileID struct {
	Dev, Ino         uint64
	Size             int64
	MtimeNS, CtimeNS int64
}

// Net is the virtio-net device: TAP interface and guest MAC address.
type Net struct {
	Tap string
	MAC string // "02:00:00:00:00:01"; a fork gets a new one
}

// Vsock is the virtio-vsock device: guest CID and host unix socket.
type Vsock struct {
	CID uint64
	UDS string
}

// VCPU is one vCPU's architectural and KVM state.
//
// Restore order matters (the lead's restore code follows it): CPUID, then
// MSRs (some are only writable once CPUID allows them), Sregs, Regs, FPU,
// then XSave (KVM_SET_FPU drops MXCSR; XSAVE carries it), XCRS, LAPIC
// (after Sregs: KVM_SET_SREGS writes CR8 into the APIC's TPR, and the LAPIC
// page carries TPR with the PPR derived from it), Events, MPState,
// DebugRegs, and TSCKHz before the first KVM_RUN.
type VCPU struct {
	ID        int
	Regs      kvm.Regs
	Sregs     kvm.Sregs
	FPU       kvm.FPU
	XSave     *kvm.XSave // nil without KVM_CAP_XSAVE
	XCRS      *kvm.XCRS  // nil without KVM_CAP_XCRS
	MSRs      []kvm.MSREntry
	LAPIC     kvm.LAPICState
	Events    kvm.VCPUEvents
	MPState   kvm.MPState
	DebugRegs kvm.DebugRegs
	TSCKHz    uint32
	CPUID     []kvm.CPUIDEntry2
}

// VM is the VM-wide in-kernel device state.
type VM struct {
	PICMaster kvm.IRQChip
	PICSlave  kvm.IRQChip
	IOAPIC    kvm.IRQChip
	PIT       kvm.PITState2
	Clock     kvm.ClockData
}

// Devices is the state of the vmm's own device models.
type Devices struct {
	Serial devices.SerialState
	I8042  devices.I8042State
	Virtio []Virtio // in transport (MMIO slot) order
}

// Virtio is one virtio-mmio device: the transport's registers and, per
// queue, the position the device process reported (GET_VRING_BASE).
type Virtio struct {
	Name      string // unique, e.g. "blk0"
	Kind      string // "blk", "net", "vsock", "rng", "vhost-user-blk"
	Transport virtio.MMIOState
	Queues    []virtio.QueueState // len(Queues) == len(Transport.Queues)
}

// Memory describes the memory file.
type Memory struct {
	// File is the memory file's name relative to the snapshot directory.
	File string
	Size uint64 // bytes; equals Machine.MemSize and the file's size
	Kind string // KindFull or KindDiff
	// Base (diff only) is the snapshot directory or memory file the diff
	// applies to; relative paths are relative to this snapshot directory.
	Base string `json:",omitempty"`
	// DirtyPages (diff only) has one bit per 4 KiB page of the memory file
	// (bit i%64 of word i/64 is file offset i*4096): the pages the diff
	// holds. A hole in a diff file cannot say "unchanged" from "zero",
	// hence the bitmap.
	DirtyPages Bitmap `json:",omitempty"`
	// Regions map the memory file to guest-physical addresses, as
	// vmm.Layout made them.
	Regions []Region
	// Sums are the memory file's chunk checksums (see SumMemory); nil in
	// snapshots made before they existed, which restore unchecked.
	Sums *Sums `json:",omitempty"`
}

// Region is guest-physical [GPA, GPA+Size) backed by the memory file at
// [Offset, Offset+Size).
type Region struct {
	GPA    uint64
	Size   uint64
	Offset uint64
}
