package jail

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// The vmm's own jail. A device process is confined by Command and Enter;
// the vmm is confined the same way in spirit but in two steps, because it
// must still do privileged work after it is in its namespaces (create the
// VM, open /dev/kvm and /dev/userfaultfd, start device processes
// with their uid maps):
//
//  1. `vmm run` (or restore) as started re-executes itself with
//     StartVMM in new mount, pid, ipc, uts and network namespaces (a
//     TAP is opened first, and passed), with a bounding set cut to what the
//     setup needs, and stays as a small keeper that only forwards signals
//     and passes on how the jailed vmm ended.
//  2. The jailed vmm calls EnterVMM first: it pivots into a root (a
//     tmpfs, read-only once sealed) that
//     holds only the paths of its VMMJail (bind mounts: kernel, initrd,
//     disks and snapshot layers read-only where it only reads them, its
//     sandbox directory writable), a /dev with the few nodes it opens and
//     a /proc of its own pid namespace. It then builds the VM as usual.
//  3. SealVMM, once the VM is built and its devices run, removes what it
//     no longer needs (/dev/kvm and /dev/userfaultfd go, so
//     they cannot be opened again; /proc becomes read-only, so nothing
//     under /proc/sys can be written), clears dumpable and core dumps and
//     sets no_new_privs; VMMPolicy is loaded next, which forbids mount,
//     pivot_root, chroot, setns and unshare, so the view cannot widen.
//
// What a vmm taken over by a guest can then reach: the files of its own
// VM, its own device processes (in a child pid namespace), nothing of the
// host's file system, processes, IPC or (mostly) network.

// envVMMJail carries the VMMJail from the keeper to the jailed vmm.
const envVMMJail = "SIETCH_VMM_JAIL"

// Bind is one host path the jailed vmm sees, at the same path.
type Bind struct {
	Path     string `json:"path"`               // absolute, as in the host's mount namespace
	Source   string `json:"source,omitempty"`   // what is mounted there; "" is Path itself
	Writable bool   `json:"writable,omitempty"` // else mounted read-only
	// Optional binds are skipped when the source does not exist (a socket
	// not yet made, a cache file).
	Optional bool `json:"optional,omitempty"`
}

// VMMJail is what the jailed vmm's root holds.
type VMMJail struct {
	Binds []Bind `json:"binds"`
	// Devices are /dev nodes bound in for the setup (such as /dev/kvm);
	// SealVMM removes those not in keepDevices.
	Devices []string `json:"devices"`
	// Cwd is the keeper's working directory; it is made (empty) in the
	// jail's root unless bound, so relative paths on the command line mean
	// what they meant.
	Cwd string `json:"cwd"`
	// TapFD is the descriptor of the VM's TAP, opened by the keeper in the
	// host's network namespace (StartVMM sets it); 0: none.
	TapFD int `json:"tap_fd,omitempty"`
	// UID, when not 0, is the host uid and gid the vmm runs as once
	// sealed (DropVMM), and its device processes from the start.
	UID int `json:"uid,omitempty"`
	// Lifeline is the read end of a pipe whose write end only the keeper
	// holds: its EOF says the keeper is gone. The parent-death signal
	// cannot say it alone, because a uid change (DropVMM) clears it.
	Lifeline int `json:"lifeline,omitempty"`
	// KeeperPID is the keeper's pid (StartVMM sets it): what the host
	// knows the jailed vmm by, which is pid 1 in its own namespace.
	KeeperPID int `json:"keeper_pid,omitempty"`
}

// keepDevices stay after SealVMM: the Go runtime and os/exec open
// /dev/null; nothing else is opened by path once the VM runs.
var keepDevices = []string{"/dev/null"}

// Jailed reports whether this process is a vmm started by StartVMM (about
// to enter its jail, or in it).
func Jailed() bool { return os.Getenv(envVMMJail) != "" }

