package main

import (
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/sietch-vm/sietch/internal/cgroups"
	"github.com/sietch-vm/sietch/jail"
	"github.com/sietch-vm/sietch/snapshot"
	nettap "github.com/sietch-vm/sietch/virtio/net/tap"
	"github.com/sietch-vm/sietch/vmm/controlserver"
	"github.com/sietch-vm/sietch/wire/control"
)

// jailUsage describes --jail-bind, which run and restore share.
const jailUsage = "let the jailed vmm write `DIR` (repeatable): where `vmm snapshot --dir` may write besides the control socket's directory. HOST=JAIL binds HOST at the path JAIL"

// jailUIDUsage describes --jail-uid, which run and restore share.
const jailUIDUsage = "once the VM is built, run the jailed vmm as host uid and gid `UID` (its device processes too, from the start), with no capabilities; its writable directories are handed to UID. sietchd gives each sandbox its own. 0: the vmm stays uid 0 with eight capabilities and devices run as 65534"

// jailed is the VMMJail this process entered, if it is a jailed vmm.
var jailed *jail.VMMJail

// confine is how `vmm run` and `vmm restore` begin. The process a user or
// sietchd started joins the cgroups (so that device processes and vCPU
// threads are born in them), works out the jail with plan, re-executes
// the command in it and keeps waiting for it: done is true and code is
// how it ended. The re-executed vmm only enters the jail its keeper
// planned and returns done false, and the command goes on to build its
// VM there. With noJail it joins the groups and goes on unconfined.
func confine(name string, args []string, noJail bool, cgroupDirs, jailBinds []string, uid int, stderr io.Writer, plan func(*binds) error) (code int, done bool) {
	if !noJail && jail.Jailed() {
		got, err := jail.EnterVMM()
		if err != nil {
			fmt.Fprintf(stderr, "vmm %s: %v\n", name, err)
			return exitError, true
		}
		jailed = &got
		return 0, false
	}
	if err := cgroups.Join(cgroupDirs); err != nil {
		fmt.Fprintf(stderr, "vmm %s: %v\n", name, err)
		return exitError, true
	}
	if noJail {
		return 0, false
	}
	b := newBinds(jailBinds)
	if b.err != nil {
		fmt.Fprintf(stderr, "vmm %s: %v\n", name, b.err)
		return exitUsage, true
	}
	b.j.UID = uid
	err := plan(b)
	if err == nil {
		err = b.err
	}
	if err != nil {
		fmt.Fprintf(stderr, "vmm %s: %v\n", name, err)
		return exitError, true
	}
	return keep(name, args, b, stderr), true
}

