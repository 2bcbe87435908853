package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sietch-vm/sietch/wire/control"
)

// Files in a sandbox's directory (<state>/sandboxes/<id>).
const (
	fileConsole = "console.log" // the guest's serial console (vmm stdout)
	fileVMMLog  = "vmm.log"     // the vmm's own log (stderr)
	fileAPISock = "api.sock"    // the vmm's control socket
	fileVsock   = "vsock"       // the vsock device's host socket
	fileOverlay = "overlay.ext4"
	dirWork     = "work" // a restored sandbox's disk copies
	// dirOutbox is where the jailed vmm's snapshots land: it sees this
	// directory at <state>/snapshots (and, inside it, read-only, only the
	// snapshots it was restored from), and sietchd moves each new one
	// into the store. No vmm can write, or read, another's snapshots.
	dirOutbox = "outbox"
)

// vsockCID is every sandbox's guest CID: each has its own vsock device
// and host socket, so CIDs need not differ between sandboxes.
const vsockCID = 3

// runArgs is the `vmm run` command line of a new sandbox of image spec.
func (m *Manager) runArgs(sb *sandbox, spec ImageSpec, l Limits) ([]string, error) {
	args := []string{"run", "--kernel", spec.Kernel,
		"--mem", strconv.Itoa(l.MemoryMiB) + "M", "--cpus", strconv.Itoa(l.CPUs),
		"--api-sock", filepath.Join(sb.dir, fileAPISock)}
	args = append(args, m.jailArgs(sb)...)
	cmdline := spec.Cmdline
	if spec.Kind == KindLinux {
		if spec.Initrd != "" {
			args = append(args, "--initrd", spec.Initrd)
		}
		args = append(args, "--vsock", fmt.Sprintf("%d,%s", vsockCID, filepath.Join(sb.dir, fileVsock)), "--rng")
		words := []string{cmdline, "sietch.hostname=" + sb.id}
		m.mu.Lock()
		nargs, nwords := netArgs(sb)
		m.mu.Unlock()
		args = append(args, nargs...)
		words = append(words, nwords...)
		if spec.RootFS != "" {
			args = append(args, "--disk", spec.RootFS+",ro")
			if !strings.Contains(cmdline, "sietch.root=") {
				words = append(words, "sietch.root=/dev/vda")
			}
			if l.DiskMiB > 0 {
				overlay := filepath.Join(sb.dir, fileOverlay)
				if err := makeOverlay(overlay, l.DiskMiB); err != nil {
					return nil, err
				}
				args = append(args, "--disk", overlay)
				words = append(words, "sietch.overlay=/dev/vdb")
			}
		}
		cmdline = strings.TrimSpace(strings.Join(words, " "))
	}
	if cmdline != "" {
		args = append(args, "--cmdline", cmdline)
	}
	return args, nil
}

// makeOverlay makes the sandbox's writable layer: a sparse ext4 image of
// sizeMiB that guest-init mounts over the read-only root.
func makeOverlay(path string, sizeMiB int) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("create the writable disk: %w", err)
	}
	err = f.Truncate(int64(sizeMiB) << 20)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("size the writable disk to %d MiB: %w", sizeMiB, err)
	}
	out, err := exec.Command("mkfs.ext4", "-q", "-F", "-L", "overlay", "-E", "lazy_itable_init=0,lazy_journal_init=0", path).CombinedOutput()
	if err != nil {
		return fmt.Errorf("format the writable disk (mkfs.ext4, from e2fsprogs): %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// restoreArgs is the `vmm restore` command line of a new sandbox from a
// snapshot: always as a fork, so no two sandboxes share a disk; tracking
// dirty pages, so its first snapshot can be a diff on this one; memory as
// Config.RestoreMemory says (on demand by default: idle sandboxes of one
// snapshot share its page cache, and the snapshot stays while they run,
// see dependentsLocked).
func (m *Manager) restoreArgs(sb *sandbox, snapDir string) []string {
	args := append([]string{"restore", "--from", snapDir, "--fork-id", sb.id, "--track-dirty", "--memory", m.cfg.RestoreMemory,
		"--work-dir", filepath.Join(sb.dir, dirWork),
		"--vsock-uds", filepath.Join(sb.dir, fileVsock),
		"--api-sock", filepath.Join(sb.dir, fileAPISock)}, m.jailArgs(sb)...)
	m.mu.Lock()
	defer m.mu.Unlock()
	if n := sb.rec.Network; n != nil {
		// Its own TAP; the vmm gives the fork its own MAC.
		args = append(args, "--net-tap", n.Interface)
	}
	return args
}

// jailArgs are the vmm flags of sb's jail: its outbox shown as the
// snapshot store, and its own uid.
func (m *Manager) jailArgs(sb *sandbox) []string {
	a := []string{"--jail-bind", filepath.Join(sb.dir, dirOutbox) + "=" + filepath.Join(m.cfg.StateDir, "snapshots")}
	if sb.rec.JailUID > 0 {
		a = append(a, "--jail-uid", strconv.Itoa(sb.rec.JailUID))
	}
	return a
}

// collectSnapshot moves a snapshot the jailed vmm of sb wrote into its
// outbox to dir in the store; a vmm that runs unjailed wrote it there
// already.
func collectSnapshot(sb *sandbox, dir string) error {
	out := filepath.Join(sb.dir, dirOutbox, filepath.Base(dir))
	if _, err := os.Lstat(out); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := os.Rename(out, dir); err != nil {
		os.RemoveAll(out)
		return fmt.Errorf("move the snapshot from the sandbox's outbox into the store: %w", err)
	}
	return nil
}

// vmmRSS is the resident memory of a vmm: the keeper sietchd started
// and the jailed vmm it runs (the keeper's child), which holds the VM.
func vmmRSS(pid int) (int64, bool) {
	rss, ok := processRSS(pid)
	if !ok {
		return 0, false
	}
	// Children are listed per thread: the keeper starts its vmm from a
	// thread of its own.
	tasks, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/children")
	for _, t := range tasks {
		b, _ := os.ReadFile(t)
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				if r, ok := processRSS(c); ok {
					rss += r
				}
			}
		}
	}
	return rss, true
}