// vmmCaps are the capabilities the jailed vmm keeps (all others leave the
// bounding set before it is executed, so no thread of it ever holds them):
// SYS_ADMIN for its own mounts and the device processes' namespaces,
// SETUID, SETGID and SETPCAP for the device processes' uid maps and their
// own drop, KILL to stop them, DAC_OVERRIDE and DAC_READ_SEARCH to open
// the VM's files wherever the user keeps them, CHOWN to hand its files to
// its own uid (DropVMM); a TAP comes open from the keeper. VMMPolicy then
// allows no call that uses SYS_ADMIN, SET*, or CHOWN (no mount, unshare,
// setns, set*id, capset, chown) but kill, which reaches only its own pid
// namespace; with a uid of its own (DropVMM) it holds none at all.
var vmmCaps = []uintptr{unix.CAP_SYS_ADMIN, unix.CAP_SETUID, unix.CAP_SETGID, unix.CAP_SETPCAP,
	unix.CAP_KILL, unix.CAP_DAC_OVERRIDE, unix.CAP_DAC_READ_SEARCH, unix.CAP_CHOWN}

// StartVMM starts this binary again with args in the jail j describes: new
// mount, pid, ipc, uts and network namespaces, with only vmmCaps in its
// bounding set. tap, when not nil, is the VM's TAP, open in the host's
// network namespace (the jailed vmm finds its fd in TapFD); StartVMM
// closes it once the vmm has it. The vmm stays uid 0 until DropVMM: it
// still has to create the VM and start device processes, which need
// their uid maps written by a privileged parent; VMMPolicy then takes
// every call that could use that away.
//
// The bounding set is per thread, and the child's death signal follows
// the thread that started it: StartVMM locks the calling goroutine to its
// thread for good. Call it from the goroutine that waits for the child.
func StartVMM(j VMMJail, args []string, tap *os.File) (*exec.Cmd, error) {
	if tap != nil {
		defer tap.Close()
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("jail the vmm: needs root (it creates namespaces and starts device processes); --no-jail runs it unconfined, for debugging only")
	}
	for _, b := range j.Binds {
		if !filepath.IsAbs(b.Path) || (b.Source != "" && !filepath.IsAbs(b.Source)) {
			return nil, fmt.Errorf("jail the vmm: bind %q: want absolute paths", b.Path)
		}
	}
	j.KeeperPID = os.Getpid()
	j.Lifeline = 3 // ExtraFiles[0]
	if tap != nil {
		j.TapFD = 4
	}
	spec, err := json.Marshal(j)
	if err != nil {
		return nil, err
	}
	lifeline, keeperEnd, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("jail the vmm: lifeline pipe: %w", err)
	}
	defer lifeline.Close() // the child's copy stays; keeperEnd lives as long as the keeper
	env := []string{envVMMJail + "=" + string(spec)}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, envVMMJail+"=") {
			env = append(env, kv)
		}
	}
	flags := syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS | syscall.CLONE_NEWNET
	cmd := &exec.Cmd{
		Path:       "/proc/self/exe",
		Args:       append([]string{os.Args[0]}, args...),
		Env:        env,
		Stdin:      os.Stdin,
		Stdout:     os.Stdout,
		Stderr:     os.Stderr,
		ExtraFiles: []*os.File{lifeline},
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags: uintptr(flags),
			Pdeathsig:  syscall.SIGKILL,
		},
	}
	if tap != nil {
		cmd.ExtraFiles = append(cmd.ExtraFiles, tap)
	}
	keeperEnds = append(keeperEnds, keeperEnd) // never closed, never collected
	runtime.LockOSThread()                     // never unlocked: see above
	for c := uintptr(0); c < 64; c++ {
		if slices.Contains(vmmCaps, c) {
			continue
		}
		err := unix.Prctl(unix.PR_CAPBSET_DROP, c, 0, 0, 0)
		if errors.Is(err, unix.EINVAL) {
			break // past the kernel's last capability
		}
		if err != nil {
			return nil, fmt.Errorf("jail the vmm: drop capability %d from the bounding set: %w", c, err)
		}
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("jail the vmm: start it: %w", err)
	}
	return cmd, nil
}

// keeperEnds keeps the keeper's ends of lifelines open until it exits.
var keeperEnds []*os.File

