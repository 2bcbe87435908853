package initrt

import (
	"path"

	"golang.org/x/sys/unix"
)

// Where the root switch puts its pieces while still in the initramfs. They
// stay reachable after the switch only through the old root (see Root).
const (
	NewRoot   = "/newroot"
	lowerDir  = "/.sietch/lower"
	rwDir     = "/.sietch/rw"
	upperDir  = rwDir + "/upper"
	workDir   = rwDir + "/work"
	rootFSExt = "ext4"
)

// Mount is one step of the mount plan: mount(2) Source on Target, or, with
// MS_MOVE, move the mount at Source to Target. Target "/" with MS_MOVE is the
// root switch: move Source onto / and chroot into it.
type Mount struct {
	Source, Target, FSType string
	Flags                  uintptr
	Data                   string
	// Dirs are created (if missing) before mounting: directories the
	// mount's data names, on a file system mounted earlier in the plan.
	Dirs []string
	// Concurrent mounts next to each other in a plan may run at the same
	// time: their kernel work (hundreds of ms for ext4 on hosts that
	// emulate guest kernel mode) then spreads over the vCPUs.
	Concurrent bool
}

// The API file systems PID 1 and every program expect, in mount order
// (mount points under /dev need devtmpfs first).
var apiMounts = []Mount{
	{Source: "proc", Target: "/proc", FSType: "proc", Flags: unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
	{Source: "sysfs", Target: "/sys", FSType: "sysfs", Flags: unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
	{Source: "devtmpfs", Target: "/dev", FSType: "devtmpfs", Flags: unix.MS_NOSUID, Data: "mode=0755"},
	// gid=5 is the tty group of Debian images; ptmxmode=0666 lets every
	// user open /dev/pts/ptmx (Documentation/filesystems/devpts.rst).
	{Source: "devpts", Target: "/dev/pts", FSType: "devpts", Flags: unix.MS_NOSUID | unix.MS_NOEXEC, Data: "mode=0620,gid=5,ptmxmode=0666"},
	{Source: "shm", Target: "/dev/shm", FSType: "tmpfs", Flags: unix.MS_NOSUID | unix.MS_NODEV, Data: "mode=1777"},
	{Source: "run", Target: "/run", FSType: "tmpfs", Flags: unix.MS_NOSUID | unix.MS_NODEV, Data: "mode=0755"},
	{Source: "tmp", Target: "/tmp", FSType: "tmpfs", Flags: unix.MS_NOSUID | unix.MS_NODEV, Data: "mode=1777"},
}

// movedMounts are carried from the initramfs into the new root, submounts
// (/dev/pts, /dev/shm) with them.
var movedMounts = []string{"/proc", "/sys", "/dev", "/run", "/tmp"}

// InitramfsDirs are the mount points of the API file systems that live in
// the initramfs itself: building them into the archive saves a mkdir each
// at start-up. Mode 0555 for the kernel's, 0755 for the rest.
var InitramfsDirs = map[string]uint32{
	"proc": 0o555, "sys": 0o555, "dev": 0o755, "run": 0o755, "tmp": 0o1777, "etc": 0o755,
	path.Base(NewRoot): 0o755, ".sietch": 0o700, ".sietch/lower": 0o755, ".sietch/rw": 0o755,
}

// APIMounts is the first part of every plan: /proc, /sys, /dev, /dev/pts,
// /dev/shm, /run and /tmp, in this order.
func APIMounts() []Mount {
	return append([]Mount(nil), apiMounts...)
}

// RootMounts is the root switch cfg asks for: nothing without sietch.root;
// else the root device read-only, the writable layer (tmpfs or an ext4
// device), overlayfs of the two at NewRoot, the API file systems moved into
// it, and NewRoot moved onto /.
func RootMounts(cfg Config) []Mount {
	if cfg.Root == "" {
		return nil
	}
	ms := []Mount{{Source: cfg.Root, Target: lowerDir, FSType: rootFSExt, Flags: unix.MS_RDONLY, Concurrent: true}}
	if cfg.Overlay == OverlayTmpfs || cfg.Overlay == "" {
		ms = append(ms, Mount{Source: "overlay-rw", Target: rwDir, FSType: "tmpfs", Data: "mode=0755", Concurrent: true})
	} else {
		ms = append(ms, Mount{Source: cfg.Overlay, Target: rwDir, FSType: rootFSExt, Concurrent: true})
	}
	// Documentation/filesystems/overlayfs.rst, "Multiple lower layers" and
	// "Upper and Lower": work must be an empty directory on upper's fs.
	ms = append(ms, Mount{
		Source: "overlay", Target: NewRoot, FSType: "overlay",
		Data: "lowerdir=" + lowerDir + ",upperdir=" + upperDir + ",workdir=" + workDir,
		Dirs: []string{upperDir, workDir},
	})
	for _, m := range movedMounts {
		ms = append(ms, Mount{Source: m, Target: NewRoot + m, Flags: unix.MS_MOVE})
	}
	return append(ms, Mount{Source: NewRoot, Target: "/", Flags: unix.MS_MOVE})
}

// Plan is every mount of start-up in order: APIMounts then RootMounts.
func Plan(cfg Config) []Mount {
	return append(APIMounts(), RootMounts(cfg)...)
}

// ReadOnlyOnShutdown lists what a clean shutdown remounts read-only, in
// order, so that no journal needs replaying at the next boot: the overlay at
// / first (it writes into the layer below), then an ext4 writable layer,
// named relative to the initramfs root because it lies outside the chroot.
// A tmpfs layer is lost at power off anyway.
func ReadOnlyOnShutdown(cfg Config) []string {
	if cfg.Root == "" {
		return nil
	}
	if cfg.Overlay == OverlayTmpfs || cfg.Overlay == "" {
		return []string{"/"}
	}
	return []string{"/", "." + rwDir}
}
