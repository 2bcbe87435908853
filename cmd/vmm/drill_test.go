package main

import (
	"cmp"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sietch-vm/sietch/jail"
	"github.com/sietch-vm/sietch/testguest"
)

// Escape drills: a vmm built with the sietchdrill tag makes a forbidden
// system call from an ordinary thread once it runs (drill.go), or from
// vCPU 0's thread before it first enters the guest (vcpu:…, vmm/drill.go):
// where code that took over the vmm through the control socket or an
// exit handler would be. Each must kill the whole vmm with SIGSYS,
// reported as a seccomp kill; an allowed call leaves it running;
// --no-jail leaves it unconfined.
func TestEscapeDrills(t *testing.T) {
	requireKVM(t)
	bin := filepath.Join(t.TempDir(), "vmm-drill")
	if out, err := exec.Command("go", "build", "-tags", "sietchdrill", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build the drill vmm: %v\n%s", err, out)
	}
	counter := testguest.Path(t, "counter")
	start := func(call string, extra ...string) (*exec.Cmd, *syncOutput, chan error) {
		t.Helper()
		return startDrill(t, bin, counter, call, "", extra...)
	}
	for _, call := range []string{"execve", "fork", "ptrace", "mount", "finit_module", "unshare", "bpf", "socket-inet", "perf_event_open",
		"vcpu:openat", "vcpu:socket", "vcpu:kill", "vcpu:mount"} {
		t.Run(call, func(t *testing.T) {
			cmd, stderr, done := start(call)
			select {
			case <-done:
			case <-time.After(runTimeout):
				t.Fatalf("the vmm still runs %v after drill %s; stderr:\n%s", runTimeout, call, stderr)
			}
			done <- nil // for the cleanup
			ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
			if !ws.Signaled() || ws.Signal() != syscall.SIGSYS || !strings.Contains(jail.Died(cmd.ProcessState), "seccomp") {
				t.Errorf("drill %s: the vmm %s; want killed by SIGSYS (seccomp); stderr:\n%s", call, jail.Died(cmd.ProcessState), stderr)
			}
		})
	}
	// The controls: an allowed call returns and the vmm runs on; with
	// --no-jail a forbidden one returns too.
	for _, c := range []struct {
		call  string
		extra []string
	}{{"getpid", nil}, {"vcpu:getpid", nil}, {"unshare", []string{"--no-jail"}}, {"vcpu:openat", []string{"--no-jail", "--seccomp-vcpu=false"}}} {
		_, stderr, done := start(c.call, c.extra...)
		ctx, cancel := context.WithTimeout(t.Context(), runTimeout)
		for !strings.Contains(stderr.String(), "drill "+c.call+": returned") {
			select {
			case err := <-done:
				cancel()
				t.Fatalf("drill %s %v: the vmm ended (%v) before the call returned; stderr:\n%s", c.call, c.extra, err, stderr)
			case <-ctx.Done():
				cancel()
				t.Fatalf("drill %s %v: no return within %v; stderr:\n%s", c.call, c.extra, runTimeout, stderr)
			case <-time.After(50 * time.Millisecond):
			}
		}
		cancel()
	}
}

// startDrill starts the drill vmm bin on the counter guest with drill call
// (path is its SIETCH_VMM_DRILL_PATH).
func startDrill(t *testing.T, bin, counter, call, path string, extra ...string) (*exec.Cmd, *syncOutput, chan error) {
	t.Helper()
	args := append([]string{"run", "--kernel", counter, "--mem", "64M", "--cmdline", "n=100000000000"}, extra...)
	cmd := exec.Command(bin, args...)
	drill := "SIETCH_VMM_DRILL=" + call
	if c, ok := strings.CutPrefix(call, "vcpu:"); ok {
		drill = "SIETCH_VMM_DRILL_VCPU=" + c
	}
	cmd.Env = append(os.Environ(), drill, "SIETCH_VMM_DRILL_PATH="+path)
	var stderr syncOutput
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill(); <-done })
	return cmd, &stderr, done
}

