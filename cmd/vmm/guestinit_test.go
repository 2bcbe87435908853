package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sietch-vm/sietch/guest-init/agent"
)

// buildGuestInitramfs builds guest-init (static) and an initramfs with it
// as /init into dir, as `make initramfs` does; it returns both paths.
func buildGuestInitramfs(t testing.TB, dir string) (bin, cpio string) {
	t.Helper()
	bin = filepath.Join(dir, "guest-init")
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "../../guest-init/cmd/guest-init")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build guest-init: %v\n%s", err, out)
	}
	cpio = filepath.Join(dir, "initramfs.cpio")
	if out, err := exec.Command("go", "run", "../../guest-init/cmd/mkinitramfs", "-o", cpio, "--init", bin).CombinedOutput(); err != nil {
		t.Fatalf("mkinitramfs: %v\n%s", err, out)
	}
	return bin, cpio
}

// mkfsExt4 makes an ext4 image of mib MiB at img, with the tree at src
// (if not "") as its contents, without mounting anything. Inode tables and
// journal are zeroed here, so the guest kernel's ext4lazyinit thread has
// nothing to do (its work is emulated, hence slow, on some hosts).
func mkfsExt4(t testing.TB, img string, mib int, src string) {
	t.Helper()
	args := []string{"-q", "-F", "-t", "ext4", "-L", filepath.Base(img), "-E", "lazy_itable_init=0,lazy_journal_init=0"}
	if src != "" {
		args = append(args, "-d", src)
	}
	args = append(args, img, strconv.Itoa(mib)+"M")
	if out, err := exec.Command("mkfs.ext4", args...).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4 %s: %v\n%s", img, err, out)
	}
}

// linuxVM is a `vmm run` of a Linux guest with guest-init in the
// background.
type linuxVM struct {
	stdout, stderr syncOutput
	done           chan struct{}
	err            error // cmd.Wait's, once done is closed
	started        time.Time
}

// startLinux starts name args… (vmm run, possibly behind `ip netns exec`).
// Cleanup waits for it after ctx ends and shows its console on failure.
func startLinux(t testing.TB, ctx context.Context, name string, args ...string) *linuxVM {
	t.Helper()
	v := &linuxVM{done: make(chan struct{})}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &v.stdout, &v.stderr
	cmd.WaitDelay = 5 * time.Second
	v.started = time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start vmm: %v", err)
	}
	go func() { v.err = cmd.Wait(); close(v.done) }()
	t.Cleanup(func() {
		<-v.done
		if t.Failed() {
			t.Logf("serial console:\n%s\nvmm stderr:\n%s", &v.stdout, &v.stderr)
		}
	})
	return v
}