// EnterVMM is the jailed vmm's first step: it reads the VMMJail its
// keeper passed and pivots into a root that holds only that. Call
// SealVMM before the guest runs.
func EnterVMM() (VMMJail, error) {
	var j VMMJail
	spec := os.Getenv(envVMMJail)
	if spec == "" {
		return j, errors.New("jail: not started by StartVMM")
	}
	if err := json.Unmarshal([]byte(spec), &j); err != nil {
		return j, fmt.Errorf("jail: %s from the keeper: %w", envVMMJail, err)
	}
	os.Unsetenv(envVMMJail) // device processes must not see it
	if os.Getpid() != 1 {
		return j, fmt.Errorf("jail: the vmm is pid %d, not 1 of a new pid namespace; start it with jail.StartVMM", os.Getpid())
	}
	if j.TapFD > 0 {
		unix.CloseOnExec(j.TapFD)
	}
	if j.Lifeline > 0 {
		unix.CloseOnExec(j.Lifeline)
		go func(fd int) {
			// The keeper never writes: this read ends when it is gone.
			// pid 1 of the namespace exiting takes the device processes.
			var b [1]byte
			for {
				n, err := unix.Read(fd, b[:])
				if n == 0 && err != unix.EINTR && err != unix.EAGAIN {
					fmt.Fprintln(os.Stderr, "vmm: its keeper is gone; stopping")
					os.Exit(1)
				}
			}
		}(j.Lifeline)
	}
	if err := pivotToVMMRoot(j); err != nil {
		return j, fmt.Errorf("jail the vmm: %w", err)
	}
	return j, nil
}

// pivotToVMMRoot builds the jail's root on a tmpfs and pivots into it.
// Every source is opened (O_PATH) before the tmpfs is mounted and bound
// from its descriptor, so that the staging mount never hides a source (a
// sandbox directory under /tmp, say).
func pivotToVMMRoot(j VMMJail) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	binds := slices.Clone(j.Binds)
	for _, d := range j.Devices {
		binds = append(binds, Bind{Path: d, Writable: true, Optional: d != "/dev/null"})
	}
	// Parents before children: a read-only layer bound inside a writable
	// directory needs that directory in place first.
	slices.SortStableFunc(binds, func(a, b Bind) int {
		return cmp.Compare(strings.Count(filepath.Clean(a.Path), "/"), strings.Count(filepath.Clean(b.Path), "/"))
	})
	type source struct {
		Bind
		fd  int
		dir bool
	}
	var srcs []source
	defer func() {
		for _, s := range srcs {
			unix.Close(s.fd)
		}
	}()
	for _, b := range binds {
		path := cmp.Or(b.Source, b.Path)
		fd, err := unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			if b.Optional && errors.Is(err, unix.ENOENT) {
				continue
			}
			return fmt.Errorf("bind %s: %w", path, err)
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return fmt.Errorf("bind %s: %w", path, err)
		}
		srcs = append(srcs, source{Bind: b, fd: fd, dir: st.Mode&unix.S_IFMT == unix.S_IFDIR})
	}
	root := ""
	for _, d := range []string{"/mnt", "/tmp"} {
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			root = d
			break
		}
	}
	if root == "" {
		return errors.New("no directory to mount the new root on (tried /mnt and /tmp)")
	}
	if err := unix.Mount("tmpfs", root, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size=1m,nr_inodes=4096,mode=0755"); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", root, err)
	}
	for _, s := range srcs {
		if err := bindInto(root, s.Bind, s.fd, s.dir); err != nil {
			return err
		}
	}
	if j.Cwd != "" {
		os.MkdirAll(filepath.Join(root, j.Cwd), 0o755) // made only if not bound
	}
	procDir := filepath.Join(root, "proc")
	if err := os.MkdirAll(procDir, 0o555); err != nil {
		return err
	}
	// A /proc of the new pid namespace: device processes are started as
	// /proc/self/exe and their uid maps are written under /proc/PID.
	if err := unix.Mount("proc", procDir, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	if err := unix.Chdir(root); err != nil {
		return err
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach old root: %w", err)
	}
	cwd := cmp.Or(j.Cwd, "/")
	if err := unix.Chdir(cwd); err != nil {
		return fmt.Errorf("chdir %s: %w", cwd, err)
	}
	return nil
}

// deviceNodes may keep device semantics in the jail; every other bind is
// nodev.
var deviceNodes = []string{"/dev/kvm", "/dev/userfaultfd", "/dev/null"}

// bindInto bind-mounts the source open at fd at root+b.Path, making the
// mount point (an empty file or directory, like the source) first.
func bindInto(root string, b Bind, fd int, dir bool) error {
	target := filepath.Join(root, b.Path)
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return fmt.Errorf("bind %s: %w", b.Path, err)
	}
	var err error
	if dir {
		err = os.Mkdir(target, 0o755)
	} else {
		var f *os.File
		if f, err = os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644); err == nil {
			f.Close()
		}
	}
	if err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("bind %s: mount point: %w", b.Path, err)
	}
	if err := unix.Mount(fmt.Sprintf("/proc/self/fd/%d", fd), target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s: %w", b.Path, err)
	}
	flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_NOSUID)
	if !slices.Contains(deviceNodes, b.Path) {
		flags |= unix.MS_NODEV
	}
	if !b.Writable {
		flags |= unix.MS_RDONLY
	}
	if err := unix.Mount("", target, "", flags, ""); err != nil {
		return fmt.Errorf("bind %s: restrict: %w", b.Path, err)
	}
	return nil
}

