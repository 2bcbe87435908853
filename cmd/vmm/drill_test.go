package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sietch-vm/sietch/jail"
	"github.com/sietch-vm/sietch/testguest"
)

// Escape drills: a vmm built with the sietchdrill tag makes a forbidden
// system call from an ordinary thread once it runs (drill.go). Each must
// kill the whole vmm with SIGSYS, reported as a seccomp kill; an allowed
// call leaves it running; --no-jail leaves it unconfined.
func TestEscapeDrills(t *testing.T) {
	requireKVM(t)
	bin := filepath.Join(t.TempDir(), "vmm-drill")
	if out, err := exec.Command("go", "build", "-tags", "sietchdrill", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build the drill vmm: %v\n%s", err, out)
	}
	counter := testguest.Path(t, "counter")
	start := func(call string, extra ...string) (*exec.Cmd, *syncOutput, chan error) {
		t.Helper()
		args := append([]string{"run", "--kernel", counter, "--mem", "64M", "--cmdline", "n=100000000000"}, extra...)
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "SIETCH_VMM_DRILL="+call)
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
	for _, call := range []string{"execve", "fork", "ptrace", "mount", "finit_module", "unshare", "bpf", "socket-inet", "perf_event_open"} {
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
	}{{"getpid", nil}, {"unshare", []string{"--no-jail"}}} {
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