// waitReady waits for guest-init's ready line and returns how long it took
// from the start.
func (v *linuxVM) waitReady(t testing.TB, ctx context.Context) time.Duration {
	t.Helper()
	for !strings.Contains(v.stdout.String(), "sietch-init: agent ready on vsock port 1024") {
		select {
		case <-v.done:
			t.Fatalf("vmm exited (%v) before the agent was ready", v.err)
		case <-ctx.Done():
			t.Fatalf("the agent was not ready in time: %v", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return time.Since(v.started)
}

// waitExit waits for the vmm to end after a shutdown request.
func (v *linuxVM) waitExit(t testing.TB, ctx context.Context) error {
	t.Helper()
	select {
	case <-v.done:
		return v.err
	case <-ctx.Done():
		t.Fatal("the guest did not power off after the shutdown request")
		return nil
	}
}

// guestInitTimeout bounds the whole run. Measured here on an idle machine:
// agent ready ~25 s after start, the first exec of a 7 MB Go program from
// the root disk ~11 s (then ~4.5 s), shutdown ~3 s; other packages' tests
// share the 2 cores under `make test`.
const guestInitTimeout = 4 * time.Minute

// TestGuestInitAgent boots the project kernel with guest-init as /init on a
// read-only ext4 root with an ext4 overlay disk, vsock and rng; talks to the
// agent (health, exec of a program on the root image), shuts the guest
// down through the agent, and finds what init wrote on the overlay disk,
// which must be clean. One boot: it costs tens of seconds here.
func TestGuestInitAgent(t *testing.T) {
	requireKVM(t)
	kernel := guestArtifact(t, "SIETCH_KERNEL", "build/kernel/vmlinux", "kernel")
	for _, tool := range []string{"mkfs.ext4", "debugfs", "e2fsck"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found (e2fsprogs): run `make deps`", tool)
		}
	}
	dir := shortTempDir(t)
	bin, initrd := buildGuestInitramfs(t, dir)

	// The root image: guest-init again as an ordinary program, and the
	// directories a Debian image has.
	tree := filepath.Join(dir, "tree")
	for _, d := range []string{"usr/bin", "etc", "root", "proc", "sys", "dev", "run", "tmp"} {
		if err := os.MkdirAll(filepath.Join(tree, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	prog, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, "usr/bin/guest-init"), prog, 0o755); err != nil {
		t.Fatal(err)
	}
	rootImg, upperImg := filepath.Join(dir, "root.img"), filepath.Join(dir, "upper.img")
	mkfsExt4(t, rootImg, 32, tree)
	mkfsExt4(t, upperImg, 16, "")

	uds := filepath.Join(dir, "v.sock")
	ctx, cancel := context.WithTimeout(t.Context(), guestInitTimeout)
	defer cancel()
	cmdline := "console=ttyS0 reboot=k panic=-1 quiet sietch.hostname=guest-test sietch.root=/dev/vda " +
		"sietch.overlay=/dev/vdb sietch.ip=10.0.2.15/24 sietch.gw=10.0.2.2 sietch.dns=10.0.2.3"
	vm := startLinux(t, ctx, vmmBin, "run", "--kernel", kernel, "--initrd", initrd, "--mem", "128M", "--cpus", "2",
		"--cmdline", cmdline, "--disk", rootImg+",ro", "--disk", upperImg, "--vsock", "3,"+uds, "--rng")
	t.Logf("agent ready %v after vmm start", vm.waitReady(t, ctx).Round(time.Millisecond))
	stdout := &vm.stdout
	if strings.Contains(stdout.String(), "FATAL") || strings.Contains(stdout.String(), "level=ERROR") {
		t.Errorf("guest-init reported an error on the console")
	}

	client := agent.NewClient(agent.DialUDS(uds, agent.Port))
	if _, err := client.Health(ctx); err != nil {
		t.Fatalf("agent health: %v", err)
	}

	var out, errOut bytes.Buffer
	t0 := time.Now()
	res, err := client.Exec(ctx, agent.ExecRequest{Cmd: "guest-init", Args: []string{"info"}}, nil, &out, &errOut)
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("exec guest-init info: %+v, %v\nstdout:\n%s\nstderr:\n%s", res, err, &out, &errOut)
	}
	t.Logf("exec guest-init info took %v", time.Since(t0).Round(time.Millisecond))
	info := "\n" + out.String()
	want := []string{
		"\nhostname guest-test\n",
		"\nmount / overlay rw,",
		"\nmount /proc proc ", "\nmount /sys sysfs ", "\nmount /dev devtmpfs ",
		"\nmount /dev/pts devpts ", "\nmount /dev/shm tmpfs ", "\nmount /run tmpfs ", "\nmount /tmp tmpfs ",
		"\nenv PATH=/usr/local/sbin:", "\nenv HOME=/root\n", "\nenv TERM=linux\n", "\nenv LANG=C.UTF-8\n",
	}
	if strings.Contains(info, " sietch.compat") {
		want = append(want, "\nenv GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX,", "\nenv GODEBUG=cpu.avx=off,")
	}
	for _, w := range want {
		if !strings.Contains(info, w) {
			t.Errorf("guest-init info lacks %q", strings.TrimSpace(w))
		}
	}
	if !strings.Contains(info, "ptmxmode=666") {
		t.Errorf("/dev/pts is not mounted with ptmxmode=666")
	}
	if t.Failed() {
		t.Logf("guest-init info:\n%s", &out)
	}

	// A failing program reports its exit status.
	t0 = time.Now()
	res, err = client.Exec(ctx, agent.ExecRequest{Cmd: "/usr/bin/guest-init", Args: []string{"no-such-mode"}}, nil, nil, nil)
	if err != nil || res.ExitCode != 2 {
		t.Errorf("exec guest-init no-such-mode: %+v, %v; want exit status 2", res, err)
	}
	t.Logf("second exec (binary in the page cache) took %v", time.Since(t0).Round(time.Millisecond))

	t0 = time.Now()
	if err := client.Shutdown(ctx, true); err != nil {
		t.Fatalf("agent shutdown: %v", err)
	}
	runErr := vm.waitExit(t, ctx)
	t.Logf("shutdown to vmm exit took %v", time.Since(t0).Round(time.Millisecond))
	if runErr != nil {
		t.Fatalf("vmm: %v, want exit status 0 (the guest powered off)", runErr)
	}
	if !strings.Contains(stdout.String(), "sietch-init: level=INFO msg=\"shutting down\" then=\"power off\"") {
		t.Errorf("the console does not show guest-init's shutdown")
	}

	// What init wrote went through the overlay onto the disk, and the
	// clean shutdown left the file system needing no repair.
	got, err := exec.Command("debugfs", "-R", "cat /upper/etc/resolv.conf", upperImg).Output()
	if err != nil || !strings.Contains(string(got), "nameserver 10.0.2.3\n") {
		t.Errorf("upper layer's /etc/resolv.conf = %q, %v; want a nameserver 10.0.2.3 line", got, err)
	}
	if out, err := exec.Command("e2fsck", "-fn", upperImg).CombinedOutput(); err != nil {
		t.Errorf("e2fsck of the overlay disk after shutdown: %v\n%s", err, out)
	}
	t.Logf("serial console:\n%s", stdout)
}
