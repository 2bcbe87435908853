package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
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
