package initrt

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// deviceWait bounds the wait for a block device node: virtio-mmio disks
// probe before init runs, so this only matters on an unusual kernel.
const deviceWait = 2 * time.Second

// Mounter performs mount plans and remembers the initramfs root after a
// root switch, for the shutdown.
type Mounter struct {
	oldRoot int          // O_PATH fd of the initramfs root once switched, else -1
	log     *slog.Logger // each mount's duration at debug level
}

// NewMounter returns a Mounter that has not switched root.
func NewMounter(log *slog.Logger) *Mounter { return &Mounter{oldRoot: -1, log: log} }

// Switched reports whether the root switch has happened.
func (m *Mounter) Switched() bool { return m.oldRoot >= 0 }

// Apply performs plan in order, running neighbouring Concurrent mounts at
// the same time, and stops at the first error, which says which mount
// failed and what to check.
func (m *Mounter) Apply(plan []Mount) error {
	for i := 0; i < len(plan); {
		j := i + 1
		for plan[i].Concurrent && j < len(plan) && plan[j].Concurrent {
			j++
		}
		if j == i+1 {
			if err := m.timed(plan[i]); err != nil {
				return err
			}
		} else {
			errs := make([]error, j-i)
			var wg sync.WaitGroup
			for k := i; k < j; k++ {
				wg.Go(func() { errs[k-i] = m.timed(plan[k]) })
			}
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				return err
			}
		}
		i = j
	}
	return nil
}

func (m *Mounter) timed(mt Mount) error {
	start := time.Now()
	if err := m.mount(mt); err != nil {
		return err
	}
	m.log.Debug("mounted", "source", mt.Source, "target", mt.Target, "took", time.Since(start).Round(10*time.Microsecond))
	return nil
}

func (m *Mounter) mount(mt Mount) error {
	if mt.Target == "/" && mt.Flags&unix.MS_MOVE != 0 {
		return m.switchRoot(mt.Source)
	}
	for _, d := range mt.Dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("mount %s on %s: create %s: %w", mt.FSType, mt.Target, d, err)
		}
	}
	if strings.HasPrefix(mt.Source, "/dev/") {
		if err := waitDevice(mt.Source); err != nil {
			return err
		}
	}
	// Try first and create the mount point only when missing: the
	// initramfs and root images usually have it, and each system call
	// costs ~0.5 ms on hosts that emulate guest kernel mode.
	err := unix.Mount(mt.Source, mt.Target, mt.FSType, mt.Flags, mt.Data)
	if errors.Is(err, unix.ENOENT) {
		if merr := os.MkdirAll(mt.Target, 0o755); merr != nil {
			return fmt.Errorf("mount %s on %s: create the mount point: %w", mt.Source, mt.Target, merr)
		}
		err = unix.Mount(mt.Source, mt.Target, mt.FSType, mt.Flags, mt.Data)
	}
	if errors.Is(err, unix.EBUSY) && mt.FSType == "devtmpfs" {
		// Booted from a disk root: the kernel mounted devtmpfs on /dev
		// itself (CONFIG_DEVTMPFS_MOUNT).
		return nil
	}
	if err != nil {
		return mountError(mt, err)
	}
	return nil
}

// mountError turns errno into what a user can act on.
func mountError(mt Mount, err error) error {
	what := fmt.Sprintf("mount %s (%s) on %s", mt.Source, mt.FSType, mt.Target)
	if mt.Flags&unix.MS_MOVE != 0 {
		what = fmt.Sprintf("move mount %s to %s", mt.Source, mt.Target)
	}
	switch {
	case strings.HasPrefix(mt.Source, "/dev/") && (errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EUCLEAN) || errors.Is(err, unix.EIO)):
		return fmt.Errorf("%s: %w: the device does not hold a clean %s file system; build the image with mkfs.ext4 (e2fsck -f to repair)", what, err, mt.FSType)
	case strings.HasPrefix(mt.Source, "/dev/") && errors.Is(err, unix.ENXIO):
		return fmt.Errorf("%s: %w: the device node exists but no disk is behind it; check the vmm's --disk flags", what, err)
	case mt.FSType == "overlay":
		return fmt.Errorf("%s: %w: the root image or the writable layer cannot be stacked (the kernel log on the console says why)", what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// waitDevice waits briefly for a device node to appear in devtmpfs.
func waitDevice(dev string) error {
	deadline := time.Now().Add(deviceWait)
	for {
		_, err := os.Stat(dev)
		if err == nil {
			return nil
		}
		if !errors.Is(err, os.ErrNotExist) || time.Now().After(deadline) {
			return fmt.Errorf("block device %s: %w: attach a disk image with `vmm run --disk IMAGE` (the first is /dev/vda, the second /dev/vdb)", dev, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// switchRoot makes newRoot the root of every thread: move it onto / and
// chroot there, as switch_root(8) does, without re-executing (Go's threads
// share one fs context through CLONE_FS, so one chroot moves them all). The
// initramfs stays in memory, reachable only through m.oldRoot; it is small.
func (m *Mounter) switchRoot(newRoot string) error {
	old, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("switch root: open the initramfs root: %w", err)
	}
	if err := unix.Chdir(newRoot); err != nil {
		unix.Close(old)
		return fmt.Errorf("switch root: chdir %s: %w", newRoot, err)
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		unix.Close(old)
		return fmt.Errorf("switch root: move %s onto /: %w", newRoot, err)
	}
	if err := unix.Chroot("."); err != nil {
		unix.Close(old)
		return fmt.Errorf("switch root: chroot into %s: %w", newRoot, err)
	}
	if err := unix.Chdir("/"); err != nil {
		unix.Close(old)
		return fmt.Errorf("switch root: chdir /: %w", err)
	}
	m.oldRoot = old
	return nil
}

// RemountReadOnly remounts each path read-only, in order: "/" in the
// current root, "./x" relative to the initramfs root. It tries every path
// and returns the joined errors (EBUSY means a file is still open for
// writing; the caller has synced, so data is on disk either way).
func (m *Mounter) RemountReadOnly(paths []string) error {
	var errs []error
	for _, p := range paths {
		if strings.HasPrefix(p, "./") {
			if m.oldRoot < 0 {
				continue
			}
			if err := unix.Fchdir(m.oldRoot); err != nil {
				errs = append(errs, fmt.Errorf("remount %s read-only: enter the initramfs root: %w", p, err))
				continue
			}
		}
		err := unix.Mount("", p, "", unix.MS_REMOUNT|unix.MS_RDONLY, "")
		if err != nil {
			errs = append(errs, fmt.Errorf("remount %s read-only: %w", strings.TrimPrefix(p, "."), err))
		}
	}
	if m.oldRoot >= 0 {
		unix.Chdir("/")
	}
	return errors.Join(errs...)
}

// WritableLayer is a path to the root's overlayfs upper directory that
// works after the switch, through the initramfs root's descriptor (a
// /proc/self/fd link reaches it from outside the chroot); "" before the
// switch or without a root disk.
func (m *Mounter) WritableLayer() string {
	if m.oldRoot < 0 {
		return ""
	}
	return fmt.Sprintf("/proc/self/fd/%d%s", m.oldRoot, upperDir)
}