// drillReturn waits for drill call's "returned (…)" line and gives what
// the call returned.
func drillReturn(t *testing.T, stderr *syncOutput, done chan error, call string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), runTimeout)
	defer cancel()
	prefix := "drill " + call + ": returned ("
	for {
		out := stderr.String()
		if i := strings.Index(out, prefix); i >= 0 {
			rest := out[i+len(prefix):]
			if j := strings.Index(rest, ")\n"); j >= 0 {
				return rest[:j]
			}
		}
		select {
		case err := <-done:
			done <- err
			t.Fatalf("drill %s: the vmm ended (%v) before the call returned; stderr:\n%s", call, err, out)
		case <-ctx.Done():
			t.Fatalf("drill %s: no return within %v; stderr:\n%s", call, runTimeout, out)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// The vmm's jail on paths: calls its policy must allow (open, connect)
// reach nothing of the host's. A host file, a host service's unix socket
// and /dev/kvm (needed once, gone once the VM is built) are not in its
// file system, and /proc/sys cannot be opened for writing. Unjailed, the
// same calls succeed: the drills reach what they aim at.
func TestJailDrills(t *testing.T) {
	requireKVM(t)
	if os.Geteuid() != 0 {
		t.Skip("the vmm's jail needs root")
	}
	bin := filepath.Join(t.TempDir(), "vmm-drill")
	if out, err := exec.Command("go", "build", "-tags", "sietchdrill", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build the drill vmm: %v\n%s", err, out)
	}
	counter := testguest.Path(t, "counter")
	host := t.TempDir()
	secret := filepath.Join(host, "secret")
	if err := os.WriteFile(secret, []byte("host only"), 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(host, "service.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	for _, d := range []struct {
		call, path string
		jailed     string // what the jailed call returns
		control    bool   // run unjailed too: the call must succeed
	}{
		{"open-host-file", secret, "no such file or directory", true},
		{"connect-unix", sock, "no such file or directory", true},
		{"open-kvm", "", "no such file or directory", true},
		{"write-proc-sys", "", "read-only file system", false},
	} {
		t.Run(d.call, func(t *testing.T) {
			_, stderr, done := startDrill(t, bin, counter, d.call, d.path)
			if got := drillReturn(t, stderr, done, d.call); !strings.Contains(got, d.jailed) {
				t.Errorf("jailed vmm: %s returned %q, want %q", d.call, got, d.jailed)
			}
			if !d.control {
				return
			}
			_, stderr, done = startDrill(t, bin, counter, d.call, d.path, "--no-jail")
			if got := drillReturn(t, stderr, done, d.call); got != "<nil>" {
				t.Errorf("unjailed vmm (the control): %s returned %q, want success", d.call, got)
			}
		})
	}
}

// What a running vmm's jail holds, read from the host as an operator
// would: new mount, pid, ipc, uts and net namespaces; a root with only
// the VM's files (the kernel read-only, the control socket's directory
// writable, the loader and libraries read-only, /dev/null and a
// read-only /proc; no /dev/kvm once the VM runs); no_new_privs and
// seccomp on it and on its keeper. As uid 0 it has a bounding set of
// eight capabilities; with --jail-uid it and its device process run as
// that uid with none, and what it writes is that uid's.
func TestVMMJailView(t *testing.T) {
	requireKVM(t)
	if os.Geteuid() != 0 {
		t.Skip("the vmm's jail needs root")
	}
	for _, uid := range []int{0, 201234} {
		t.Run("uid="+strconv.Itoa(uid), func(t *testing.T) { testVMMJailView(t, uid) })
	}
}

func testVMMJailView(t *testing.T, uid int) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "api.sock")
	kernel := testguest.Path(t, "counter")
	ctx, cancel := context.WithTimeout(t.Context(), runTimeout)
	defer cancel()
	args := []string{"run", "--kernel", kernel, "--mem", "64M", "--cmdline", "n=100000000000", "--rng", "--api-sock", sock}
	if uid != 0 {
		args = append(args, "--jail-uid", strconv.Itoa(uid))
	}
	cmd := exec.CommandContext(ctx, vmmBin, args...)
	var stdout, stderr syncOutput
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	waitOutput(t, &stdout, done, "counter: start")
	children := func(pid string) []string {
		var kids []byte
		tasks, _ := filepath.Glob("/proc/" + pid + "/task/*/children")
		for _, task := range tasks {
			b, _ := os.ReadFile(task)
			kids = append(kids, b...)
		}
		return strings.Fields(string(kids))
	}
	keeper := strconv.Itoa(cmd.Process.Pid)
	f := children(keeper)
	if len(f) != 1 {
		t.Fatalf("the keeper %s has children %q, want one jailed vmm", keeper, f)
	}
	vmm := f[0]
	for _, ns := range []string{"mnt", "pid", "ipc", "uts", "net"} {
		host, _ := os.Readlink("/proc/self/ns/" + ns)
		got, err := os.Readlink("/proc/" + vmm + "/ns/" + ns)
		if err != nil || got == host {
			t.Errorf("%s namespace: vmm %q, host %q (%v); want its own", ns, got, host, err)
		}
	}
	mi, err := os.ReadFile("/proc/" + vmm + "/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	mounts := map[string]string{} // mount point → options
	for _, line := range strings.Split(strings.TrimSpace(string(mi)), "\n") {
		if f := strings.Fields(line); len(f) > 5 {
			mounts[f[4]] = f[5]
		}
	}
	want := map[string]string{"/": "ro", kernel: "ro", dir: "rw", "/dev/null": "rw", "/proc": "ro"}
	for at, opt := range want {
		if got, ok := mounts[at]; !ok || !strings.HasPrefix(got, opt+",") {
			t.Errorf("mount %s: options %q (present: %v), want %s", at, got, ok, opt)
		}
	}
	for at, opt := range mounts {
		_, wanted := want[at]
		lib := strings.Contains(at, "/lib") && strings.HasPrefix(opt, "ro,")
		if !wanted && !lib && at != "/run/sietch/host-profile" {
			t.Errorf("unexpected mount %s (%s) in the vmm's jail", at, opt)
		}
	}
	status := func(pid string) map[string]string {
		b, err := os.ReadFile("/proc/" + pid + "/status")
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok {
				m[k] = strings.TrimSpace(v)
			}
		}
		return m
	}
	st := status(vmm)
	// CAP_CHOWN, DAC_OVERRIDE, DAC_READ_SEARCH, KILL, SETGID, SETUID,
	// SETPCAP, SYS_ADMIN.
	const bnd = "00000000002001e7"
	eff, ids := bnd, "0\t0\t0\t0"
	if uid != 0 {
		u := strconv.Itoa(uid)
		eff, ids = "0000000000000000", u+"\t"+u+"\t"+u+"\t"+u
	}
	if st["CapBnd"] != bnd || st["CapEff"] != eff || st["CapPrm"] != eff || st["Uid"] != ids || st["Gid"] != ids ||
		st["NoNewPrivs"] != "1" || st["Seccomp"] != "2" {
		t.Errorf("jailed vmm: CapBnd %s CapEff %s CapPrm %s Uid %q Gid %q NoNewPrivs %s Seccomp %s; want %s, %s, %s, %q, %q, 1, 2",
			st["CapBnd"], st["CapEff"], st["CapPrm"], st["Uid"], st["Gid"], st["NoNewPrivs"], st["Seccomp"], bnd, eff, eff, ids, ids)
	}
	limits, _ := os.ReadFile("/proc/" + vmm + "/limits")
	for _, want := range []*regexp.Regexp{regexp.MustCompile(`Max open files +4096 +4096`), regexp.MustCompile(`Max core file size +0 +0`)} {
		if !want.Match(limits) {
			t.Errorf("jailed vmm's rlimits: want %s in\n%s", want, limits)
		}
	}
	if k := status(keeper); k["NoNewPrivs"] != "1" || k["Seccomp"] != "2" {
		t.Errorf("keeper: NoNewPrivs %s Seccomp %s; want 1, 2", k["NoNewPrivs"], k["Seccomp"])
	}
	// Its device process (rng) runs as the vmm's uid when it has one.
	devs := children(vmm)
	devUID := strconv.Itoa(cmp.Or(uid, jail.NobodyID))
	if len(devs) != 1 || !strings.HasPrefix(status(devs[0])["Uid"], devUID+"\t") {
		t.Fatalf("device processes %v: want one, uid %s", devs, devUID)
	}
	// A snapshot outside what the jail holds is refused with what to do;
	// inside the control socket's directory it is written.
	outside := filepath.Join(t.TempDir(), "snap")
	if r := runVMM(t, "snapshot", "--api-sock", sock, "--dir", outside); r.code != exitError || !strings.Contains(r.stderr, "--jail-bind") {
		t.Errorf("snapshot outside the jail: exit %d, stderr %q; want 1 and a hint at --jail-bind", r.code, r.stderr)
	}
	if r := runVMM(t, "snapshot", "--api-sock", sock, "--dir", filepath.Join(dir, "snap")); r.code != 0 {
		t.Errorf("snapshot in the socket's directory: exit %d, stderr %q", r.code, r.stderr)
	}
	fi, err := os.Stat(filepath.Join(dir, "snap", "state"))
	if err != nil {
		t.Fatal(err)
	}
	if owner := fi.Sys().(*syscall.Stat_t).Uid; owner != uint32(uid) {
		t.Errorf("the snapshot's state file belongs to uid %d, want %d", owner, uid)
	}
	// The jailed vmm and its devices end with their keeper, whatever uid
	// they run as (a uid change clears the parent-death signal).
	cmd.Process.Kill()
	for deadline := time.Now().Add(runTimeout); ; time.Sleep(20 * time.Millisecond) {
		_, err1 := os.Stat("/proc/" + vmm)
		_, err2 := os.Stat("/proc/" + devs[0])
		if os.IsNotExist(err1) && os.IsNotExist(err2) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the jailed vmm %s or its device %s outlived its keeper by %v", vmm, devs[0], runTimeout)
		}
	}
}
