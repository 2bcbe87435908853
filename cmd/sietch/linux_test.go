package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// linuxTimeout bounds the sietch end-to-end run: a Linux boot to the agent
// (tens of seconds here), python3's first start, a snapshot and a restore.
const linuxTimeout = 8 * time.Minute

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

// TestSietchLinuxSandbox drives a real Linux sandbox through sietchd with
// the CLI, as a user would: create from the default image, exec python3
// with streamed output, cp both ways, snapshot, rm, restore, and find the
// file again in the restored sandbox.
func TestSietchLinuxSandbox(t *testing.T) {
	if _, err := os.Stat("/dev/kvm"); err != nil || os.Geteuid() != 0 {
		t.Skip("needs /dev/kvm and root (device processes are jailed)")
	}
	kernel := artifact(t, "SIETCH_KERNEL", "build/kernel/vmlinux", "kernel")
	rootfs := artifact(t, "SIETCH_ROOTFS", "build/rootfs.ext4", "image")
	bin, err := os.MkdirTemp("", "sietch-e2e-") // unix socket paths must stay short
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(bin) })
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
	for rel, target := range map[string]string{"kernel/vmlinux": kernel, "initramfs/initramfs.cpio": initrd, "rootfs.ext4": rootfs} {
		os.MkdirAll(filepath.Dir(filepath.Join(build, rel)), 0o755)
		if err := os.Symlink(target, filepath.Join(build, rel)); err != nil {
			t.Fatal(err)
		}
	}

	ctx, cancel := context.WithTimeout(t.Context(), linuxTimeout)
	defer cancel()
	state := filepath.Join(bin, "state")
	daemon := exec.CommandContext(ctx, sietchd, "--state-dir", state, "--default-disk-mib", "64", "--build-dir", build)
	var dlog lockedBuffer
	daemon.Stdout, daemon.Stderr = &dlog, &dlog
	daemon.WaitDelay = 5 * time.Second
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sietchd log:\n%s", &dlog)
		}
	})
	defer func() {
		daemon.Process.Signal(os.Interrupt)
		daemon.Wait()
	}()
	env := append(os.Environ(), "SIETCH_ADDR="+filepath.Join(state, "sietchd.sock"), "SIETCH_TOKEN_FILE="+filepath.Join(state, "token"))
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
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		if _, _, code := sietch(nil, "health"); code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("sietchd did not answer within a minute")
		}
	}

	// create returns once the guest agent answers: exec works at once.
	t0 := time.Now()
	id := must("create")
	t.Logf("created %s (a cold boot to the agent) in %v", id, time.Since(t0).Round(time.Millisecond))
	exec1 := func(id string, args ...string) (string, string, int) {
		t.Helper()
		return sietch(nil, append([]string{"exec", id, "--"}, args...)...)
	}
	t0 = time.Now()
	out, errOut, code := exec1(id, "python3", "-c", "import sys\nfor i in range(3): print('line', i, flush=True)\nsys.exit(3)")
	t.Logf("first exec took %v", time.Since(t0).Round(time.Millisecond))
	if code != 3 || out != "line 0\nline 1\nline 2\n" {
		t.Fatalf("sietch exec python3 right after create: exit %d, stdout %q, stderr %q; want exit 3 and three lines", code, out, errOut)
	}

	content := make([]byte, 256<<10)
	rand.Read(content)
	local := filepath.Join(bin, "in.bin")
	if err := os.WriteFile(local, content, 0o600); err != nil {
		t.Fatal(err)
	}
	must("cp", local, id+":/root/in.bin")
	back := filepath.Join(bin, "back.bin")
	must("cp", id+":/root/in.bin", back)
	if got, err := os.ReadFile(back); err != nil || !bytes.Equal(got, content) {
		t.Fatalf("cp there and back: %d bytes, %v; want the 256 KiB sent", len(got), err)
	}

	snap := must("snapshot", id)
	t.Logf("snapshot %s", snap)
	must("rm", id)
	if _, _, code := sietch(nil, "exec", id, "--", "true"); code != 3 {
		t.Errorf("exec in a removed sandbox: exit %d, want 3 (not found)", code)
	}
	t0 = time.Now()
	id2 := must("restore", snap)
	out, errOut, code = exec1(id2, "sha256sum", "/root/in.bin")
	t.Logf("restore and first exec took %v", time.Since(t0).Round(time.Millisecond))
	want := fmt.Sprintf("%x", sha256Sum(content))
	if code != 0 || !strings.HasPrefix(out, want) {
		t.Fatalf("sha256sum in the restored sandbox: exit %d, %q (stderr %q); want %s", code, out, errOut, want)
	}
	ls := must("ls")
	if !strings.Contains(ls, id2) || strings.Contains(ls, id+" ") {
		t.Errorf("sietch ls after rm and restore:\n%s", ls)
	}
	must("rm", id2)
}

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }
