package jail

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// closeFDs leaves open only keep and stderr, and points 0 and 1 at
// /dev/null unless kept. It refuses to close descriptors the Go runtime
// still uses: the network poller's epoll instance (Enter must come before
// anything polls) and the cgroup file it rereads for GOMAXPROCS (Command
// turns that off with runtimeGODEBUG).
func closeFDs(keep []int) error {
	fds := append([]int{2}, keep...)
	slices.Sort(fds)
	fds = slices.Compact(fds)
	for _, fd := range fds {
		if fd < 0 {
			return fmt.Errorf("keep fd %d: negative", fd)
		}
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
			return fmt.Errorf("keep fd %d: not open: %w", fd, err)
		}
	}
	names, err := dirNames("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("list open fds: %w", err)
	}
	for _, name := range names {
		fd, err := strconv.Atoi(name)
		if err != nil || slices.Contains(fds, fd) {
			continue
		}
		target, _ := os.Readlink("/proc/self/fd/" + name)
		if target == "anon_inode:[eventpoll]" {
			return fmt.Errorf("fd %d is an epoll instance (Go's network poller?): call Enter before opening or polling anything", fd)
		}
		if strings.HasPrefix(target, "/sys/fs/cgroup/") {
			return fmt.Errorf("fd %d is %s, which Go's runtime keeps to size GOMAXPROCS; start the process with jail.Command (GODEBUG=%s)", fd, target, runtimeGODEBUG)
		}
	}
	next := uint(0)
	for _, fd := range fds {
		if uint(fd) > next {
			if err := unix.CloseRange(next, uint(fd)-1, 0); err != nil {
				return fmt.Errorf("close fds %d-%d: %w", next, fd-1, err)
			}
		}
		next = uint(fd) + 1
	}
	if err := unix.CloseRange(next, ^uint(0), 0); err != nil {
		return fmt.Errorf("close fds from %d: %w", next, err)
	}
	null, err := unix.Open("/dev/null", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open /dev/null: %w", err)
	}
	for _, fd := range []int{0, 1} {
		// null itself is the lowest free fd, often 0.
		if !slices.Contains(fds, fd) && fd != null {
			if err := unix.Dup3(null, fd, 0); err != nil {
				return fmt.Errorf("point fd %d at /dev/null: %w", fd, err)
			}
		}
	}
	if null > 1 {
		return unix.Close(null)
	}
	return nil
}