// startVMM starts the vmm in its own session (so it outlives sietchd, and
// a signal to sietchd's process group does not reach it), with the console
// in console.log and its log in vmm.log. It returns the pid and a pidfd.
func (m *Manager) startVMM(sb *sandbox, args []string) (pid, pidfd int, err error) {
	open := func(name string) (*os.File, error) {
		return os.OpenFile(filepath.Join(sb.dir, name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	}
	console, err := open(fileConsole)
	if err != nil {
		return 0, -1, fmt.Errorf("console log: %w", err)
	}
	defer console.Close()
	logf, err := open(fileVMMLog)
	if err != nil {
		return 0, -1, fmt.Errorf("vmm log: %w", err)
	}
	defer logf.Close()
	pidfd = -1
	cmd := exec.Command(m.cfg.VMMPath, args...)
	cmd.Dir = sb.dir
	cmd.Stdout, cmd.Stderr = console, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, PidFD: &pidfd}
	if err := cmd.Start(); err != nil {
		return 0, -1, fmt.Errorf("start %s: %w", m.cfg.VMMPath, err)
	}
	pid = cmd.Process.Pid
	cmd.Process.Release() // the supervisor reaps it through its pid
	if pidfd < 0 {
		// CLONE_PIDFD needs Linux 5.2; pidfd_open 5.3. The child cannot be
		// reaped before we ask, so the pid still names it.
		if pidfd, err = unix.PidfdOpen(pid, 0); err != nil {
			unix.Kill(pid, unix.SIGKILL)
			return 0, -1, fmt.Errorf("pidfd of vmm %d (Linux 5.3 or later is needed): %w", pid, err)
		}
	}
	m.log.Debug("vmm started", "sandbox", sb.id, "pid", pid, "args", args)
	return pid, pidfd, nil
}

// waitRunning waits until sb's vmm says its VM runs, the vmm exits, or
// startTimeout passes.
func (m *Manager) waitRunning(ctx context.Context, sb *sandbox, done <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	delay := time.Millisecond
	for {
		ictx, icancel := context.WithTimeout(ctx, time.Second)
		info, err := sb.ctl.Info(ictx)
		icancel()
		if err == nil && (info.State == control.StateRunning || info.State == control.StatePaused) {
			return nil
		}
		select {
		case <-done:
			m.mu.Lock()
			reason := sb.rec.Reason
			m.mu.Unlock()
			return fmt.Errorf("the vmm exited while starting: %s", reason)
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("the vmm did not start running within %v (last answer: %v); see %s", startTimeout, err, filepath.Join(sb.dir, fileVMMLog))
			}
			return ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, 20*time.Millisecond)
	}
}

// processRSS is the resident memory of pid (VmRSS in /proc/PID/status).
func processRSS(pid int) (int64, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) == 2 && f[1] == "kB" {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				return kb << 10, err == nil
			}
		}
	}
	return 0, false
}

// syscallKill kills the process of pidfd and closes it.
func syscallKill(pidfd int) {
	unix.PidfdSendSignal(pidfd, unix.SIGKILL, nil, 0)
	unix.Close(pidfd)
}