// keep starts the jailed vmm and waits for it: signals that would end
// this process are passed on, and its end becomes this process's (an exit
// status is returned; a signal that killed it kills this process too, so
// a supervisor sees a seccomp kill as SIGSYS either way). While it
// waits, the keeper holds itself to jail.VMMPolicy too.
func keep(name string, args []string, b *binds, stderr io.Writer) int {
	var tf *os.File
	if b.tapName != "" {
		var err error
		if tf, err = nettap.Open(b.tapName); err != nil {
			fmt.Fprintf(stderr, "vmm %s: %v\n", name, err)
			return exitError
		}
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	cmd, err := jail.StartVMM(b.j, append([]string{name}, args...), tf)
	if err != nil {
		fmt.Fprintf(stderr, "vmm %s: %v\n", name, err)
		return exitError
	}
	if err := jail.Harden(); err == nil {
		err = jail.VMMPolicy.Load()
	}
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		fmt.Fprintf(stderr, "vmm %s: confine the keeper: %v\n", name, err)
		return exitError
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
wait:
	for {
		select {
		case s := <-sigs:
			cmd.Process.Signal(s)
		case err = <-waited:
			break wait
		}
	}
	signal.Stop(sigs)
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok {
		fmt.Fprintf(stderr, "vmm %s: the jailed vmm: %v\n", name, err)
		return exitError
	}
	if ws.Signaled() {
		// Die of the same signal; a core-dumping one makes no core here
		// (RLIMIT_CORE is 0).
		sig := ws.Signal()
		signal.Reset(sig)
		jail.DieOf(sig)
		return 128 + int(sig)
	}
	return ws.ExitStatus()
}

// binds collects a jail's bind mounts, absolute, without one that a
// writable directory bound already holds.
type binds struct {
	j       jail.VMMJail
	tapName string
	err     error
}

func newBinds(extra []string) *binds {
	b := &binds{}
	if cwd, err := os.Getwd(); err == nil {
		b.j.Cwd = cwd
	}
	b.j.Devices = []string{"/dev/null", "/dev/kvm", "/dev/userfaultfd"}
	// Device processes are this binary again: its ELF interpreter and
	// shared libraries (libseccomp, libc) must be there for execve.
	libs, err := sharedLibs()
	if err != nil {
		b.err = err
	}
	b.j.Binds = append(b.j.Binds, libs...)
	// The host probe's verdict for this boot, so a jailed vmm need not
	// probe again.
	b.add("/run/sietch/host-profile", false, true)
	for _, e := range extra {
		host, at, ok := strings.Cut(e, "=")
		if !ok {
			at = host
		}
		h, err1 := filepath.Abs(host)
		a, err2 := filepath.Abs(at)
		if host == "" || at == "" || err1 != nil || err2 != nil {
			b.err = fmt.Errorf("--jail-bind %q: want DIR or HOST=JAIL", e)
			continue
		}
		b.j.Binds = append(b.j.Binds, jail.Bind{Path: a, Source: h, Writable: true})
	}
	return b
}

// add binds path (a file or directory, made absolute) read-only or
// writable; optional skips it when it does not exist.
func (b *binds) add(path string, writable, optional bool) {
	if path == "" {
		return
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		b.err = err
		return
	}
	for i, o := range b.j.Binds {
		if o.Source != "" {
			continue // --jail-bind HOST=JAIL: paths under JAIL are not HOST's
		}
		if o.Path == abs {
			b.j.Binds[i].Writable = o.Writable || writable
			return
		}
		if o.Writable && strings.HasPrefix(abs, o.Path+"/") {
			return
		}
	}
	b.j.Binds = append(b.j.Binds, jail.Bind{Path: abs, Writable: writable, Optional: optional})
}

// dirOf binds the directory a socket is (or will be) made in, writable.
func (b *binds) dirOf(path string) {
	if path != "" {
		b.add(filepath.Dir(path), true, false)
	}
}

// tap names the VM's TAP, which the keeper opens in the host's network
// namespace and passes in.
func (b *binds) tap(name string) { b.tapName = name }

// restoreBinds are what `vmm restore --from dir` reads and writes: the
// snapshot's layers read-only (a restore in place writes its disk clones,
// so there the snapshot itself is writable), the fork's work directory or
// the directory next to the snapshot that holds a new one, the disks a
// restore in place attaches, and the vsock socket's directory.
func restoreBinds(b *binds, dir string, forkID, workDir, vsockUDS, netTap string) error {
	st, err := snapshot.Read(dir)
	if err != nil {
		return err // vmm.Restore says it again, in its words
	}
	layers, err := snapshot.Layers(dir, st)
	if err != nil {
		return err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	fork := forkID != ""
	if fork {
		if workDir != "" {
			b.add(workDir, true, false)
		} else {
			b.add(filepath.Dir(abs), true, false)
		}
	}
	b.add(abs, !fork, false)
	for _, l := range layers {
		b.add(filepath.Dir(l.Path), false, false)
	}
	for _, d := range st.Machine.Disks {
		if d.Clone != "" && filepath.IsAbs(d.Clone) {
			b.add(d.Clone, false, false) // relative ones are in the snapshot
		}
		if fork && d.Clone != "" && !d.ReadOnly {
			continue // the fork gets a copy of the clone in its work directory
		}
		b.add(d.Path, !d.ReadOnly && !fork, false)
	}
	for _, s := range st.Machine.VhostUserBlk {
		b.add(s, true, false)
	}
	if v := st.Machine.Vsock; v != nil && vsockUDS == "" {
		b.dirOf(v.UDS) // a fork's is the saved path + "." + its id
	}
	b.dirOf(vsockUDS)
	if netTap != "" {
		b.tap(netTap)
	} else if st.Machine.Net != nil {
		b.tap(st.Machine.Net.Tap)
	}
	return nil
}

// libDirs are where the dynamic loader looks without /etc/ld.so.cache
// (which the jail lacks): Debian's multiarch directories first.
var libDirs = []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"}

// sharedLibs are read-only binds of this executable's ELF interpreter and
// the shared libraries it needs (and theirs), each at a path the loader
// searches, from the file it resolves to.
func sharedLibs() ([]jail.Bind, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("jail the vmm: find its executable: %w", err)
	}
	var out []jail.Bind
	seen := map[string]bool{}
	var walk func(path string, top bool) error
	walk = func(path string, top bool) error {
		f, err := elf.Open(path)
		if err != nil {
			return fmt.Errorf("jail the vmm: read %s: %w", path, err)
		}
		defer f.Close()
		if top {
			for _, p := range f.Progs {
				if p.Type != elf.PT_INTERP {
					continue
				}
				b, err := io.ReadAll(p.Open())
				if err != nil {
					return fmt.Errorf("jail the vmm: %s's interpreter: %w", path, err)
				}
				interp := strings.TrimRight(string(b), "\x00")
				real, err := filepath.EvalSymlinks(interp)
				if err != nil {
					return fmt.Errorf("jail the vmm: %s's interpreter %s: %w", path, interp, err)
				}
				out = append(out, jail.Bind{Path: interp, Source: real})
			}
		}
		needed, err := f.ImportedLibraries()
		if err != nil {
			return fmt.Errorf("jail the vmm: %s's libraries: %w", path, err)
		}
		for _, name := range needed {
			if seen[name] {
				continue
			}
			seen[name] = true
			found := false
			for _, d := range libDirs {
				at := filepath.Join(d, name)
				real, err := filepath.EvalSymlinks(at)
				if err != nil {
					continue
				}
				out = append(out, jail.Bind{Path: at, Source: real})
				if err := walk(real, false); err != nil {
					return err
				}
				found = true
				break
			}
			if !found {
				return fmt.Errorf("jail the vmm: %s needs %s, which is in none of %v", path, name, libDirs)
			}
		}
		return nil
	}
	if err := walk(exe, true); err != nil {
		return nil, err
	}
	return out, nil
}

// jailHint wraps the control API's VM: a snapshot into a directory the
// jailed vmm cannot see says what to do, and the pid is the host's.
type jailHint struct{ controlserver.VM }

func (h jailHint) Info() control.Info {
	info := h.VM.Info()
	info.VMMPID = jailed.KeeperPID
	return info
}

func (h jailHint) Snapshot(dir string) error     { return notInJail(h.VM.Snapshot(dir)) }
func (h jailHint) SnapshotDiff(dir string) error { return notInJail(h.VM.SnapshotDiff(dir)) }

func notInJail(err error) error {
	if jailed == nil || !(errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.EROFS)) {
		return err
	}
	return fmt.Errorf("%w (the vmm is jailed and sees only its own files: write snapshots under the control socket's directory, or start it with --jail-bind DIR)", err)
}
