package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sietch-vm/sietch/api/model"
)

// linuxTimeout bounds the sietch end-to-end run: one Linux boot to the
// agent (tens of seconds here), python3's first start, then restores.
const linuxTimeout = 18 * time.Minute

// artifact finds a build output from the environment (set by `make test`)
// or the repository's build/ tree, or skips saying how to build it.
func artifact(t *testing.T, env, rel, target string) string {
	t.Helper()
	p := os.Getenv(env)
	if p == "" {
		p = filepath.Join("..", "..", rel)
	}
	if _, err := os.Stat(p); err != nil {
		t.Skipf("%s not built (%v): run `make %s` (or `make test`)", rel, err, target)
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// goBuild builds a package of this module into dir.
func goBuild(t *testing.T, dir, name, pkg string, static bool) string {
	t.Helper()
	out := filepath.Join(dir, name)
	args := []string{"build", "-o", out}
	if static {
		args = append(args, "-trimpath", "-ldflags=-s -w")
	}
	cmd := exec.Command("go", append(args, pkg)...)
	if static {
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// lockedBuffer is a bytes.Buffer safe for a process's output and the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// webServer is the template's start command: a python3 HTTP server that
// reports, from a process that was started before the snapshot, what a
// restored copy sees of its identity. It answers without a process start
// per request, which costs seconds in a guest on this host, and imports
// little (http.server's imports alone take a minute here).
const webServer = `exec python3 -c '
import json, os, socket, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 8000))
s.listen(8)
open("/run/web.ready", "w").close()
while True:
    c, _ = s.accept()
    c.recv(65536)
    b = json.dumps({"hostname": socket.gethostname(), "time": time.time(), "random": os.urandom(16).hex()}).encode()
    c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(b) + b)
    c.close()
'`

// identity is what webServer answers.
type identity struct {
	Hostname string  `json:"hostname"`
	Time     float64 `json:"time"`
	Random   string  `json:"random"`
}

// TestSietchLinuxTemplates drives real Linux sandboxes through sietchd
// with the CLI, as a user would, on one cold boot: a template whose start
// command is an HTTP server, three creates that find it answering with
// their own hostname, clock and randomness, files, snapshots and their
// dependents, pause to disk at the end of a lifetime with the next exec
// resuming it, and a suspended sandbox across a sietchd restart.
func TestSietchLinuxTemplates(t *testing.T) {
	if _, err := os.Stat("/dev/kvm"); err != nil || os.Geteuid() != 0 {
		t.Skip("needs /dev/kvm and root (device processes are jailed)")
	}
	kernel := artifact(t, "SIETCH_KERNEL", "build/kernel/vmlinux", "kernel")
	rootfs := artifact(t, "SIETCH_ROOTFS", "build/rootfs.ext4", "image")
	bin, err := os.MkdirTemp("", "sietch-e2e-") // unix socket paths must stay short
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// sietchd leaves its vmm processes running when it stops; a test
		// that failed half-way must not leave them behind.
		killVMMs(t, bin)
		os.RemoveAll(bin)
	})
	goBuild(t, bin, "vmm", "../vmm", false)
	sietchd := goBuild(t, bin, "sietchd", "../sietchd", false)
	cli := goBuild(t, bin, "sietch", ".", false)
	guestInit := goBuild(t, bin, "guest-init", "../../guest-init/cmd/guest-init", true)
	initrd := filepath.Join(bin, "initramfs.cpio")
	if b, err := exec.Command("go", "run", "../../guest-init/cmd/mkinitramfs", "-o", initrd, "--init", guestInit).CombinedOutput(); err != nil {
		t.Fatalf("mkinitramfs: %v\n%s", err, b)
	}

	// A build directory as make lays it out: sietchd finds its default
	// image there with no --image flag.
	build := filepath.Join(bin, "build")
	links := map[string]string{"kernel/vmlinux": kernel, "initramfs/initramfs.cpio": initrd, "rootfs.ext4": rootfs}
	// The desktop image, when `make image-desktop` built it: sietchd
	// offers it as the image "desktop".
	desktopRoot := os.Getenv("SIETCH_DESKTOP_ROOTFS")
	if desktopRoot == "" {
		desktopRoot = filepath.Join("..", "..", "build", "desktop.ext4")
	}
	haveDesktop := false
	if abs, err := filepath.Abs(desktopRoot); err == nil {
		if _, err := os.Stat(abs); err == nil {
			links["desktop.ext4"], haveDesktop = abs, true
		}
	}
	for rel, target := range links {
		os.MkdirAll(filepath.Dir(filepath.Join(build, rel)), 0o755)
		if err := os.Symlink(target, filepath.Join(build, rel)); err != nil {
			t.Fatal(err)
		}
	}

	timeout := linuxTimeout
	if os.Getenv("SIETCH_TEST_BROWSER") == "1" {
		timeout = 75 * time.Minute // make test-desktop: Openbox's and Chromium's first starts take many minutes here
	}
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	state := filepath.Join(bin, "state")
	var dlog lockedBuffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sietchd log:\n%s", &dlog)
		}
	})
	env := append(os.Environ(), "SIETCH_STATE_DIR="+state)
	sietch := func(stdin []byte, args ...string) (string, string, int) {
		t.Helper()
		cmd := exec.CommandContext(ctx, cli, args...)
		cmd.Env = env
		if stdin != nil {
			cmd.Stdin = bytes.NewReader(stdin)
		}
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("sietch %s: %v", strings.Join(args, " "), err)
		}
		return out.String(), errb.String(), code
	}
	must := func(args ...string) string {
		t.Helper()
		out, errOut, code := sietch(nil, args...)
		if code != 0 {
			t.Fatalf("sietch %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
		return strings.TrimSpace(out)
	}
	startDaemon := func() (stop func()) {
		t.Helper()
		// The sandboxes' DNS forwarder asks the test's own resolver, in
		// the namespace network() makes: no query leaves this host.
		args := []string{"--state-dir", state, "--default-disk-mib", "64", "--build-dir", build, "--net-resolver", e2eResolver}
		if os.Getenv("SIETCH_E2E_ONLY") == "desktop" {
			// The desktop checks need no network; without it this run
			// leaves the host's nftables table to another sietchd.
			args = append(args, "--net-pool", "off")
		}
		daemon := exec.CommandContext(ctx, sietchd, args...)
		daemon.Stdout, daemon.Stderr = &dlog, &dlog
		daemon.WaitDelay = 5 * time.Second
		if err := daemon.Start(); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
			if _, _, code := sietch(nil, "health"); code == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("sietchd did not answer within a minute")
			}
		}
		return func() {
			daemon.Process.Signal(os.Interrupt)
			daemon.Wait()
		}
	}
	stop := startDaemon()
	defer func() {
		// A failed run leaves its sandboxes: remove them, so that their
		// TAPs and addresses do not outlive the test.
		if t.Failed() {
			removeAllSandboxes(t, cli, env)
		}
		stop()
	}()
	if os.Getenv("SIETCH_E2E_ONLY") == "desktop" { // make test-desktop: the full desktop image, with its browser
		if !haveDesktop {
			t.Fatal("SIETCH_E2E_ONLY=desktop needs SIETCH_DESKTOP_ROOTFS (make image-desktop)")
		}
		(&e2eCLI{t: t, ctx: ctx, cli: cli, env: env, dir: bin, sietch: sietch, must: must}).desktop()
		return
	}

	// One cold boot: the template "default", so that a create with no
	// flags resumes it too.
	t0 := time.Now()
	_, buildLog, code := sietch(nil, "template", "build", "default", "--context", "python", "--context", "bash", "--start-cmd", webServer, "--ready-port", "8000", "--ready-cmd", "test -e /run/web.ready", "--ready-timeout", "5m")
	if code != 0 {
		t.Fatalf("template build: exit %d\n%s", code, buildLog)
	}
	t.Logf("template built in %v:\n%s", time.Since(t0).Round(time.Millisecond), buildLog)
	for _, step := range []string{"boot done", "start done", "ready done", "contexts done", "snapshot done"} {
		if !strings.Contains(buildLog, step) {
			t.Errorf("template build progress lacks %q", step)
		}
	}

	// Three sandboxes, each finding the server running with its own identity.
	var ids []string
	seen := map[string]bool{}
	for i := range 3 {
		t0 := time.Now()
		args := []string{"create", "-e", "GREETING=hello", "-l", "team=e2e"}
		if i == 0 {
			args = append(args, "--template", "default")
		}
		id := must(args...)
		created := time.Since(t0)
		ids = append(ids, id)
		hp := must("port", id, "8000")
		var got identity
		sent := time.Now()
		getJSON(t, "http://"+hp+"/", &got)
		// The guest read its clock somewhere between the request and the
		// answer, each of which crosses the agent's relay (hundreds of ms
		// here): compare it with the midpoint, which is off by at most
		// half the round trip.
		rtt := time.Since(sent)
		skew := sent.Add(rtt / 2).Sub(time.Unix(0, int64(got.Time*1e9)))
		t.Logf("%s: created in %v; server answers %+v (clock %v ± %v behind the host)", id, created.Round(time.Millisecond), got, skew.Round(time.Millisecond), (rtt / 2).Round(time.Millisecond))
		if got.Hostname != id {
			t.Errorf("%s: the template's server sees hostname %q; want the sandbox id", id, got.Hostname)
		}
		if skew.Abs()-rtt/2 > time.Second {
			t.Errorf("%s: guest clock is %v ± %v off the host's; want within 1s", id, skew, rtt/2)
		}
		if seen[got.Random] || len(got.Random) != 32 {
			t.Errorf("%s: random bytes %q repeat another sandbox's", id, got.Random)
		}
		seen[got.Random] = true
	}
	ls := must("ls")
	if strings.Count(ls, "template default") != 3 {
		t.Errorf("sietch ls does not show three sandboxes from template default:\n%s", ls)
	}
	a := ids[0]
	out, errOut, code := sietch(nil, "exec", a, "--", "sh", "-c", "echo $GREETING $SIETCH_SANDBOX_ID; cat /run/sietch/labels.json")
	if code != 0 || out != "hello "+a+"\n{\"team\":\"e2e\"}\n" {
		t.Errorf("exec in %s: exit %d, %q (stderr %q); want the create's env and labels", a, code, out, errOut)
	}
	t0 = time.Now()
	(&e2eCLI{t: t, ctx: ctx, cli: cli, env: env, dir: bin, sietch: sietch, must: must}).sessions(ids[2])
	t.Logf("sessions in %s took %v", ids[2], time.Since(t0).Round(time.Millisecond))
	t0 = time.Now()
	(&e2eCLI{t: t, ctx: ctx, cli: cli, env: env, dir: bin, sietch: sietch, must: must}).network()
	t.Logf("network checks took %v", time.Since(t0).Round(time.Millisecond))
	if _, errOut, code := sietch(nil, "template", "rm", "default"); code != 4 || !strings.Contains(errOut, ids[1]) {
		t.Errorf("template rm while sandboxes run from it: exit %d, %q; want 4 naming them", code, errOut)
	}

	// Files, a snapshot, its dependents, a restore; meanwhile p's
	// lifetime ends.
	content := make([]byte, 256<<10)
	rand.Read(content)
	local := filepath.Join(bin, "in.bin")
	if err := os.WriteFile(local, content, 0o600); err != nil {
		t.Fatal(err)
	}
	p := must("create", "--timeout", "15s", "--on-timeout", "pause")
	must("cp", local, p+":/root/state.bin")
	must("cp", local, a+":/root/in.bin")
	back := filepath.Join(bin, "back.bin")
	must("cp", a+":/root/in.bin", back)
	if got, err := os.ReadFile(back); err != nil || !bytes.Equal(got, content) {
		t.Fatalf("cp there and back: %d bytes, %v; want the 256 KiB sent", len(got), err)
	}
	snap := must("snapshot", "--diff", a)
	snaps := must("snapshots")
	if !strings.Contains(snaps, "template default") || !strings.Contains(snaps, "snapshot "+snap+" (a diff on it)") {
		t.Errorf("sietch snapshots does not show the template's snapshot needed by the diff %s:\n%s", snap, snaps)
	}
	must("rm", a)
	t0 = time.Now()
	r := must("restore", snap)
	out, errOut, code = sietch(nil, "exec", r, "--", "sha256sum", "/root/in.bin")
	t.Logf("restore and first exec took %v", time.Since(t0).Round(time.Millisecond))
	if want := fmt.Sprintf("%x", sha256Sum(content)); code != 0 || !strings.HasPrefix(out, want) {
		t.Fatalf("sha256sum in the restored sandbox: exit %d, %q (stderr %q); want %s", code, out, errOut, want)
	}
	if _, errOut, code := sietch(nil, "snapshot", "rm", snap); code != 4 || !strings.Contains(errOut, r) {
		t.Errorf("snapshot rm while %s runs from it: exit %d, %q", r, code, errOut)
	}
	must("rm", r)
	must("snapshot", "rm", snap)

	// The end of its lifetime paused p to disk; the next exec resumes it.
	for deadline := time.Now().Add(2 * time.Minute); !strings.Contains(must("ls"), p+"  suspended"); time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s was not suspended at the end of its lifetime:\n%s", p, must("ls"))
		}
	}
	out, errOut, code = sietch(nil, "exec", p, "--", "sha256sum", "/root/state.bin")
	if want := fmt.Sprintf("%x", sha256Sum(content)); code != 0 || !strings.HasPrefix(out, want) {
		t.Errorf("exec in the suspended %s: exit %d, %q (stderr %q); want it resumed with its file", p, code, out, errOut)
	}

	// A sandbox paused to disk stays so across a sietchd restart.
	q := ids[1]
	must("pause", "--to-disk", q)
	stop()
	stop = startDaemon()
	if ls := must("ls"); !strings.Contains(ls, q+"  suspended") {
		t.Errorf("after a restart %s is not suspended:\n%s", q, ls)
	}
	must("resume", q)
	hp := must("port", q, "8000")
	var got identity
	getJSON(t, "http://"+hp+"/", &got)
	if got.Hostname != q {
		t.Errorf("%s resumed from disk: its server answers %+v", q, got)
	}

	t0 = time.Now()
	(&e2eCLI{t: t, ctx: ctx, cli: cli, env: env, dir: bin, sietch: sietch, must: must}).storm(q)
	t.Logf("the fork bomb check took %v", time.Since(t0).Round(time.Millisecond))

	t0 = time.Now()
	(&e2eCLI{t: t, ctx: ctx, cli: cli, env: env, dir: bin, sietch: sietch, must: must}).dockerfile()
	t.Logf("the Dockerfile checks took %v", time.Since(t0).Round(time.Millisecond))

	must("rm", p, q, ids[2])
	must("template", "rm", "default")
	if snaps := must("snapshots"); strings.Count(snaps, "\n") != 0 {
		t.Errorf("snapshots left after every sandbox and the template went:\n%s", snaps)
	}

	// Last, as it may skip: a desktop from its template, screenshots and input.
	if !haveDesktop {
		t.Skipf("the desktop checks need build/desktop.ext4 (make image-desktop; make test builds it)")
	}
	t0 = time.Now()
	(&e2eCLI{t: t, ctx: ctx, cli: cli, env: env, dir: bin, sietch: sietch, must: must}).desktop()
	t.Logf("the desktop checks took %v", time.Since(t0).Round(time.Millisecond))
}

