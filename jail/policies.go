package jail

import "golang.org/x/sys/unix"

// Clone flags that make a new process or namespace; a thread has none of
// them and has CLONE_THREAD (which needs CLONE_SIGHAND, which needs
// CLONE_VM: clone(2)).
const cloneNotThread = unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC |
	unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWCGROUP |
	unix.CLONE_NEWTIME | unix.CLONE_VFORK | unix.CLONE_PARENT | unix.CLONE_PTRACE

func allow(name, why string, args ...ArgCond) Rule { return Rule{Syscall: name, Args: args, Why: why} }

// noExec is the condition "no PROT_EXEC in argument 2", for mmap and
// mprotect: a device process never maps new code.
var noExec = ArgMaskedEq(2, unix.PROT_EXEC, 0)

func fcntlCmd(cmd uint64) Rule {
	return allow("fcntl", "os.NewFile, SetNonblock, Dup, CloseOnExec", ArgEq(1, cmd))
}

// BasePolicy is what a Go program (cgo-linked, as libseccomp makes it)
// needs after start-up: the runtime's memory, threads, signals, timers and
// network poller, plus read/write/close on descriptors it already holds.
// It opens nothing and creates no process. Device policies add their own
// calls with Compose.
var BasePolicy = Policy{
	Name:    "base",
	Default: ActKillProcess,
	Rules: []Rule{
		// Memory.
		allow("mmap", "heap, stacks; never executable", noExec),
		allow("mprotect", "glibc thread stack guard pages; never executable", noExec),
		allow("munmap", "heap, stacks"),
		allow("madvise", "heap scavenger"),
		allow("brk", "glibc malloc in cgo threads"),
		// Threads: clone only with CLONE_THREAD and no namespace or process flags.
		allow("clone", "new runtime threads, threads only",
			ArgMaskedEq(0, unix.CLONE_THREAD|cloneNotThread, unix.CLONE_THREAD)),
		// clone3 takes its flags in memory, where seccomp cannot look;
		// ENOSYS makes glibc fall back to clone.
		{Syscall: "clone3", Errno: unix.ENOSYS, Why: "glibc pthread_create tries it first"},
		allow("set_robust_list", "glibc thread start"),
		allow("rseq", "glibc thread start"),
		allow("exit", "thread exit"),
		allow("exit_group", "process exit"),
		allow("futex", "runtime locks, notes, thread wake-up"),
		allow("sched_yield", "runtime spinning"),
		allow("sched_getaffinity", "runtime.NumCPU, GOMAXPROCS recomputation"),
		allow("gettid", "runtime"),
		allow("getpid", "runtime signals to itself"),
		allow("tgkill", "goroutine preemption (SIGURG)"),
		// Signals.
		allow("rt_sigreturn", "return from any signal handler"),
		allow("rt_sigprocmask", "runtime thread start, signal masks"),
		allow("rt_sigaction", "os/signal"),
		allow("sigaltstack", "runtime thread start"),
		allow("restart_syscall", "interrupted sleeps"),
		// Time.
		allow("nanosleep", "runtime usleep"),
		allow("clock_nanosleep", "sleeps"),
		allow("clock_gettime", "time when the vDSO falls back"),
		allow("gettimeofday", "time when the vDSO falls back"),
		allow("getrandom", "runtime and crypto/rand"),
		// Network poller.
		allow("epoll_create1", "netpoll init"),
		allow("epoll_ctl", "netpoll"),
		allow("epoll_pwait", "netpoll"),
		allow("epoll_wait", "netpoll"),
		allow("eventfd2", "netpoll wake-up"),
		// Descriptors already held.
		allow("read", "fds passed in"),
		allow("write", "fds passed in, stderr logs"),
		allow("readv", "fds passed in"),
		allow("writev", "fds passed in"),
		allow("close", "fds"),
		fcntlCmd(unix.F_GETFD),
		fcntlCmd(unix.F_SETFD),
		fcntlCmd(unix.F_GETFL),
		fcntlCmd(unix.F_SETFL),
		fcntlCmd(unix.F_DUPFD_CLOEXEC),
	},
}

