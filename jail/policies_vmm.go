package jail

import "golang.org/x/sys/unix"

// KVM and userfaultfd request numbers the whole vmm process uses once it
// runs (include/uapi/linux/kvm.h and userfaultfd.h, x86-64), checked
// against the C headers by hand and pinned by testdata/vmm.golden.
const (
	kvmCheckExtension    = 0xae03
	kvmGetMSRIndexList   = 0xc004ae02
	kvmGetSupportedCPUID = 0xc008ae05
	kvmGetDirtyLog       = 0x4010ae42
	kvmClearDirtyLog     = 0xc018aec0
	kvmSetUserMemRegion  = 0x4020ae46
	kvmGetIRQChip        = 0xc208ae62
	kvmSetIRQChip        = 0x8208ae63
	kvmIRQFD             = 0x4020ae76
	kvmIOEventFD         = 0x4040ae79
	kvmSetClock          = 0x4030ae7b
	kvmGetClock          = 0x8030ae7c
	kvmGetPIT2           = 0x8070ae9f
	kvmSetPIT2           = 0x4070aea0
	kvmSetCPUID2         = 0x4008ae90
	kvmGetCPUID2         = 0xc008ae91
	uffdioAPI            = 0xc018aa3f
	uffdioWake           = 0x8010aa02
	uffdioCopy           = 0xc028aa03
	uffdioZeropage       = 0xc020aa04
	seccompSetModeFilter = 1 // SECCOMP_SET_MODE_FILTER
)