// vmmMaxFiles is the jailed vmm's RLIMIT_NOFILE.
const vmmMaxFiles = 4096

// SealVMM is the jailed vmm's last step before VMMPolicy: the VM is built
// and its device processes run, so the device nodes it opened go (mount
// and mount point), the root and /proc become read-only, and the process
// becomes undumpable with no core files and no_new_privs on the calling
// thread (the policy's TSYNC spreads that).
func SealVMM(j VMMJail) error {
	for _, d := range j.Devices {
		if slices.Contains(keepDevices, d) {
			continue
		}
		err := unix.Unmount(d, unix.MNT_DETACH)
		if err == nil {
			err = os.Remove(d)
		}
		if err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("jail: remove %s from the vmm's /dev: %w", d, err)
		}
	}
	if err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("jail: make the vmm's root read-only: %w", err)
	}
	if err := unix.Mount("", "/proc", "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("jail: make /proc read-only: %w", err)
	}
	// Its descriptors are the VM's, its devices' sockets and eventfds, a
	// few per control or vsock connection: well under this.
	nofile := unix.Rlimit{Cur: vmmMaxFiles, Max: vmmMaxFiles}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &nofile); err != nil {
		return fmt.Errorf("jail: limit open files to %d: %w", vmmMaxFiles, err)
	}
	return Harden()
}

// Harden makes this process undumpable (no ptrace by others of its uid,
// no /proc/PID/mem for them) with no core files, and sets no_new_privs on
// the calling thread. It is for the vmm and its keeper; device processes
// get the same from Enter.
func Harden() error {
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{}); err != nil {
		return fmt.Errorf("jail: no core files: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("jail: clear dumpable: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("jail: set no_new_privs: %w", err)
	}
	return nil
}

// DropVMM switches the sealed vmm to j.UID (uid and gid, no supplementary
// groups) on every thread, which clears every capability of every thread
// (capabilities(7), "Effect of user ID changes on capabilities"), after
// handing it what it writes from then on: each writable bind, recursively
// (read-only binds inside them are left alone). Call it after SealVMM,
// which needs the capabilities, and before VMMPolicy, which forbids
// set*id. Without a UID it does nothing.
func DropVMM(j VMMJail) error {
	if j.UID <= 0 {
		return nil
	}
	for _, b := range j.Binds {
		if b.Writable {
			if err := chownTree(b.Path, j.UID); err != nil {
				return fmt.Errorf("jail: hand %s to uid %d: %w", b.Path, j.UID, err)
			}
		}
	}
	// syscall's set*id calls run on every thread (glibc's setxid
	// broadcast; AllThreadsSyscall without cgo).
	if err := syscall.Setgroups(nil); err != nil {
		return fmt.Errorf("jail: drop supplementary groups: %w", err)
	}
	if err := syscall.Setresgid(j.UID, j.UID, j.UID); err != nil {
		return fmt.Errorf("jail: switch the vmm to gid %d: %w", j.UID, err)
	}
	if err := syscall.Setresuid(j.UID, j.UID, j.UID); err != nil {
		return fmt.Errorf("jail: switch the vmm to uid %d: %w", j.UID, err)
	}
	// A uid change resets dumpable to fs.suid_dumpable.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("jail: clear dumpable: %w", err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("jail: capget: %w", err)
	}
	if data[0].Permitted|data[1].Permitted|data[0].Effective|data[1].Effective != 0 {
		return fmt.Errorf("jail: the vmm still holds capabilities after switching to uid %d", j.UID)
	}
	return nil
}

// chownTree gives dir and everything under it to uid, skipping what is
// mounted read-only inside it (a snapshot layer in the outbox).
func chownTree(dir string, uid int) error {
	return filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := os.Lchown(path, uid, uid); err != nil {
			if errors.Is(err, unix.EROFS) {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			return err
		}
		return nil
	})
}