// TestPolicy is BasePolicy plus what this package's tests inspect: reading
// the (empty) root directory, capabilities, rlimits and the no_new_privs
// bit. It is not meant for devices.
var TestPolicy = Compose("test", BasePolicy,
	allow("openat", "probe: list / and try /etc/passwd"),
	allow("getdents64", "probe: list /"),
	allow("fstat", "probe: os.File"),
	allow("newfstatat", "probe: os.File"),
	allow("capget", "probe: capabilities"),
	allow("prlimit64", "probe: rlimits"),
	allow("getrlimit", "probe: rlimits"),
	allow("prctl", "probe: bounding set", ArgEq(0, unix.PR_CAPBSET_READ)),
	allow("prctl", "probe: no_new_privs", ArgEq(0, unix.PR_GET_NO_NEW_PRIVS)),
	allow("prctl", "probe: dumpable", ArgEq(0, unix.PR_GET_DUMPABLE)),
	allow("uname", "probe: hostname"),
	allow("getuid", "probe: identity"),
)

func kvmIoctl(req uint64, name string) Rule {
	return allow("ioctl", name, ArgEq(1, req))
}

// VCPUThreadPolicy is for the vmm's own vCPU threads (LoadThread): the
// Go runtime, KVM_RUN and the vCPU state ioctls (run, snapshot, restore),
// interrupts raised by platform devices handled on the vCPU thread, and
// write(2) for the UART and eventfds. It must not create VMs, vCPUs or
// memory slots, open files or make processes.
var VCPUThreadPolicy = Compose("vcpu", BasePolicy,
	kvmIoctl(kvmRun, "KVM_RUN"),
	kvmIoctl(kvmGetRegs, "KVM_GET_REGS"),
	kvmIoctl(kvmSetRegs, "KVM_SET_REGS"),
	kvmIoctl(kvmGetSregs, "KVM_GET_SREGS"),
	kvmIoctl(kvmSetSregs, "KVM_SET_SREGS"),
	kvmIoctl(kvmGetFPU, "KVM_GET_FPU"),
	kvmIoctl(kvmSetFPU, "KVM_SET_FPU"),
	kvmIoctl(kvmGetMSRs, "KVM_GET_MSRS"),
	kvmIoctl(kvmSetMSRs, "KVM_SET_MSRS"),
	kvmIoctl(kvmGetLAPIC, "KVM_GET_LAPIC"),
	kvmIoctl(kvmSetLAPIC, "KVM_SET_LAPIC"),
	kvmIoctl(kvmGetMPState, "KVM_GET_MP_STATE"),
	kvmIoctl(kvmSetMPState, "KVM_SET_MP_STATE"),
	kvmIoctl(kvmGetVCPUEvents, "KVM_GET_VCPU_EVENTS"),
	kvmIoctl(kvmSetVCPUEvents, "KVM_SET_VCPU_EVENTS"),
	kvmIoctl(kvmGetDebugRegs, "KVM_GET_DEBUGREGS"),
	kvmIoctl(kvmSetDebugRegs, "KVM_SET_DEBUGREGS"),
	kvmIoctl(kvmGetXSave, "KVM_GET_XSAVE"),
	kvmIoctl(kvmSetXSave, "KVM_SET_XSAVE"),
	kvmIoctl(kvmGetXCRs, "KVM_GET_XCRS"),
	kvmIoctl(kvmSetXCRs, "KVM_SET_XCRS"),
	kvmIoctl(kvmInterrupt, "KVM_INTERRUPT"),
	kvmIoctl(kvmKVMClockCtrl, "KVM_KVMCLOCK_CTRL"),
	kvmIoctl(kvmGetTSCKHz, "KVM_GET_TSC_KHZ"),
	kvmIoctl(kvmIRQLine, "KVM_IRQ_LINE"),
	allow("sendmsg", "virtio-mmio config exits: vhost-user requests to a device process"),
	allow("recvmsg", "virtio-mmio config exits: vhost-user replies"),
)