// VMMPolicy is for every thread of the vmm process once the VM is built
// and its device processes run (Load, with TSYNC; vCPU threads then add
// VCPUThreadPolicy on top). What the vmm does from then on: run vCPUs,
// save and restore VM state for snapshots, serve its control socket,
// write snapshot files, copy disk clones, serve lazily restored memory,
// broker guest vsock connections to host unix sockets, and reap its
// device processes. It makes no process (no fork, no execve), no
// namespace or mount, loads no module or BPF, traces nothing, opens no
// socket but a unix one, and sets up no new VM, vCPU or device.
var VMMPolicy = Compose("vmm", BasePolicy, append(append([]Rule{},
	VCPUThreadPolicy.Rules[len(BasePolicy.Rules):]...), // vCPU threads keep their own calls
	// VM state for snapshots, dirty tracking for diff snapshots, and the
	// interrupt plumbing of virtio devices the guest (re)activates.
	kvmIoctl(kvmCheckExtension, "KVM_CHECK_EXTENSION: snapshot capabilities"),
	kvmIoctl(kvmGetMSRIndexList, "KVM_GET_MSR_INDEX_LIST: MSRs to save"),
	kvmIoctl(kvmGetSupportedCPUID, "KVM_GET_SUPPORTED_CPUID: snapshot compatibility"),
	kvmIoctl(kvmGetCPUID2, "KVM_GET_CPUID2: vCPU state in a snapshot"),
	kvmIoctl(kvmSetCPUID2, "KVM_SET_CPUID2: vCPU state"),
	kvmIoctl(kvmGetDirtyLog, "KVM_GET_DIRTY_LOG: diff snapshots"),
	kvmIoctl(kvmClearDirtyLog, "KVM_CLEAR_DIRTY_LOG: diff snapshots"),
	kvmIoctl(kvmSetUserMemRegion, "KVM_SET_USER_MEMORY_REGION: turn dirty logging on and off on existing slots"),
	kvmIoctl(kvmGetIRQChip, "KVM_GET_IRQCHIP: snapshot"),
	kvmIoctl(kvmSetIRQChip, "KVM_SET_IRQCHIP: snapshot resume"),
	kvmIoctl(kvmGetClock, "KVM_GET_CLOCK: snapshot"),
	kvmIoctl(kvmSetClock, "KVM_SET_CLOCK: resume after a pause"),
	kvmIoctl(kvmGetPIT2, "KVM_GET_PIT2: snapshot"),
	kvmIoctl(kvmSetPIT2, "KVM_SET_PIT2: snapshot resume"),
	kvmIoctl(kvmIRQFD, "KVM_IRQFD: a virtio device the guest activates"),
	kvmIoctl(kvmIOEventFD, "KVM_IOEVENTFD: a virtio device the guest activates"),
	kvmIoctl(kvmGetTSCKHz, "KVM_GET_TSC_KHZ: snapshot"),
	// Lazily restored memory (pager).
	kvmIoctl(uffdioAPI, "UFFDIO_API: a device's userfaultfd handed over"),
	kvmIoctl(uffdioRegister, "UFFDIO_REGISTER: lazily restored memory"),
	kvmIoctl(uffdioUnregister, "UFFDIO_UNREGISTER: restore done"),
	kvmIoctl(uffdioWake, "UFFDIO_WAKE: a page another thread filled"),
	kvmIoctl(uffdioCopy, "UFFDIO_COPY: fill a faulting page"),
	kvmIoctl(uffdioZeropage, "UFFDIO_ZEROPAGE: fill a faulting page"),
	allow("ppoll", "pager: wait for a fault or its stop"),
	allow("poll", "pager: wait for a fault or its stop"),
	// Snapshot files: the state, memory and disk clones under the
	// directory a control request names.
	allow("openat", "snapshot files"),
	allow("newfstatat", "snapshot directories"),
	allow("fstat", "snapshot files"),
	allow("statx", "snapshot files"),
	allow("lseek", "snapshot files, memfds"),
	allow("pread64", "snapshot files"),
	allow("pwrite64", "snapshot files"),
	allow("preadv", "snapshot files"),
	allow("pwritev", "snapshot files"),
	allow("fsync", "snapshot files are durable before they count"),
	allow("fdatasync", "snapshot files"),
	allow("ftruncate", "snapshot memory files"),
	allow("fallocate", "snapshot memory files"),
	allow("copy_file_range", "disk clones in a snapshot"),
	allow("ioctl", "FICLONE: disk clones share blocks where the filesystem can", ArgEq(1, unix.FICLONE)),
	allow("sendfile", "disk clones: io.Copy where copy_file_range cannot"),
	allow("splice", "disk clones: io.Copy where copy_file_range cannot"),
	allow("renameat", "snapshot files appear whole"),
	allow("renameat2", "snapshot files appear whole"),
	allow("unlinkat", "temporary snapshot files, the control socket at exit"),
	allow("mkdirat", "snapshot directories"),
	allow("fchmodat", "snapshot file modes"),
	allow("fchmod", "snapshot file modes"),
	allow("getdents64", "snapshot directories"),
	allow("uname", "Go's os package"),
	allow("memfd_create", "vCPU threads compile their filter through a memfd"),
	// vCPU threads add their own, narrower filter; adding one never widens.
	allow("prctl", "vCPU threads: no_new_privs before their filter", ArgEq(0, unix.PR_SET_NO_NEW_PRIVS)),
	allow("seccomp", "vCPU threads: their own filter, on that thread only",
		ArgEq(0, seccompSetModeFilter), ArgEq(1, 0)),
	// The control socket and the vsock broker: unix sockets only.
	allow("socket", "vsock broker: a guest connection to a host unix socket", ArgEq(0, unix.AF_UNIX)),
	allow("connect", "vsock broker"),
	allow("accept4", "control socket"),
	allow("getsockname", "control socket, vsock broker"),
	allow("getpeername", "vsock broker"),
	allow("sendmsg", "vhost-user requests, descriptors to device processes"),
	allow("recvmsg", "vhost-user replies"),
	allow("sendto", "control socket"),
	allow("recvfrom", "control socket"),
	allow("shutdown", "control socket, vsock broker"),
	allow("setsockopt", "control socket"),
	allow("getsockopt", "connect completion"),
	fcntlCmd(unix.F_DUPFD),
	// Device processes: stop and reap them.
	allow("pidfd_send_signal", "stop a device process"),
	allow("kill", "stop a device process (no pidfd)"),
	allow("waitid", "reap a device process"),
	allow("wait4", "reap a device process"),
)...)
