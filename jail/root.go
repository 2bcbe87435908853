package jail

import (
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// checkFreshNamespaces refuses to run outside what Command sets up: run
// directly as host root, the steps below would pivot the host's own mount
// namespace.
func checkFreshNamespaces() error {
	if os.Getpid() != 1 {
		return fmt.Errorf("not pid 1 of a new pid namespace (pid %d); start device processes with jail.Command", os.Getpid())
	}
	m, err := readSmallFile("/proc/self/uid_map")
	if err != nil {
		return err
	}
	if f := strings.Fields(string(m)); len(f) == 3 && f[0] == "0" && f[1] == "0" && f[2] == "4294967295" {
		return fmt.Errorf("in the initial user namespace; start device processes with jail.Command")
	}
	return nil
}

// newRootMountpoint is where the empty root is mounted before pivot_root;
// the mount hides the directory only in our private mount namespace.
var newRootMountpoints = []string{"/tmp", "/mnt", "/proc"}

// pivotToEmptyRoot makes every mount private (nothing propagates back to
// the host), mounts a tiny tmpfs, makes it the root with pivot_root(".",
// ".") and detaches the old root stacked on it (pivot_root(2), NOTES),
// then makes the new root read-only.
func pivotToEmptyRoot() error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	dir := ""
	for _, d := range newRootMountpoints {
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			dir = d
			break
		}
	}
	if dir == "" {
		return fmt.Errorf("no directory to mount the new root on (tried %v)", newRootMountpoints)
	}
	const flags = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	if err := unix.Mount("tmpfs", dir, "tmpfs", flags, "size=4k,nr_inodes=4,mode=0555"); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", dir, err)
	}
	if err := unix.Chdir(dir); err != nil {
		return fmt.Errorf("chdir %s: %w", dir, err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach old root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("chdir /: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_RDONLY|flags, ""); err != nil {
		return fmt.Errorf("remount new root read-only: %w", err)
	}
	return nil
}

// rootIsEmpty checks that / has no entries.
func rootIsEmpty() error {
	names, err := dirNames("/")
	if err != nil {
		return err
	}
	if len(names) != 0 {
		return fmt.Errorf("new root not empty: %v", names)
	}
	return nil
}