// getJSON GETs url and decodes its JSON body into v.
func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }

// killVMMs kills every process whose executable lies under dir (the test's
// vmm and its device processes), saying so.
func killVMMs(t *testing.T, dir string) {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if exe, err := os.Readlink("/proc/" + e.Name() + "/exe"); err == nil && strings.HasPrefix(exe, dir+"/") {
			if !t.Failed() {
				t.Errorf("process %d (%s) was left running", pid, exe)
			}
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// removeAllSandboxes removes every sandbox the test's sietchd has, with a
// context of its own (the test's may have ended); failures are logged.
func removeAllSandboxes(t *testing.T, cli string, env []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ls := exec.CommandContext(ctx, cli, "ls", "--json")
	ls.Env = env
	out, err := ls.Output()
	var list struct{ Sandboxes []model.Sandbox }
	if err == nil {
		err = json.Unmarshal(out, &list)
	}
	if err != nil {
		t.Logf("cleanup: list sandboxes: %v", err)
		return
	}
	args := []string{"rm"}
	for _, sb := range list.Sandboxes {
		args = append(args, sb.ID)
	}
	if len(args) == 1 {
		return
	}
	rm := exec.CommandContext(ctx, cli, args...)
	rm.Env = env
	if out, err := rm.CombinedOutput(); err != nil {
		t.Logf("cleanup: sietch %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}
