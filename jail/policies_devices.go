package jail

import "golang.org/x/sys/unix"

// vhostUserPolicy is BasePolicy plus what the vhost-user backend library
// does: messages with descriptors on the vmm socket, mapping the guest's
// memfd (never executable), checking its size, and eventfds.
var vhostUserPolicy = Compose("vhost-user", BasePolicy,
	allow("recvmsg", "vhost-user messages with SCM_RIGHTS"),
	allow("sendmsg", "vhost-user replies"),
	allow("fstat", "size of a memory region's memfd before mapping it"),
	allow("newfstatat", "os.File.Stat on a passed fd (AT_EMPTY_PATH)"),
	allow("dup", "eventfd copies for a ring restart"),
	allow("dup3", "eventfd copies for a ring restart"),
	fcntlCmd(unix.F_DUPFD),
	// glibc's malloc opens /sys/devices/system/cpu/online when a new thread
	// needs an arena; the root is empty, so ENOENT is the true answer.
	Rule{Syscall: "openat", Errno: unix.ENOENT, Why: "glibc internal reads (malloc arenas): nothing to open in the empty root"},
	allow("getsockopt", "net.FileConn: socket type; connection errors"),
	allow("getsockname", "net.FileConn"),
	allow("getpeername", "net.FileConn"),
	allow("ioctl", "UFFDIO_REGISTER: lazily restored guest memory (postcopy LISTEN)", ArgEq(1, uffdioRegister)),
	allow("ioctl", "UFFDIO_UNREGISTER: every page is in (postcopy END)", ArgEq(1, uffdioUnregister)),
)

// userfaultfd ioctls (include/uapi/linux/userfaultfd.h); package jail
// stays below package uffd, so the numbers are repeated (a test checks).
const (
	uffdioRegister   = 0xc020aa00
	uffdioUnregister = 0x8010aa01
)

// BlkPolicy confines the virtio-blk device: positioned I/O on its one
// image fd, durability and hole punching.
var BlkPolicy = Compose("blk", vhostUserPolicy,
	allow("pread64", "read requests"),
	allow("pwrite64", "write requests"),
	allow("preadv", "read requests spanning descriptors"),
	allow("pwritev", "write requests spanning descriptors"),
	allow("fdatasync", "FLUSH: durable writes"),
	allow("fsync", "FLUSH fallback"),
	allow("fallocate", "DISCARD and WRITE_ZEROES"),
	allow("lseek", "image size"),
)

// NetPolicy confines the virtio-net device: frames on its tap fd and the
// offload settings the guest negotiates.
var NetPolicy = Compose("net", vhostUserPolicy,
	allow("ioctl", "TUNSETOFFLOAD: probe, then what the guest acked", ArgEq(1, unix.TUNSETOFFLOAD)),
	allow("ioctl", "TUNGETIFF: check the tap's mode", ArgEq(1, unix.TUNGETIFF)),
	allow("ioctl", "TUNGETVNETHDRSZ: check the header size", ArgEq(1, unix.TUNGETVNETHDRSZ)),
	allow("ppoll", "wait for the tap and the rx kick"),
	allow("poll", "wait for the tap and the rx kick"),
)

// VsockPolicy confines the virtio-vsock device: it accepts host
// connections on the listener the vmm bound and gets guest-initiated
// connections from the vmm's dial broker; it connects to nothing itself.
var VsockPolicy = Compose("vsock", vhostUserPolicy,
	allow("accept4", "host connections on the vmm's listener"),
	allow("shutdown", "half-close from the guest (SHUTDOWN)"),
	allow("setsockopt", "net package: buffer sizes"),
)

// RNGPolicy confines the virtio-rng device: getrandom is already in the base.
var RNGPolicy = Compose("rng", vhostUserPolicy)
