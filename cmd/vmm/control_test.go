package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sietch-vm/sietch/testguest"
)

// syncOutput collects a child's output while the test reads it.
type syncOutput struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncOutput) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncOutput) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitOutput waits until out contains s or the vmm exits.
func waitOutput(t *testing.T, out *syncOutput, done <-chan struct{}, s string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(out.String(), s) {
		select {
		case <-done:
			t.Fatalf("vmm exited before printing %q; output:\n%s", s, out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("vmm never printed %q; output:\n%s", s, out)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// `vmm run --api-sock` driven by the client subcommands, as a user would.
func TestControlCommands(t *testing.T) {
	requireKVM(t)
	dir, err := os.MkdirTemp("", "vmmctl-") // unix socket paths must fit 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "vm.sock")

	ctx, cancel := context.WithTimeout(t.Context(), runTimeout)
	defer cancel()
	// About one line per 2 s and ~20 s in all: time to pause, resume and stop.
	cmd := exec.CommandContext(ctx, vmmBin, "run", "--kernel", testguest.Path(t, "counter"), "--mem", "64M",
		"--cmdline", "n=6000000000", "--rng", "--api-sock", sock)
	var stdout, stderr syncOutput
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var runErr error
	go func() {
		runErr = cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	waitOutput(t, &stdout, done, "counter: start")

	ctl := func(code int, args ...string) result {
		t.Helper()
		r := runVMM(t, args...)
		if r.code != code {
			t.Fatalf("vmm %s: exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, code, r.stdout, r.stderr)
		}
		return r
	}
	state := func() string {
		t.Helper()
		r := ctl(0, "info", "--api-sock", sock)
		var info struct {
			State   string `json:"state"`
			VCPUs   int    `json:"vcpus"`
			VMMPID  int    `json:"vmm_pid"`
			Devices []struct {
				Name     string `json:"name"`
				Kind     string `json:"kind"`
				MMIOBase uint64 `json:"mmio_base"`
				IRQ      uint32 `json:"irq"`
			} `json:"devices"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &info); err != nil {
			t.Fatalf("vmm info printed no JSON: %v\n%s", err, r.stdout)
		}
		rng := false
		for _, d := range info.Devices {
			rng = rng || d.Name == "rng0" && d.Kind == "virtio-rng" && d.MMIOBase == 0xc0000000 && d.IRQ != 0
		}
		if info.VCPUs != 1 || info.VMMPID != cmd.Process.Pid || !rng {
			t.Errorf("vmm info = %s; want 1 vCPU, the vmm's pid and rng0 at 0xc0000000", r.stdout)
		}
		return info.State
	}

	if s := state(); s != "running" {
		t.Errorf("state = %q, want running", s)
	}
	ctl(0, "pause", "--api-sock", sock)
	if s := state(); s != "paused" {
		t.Errorf("state after vmm pause = %q, want paused", s)
	}
	if r := ctl(1, "pause", "--api-sock", sock); !strings.Contains(r.stderr, "already paused") {
		t.Errorf("second vmm pause says %q, want the server's \"already paused\"", r.stderr)
	}
	if r := ctl(1, "snapshot", "--api-sock", sock, "--dir", filepath.Join(dir, "snap"), "--kind", "diff"); !strings.Contains(r.stderr, "no_diff_base") {
		t.Errorf("vmm snapshot --kind diff before any snapshot says %q, want the server's no_diff_base", r.stderr)
	}
	ctl(0, "resume", "--api-sock", sock)
	if s := state(); s != "running" {
		t.Errorf("state after vmm resume = %q, want running", s)
	}

	// A second vmm on the same live socket is refused before it boots.
	second := runGuest(t, "counter", "--cmdline", "n=1", "--api-sock", sock)
	if second.code != exitError || !strings.Contains(second.stderr, "another process") {
		t.Errorf("second vmm run on a live socket:\n%s", second.dump())
	}

	ctl(0, "stop", "--api-sock", sock)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("vmm run did not exit after vmm stop")
	}
	var ee *exec.ExitError
	if !errors.As(runErr, &ee) || ee.ExitCode() != exitStopped {
		t.Errorf("vmm run ended with %v, want exit status %d\nstderr:\n%s", runErr, exitStopped, &stderr)
	}
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the control socket outlived vmm run: %v", err)
	}
	if r := ctl(1, "info", "--api-sock", sock); !strings.Contains(r.stderr, sock) {
		t.Errorf("vmm info on a gone socket says %q, want the socket path", r.stderr)
	}
}

func TestControlUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"pause"},
		{"info", "extra", "--api-sock", "/tmp/x.sock"},
		{"stop", "--api-sock"},
		{"snapshot", "--api-sock", "/tmp/x.sock"},
		{"snapshot", "--api-sock", "/tmp/x.sock", "--dir", "/tmp/s", "--kind", "half"},
		{"resume", "--api-sock", "/tmp/x.sock", "--dir", "/tmp/s"},
	} {
		if r := runVMM(t, args...); r.code != exitUsage || !strings.Contains(r.stderr, "Usage: vmm "+args[0]) {
			t.Errorf("vmm %s:\n%s", strings.Join(args, " "), r.dump())
		}
	}
}
