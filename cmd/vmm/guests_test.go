package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sietch-vm/sietch/testguest"
)

// vmmBin is the vmm binary under test, built by TestMain from this directory.
var vmmBin string

// runTimeout bounds one VM run: a hung guest fails its test instead of CI.
// Guest CPL0 is emulated on our hosts (~1 µs per instruction), so it is generous.
const runTimeout = 90 * time.Second

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "vmm-test-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "vmm tests: temp dir: %v\n", err)
		os.Exit(1)
	}
	vmmBin = filepath.Join(dir, "vmm")
	goTool, err := exec.LookPath("go")
	if err != nil {
		fmt.Fprintf(os.Stderr, "vmm tests: the go command is needed to build the vmm under test: %v\n", err)
		os.Exit(1)
	}
	if out, err := exec.Command(goTool, "build", "-o", vmmBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "vmm tests: go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func requireKVM(t testing.TB) {
	t.Helper()
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("needs a usable /dev/kvm: %v", err)
	}
	f.Close()
}

type result struct {
	stdout, stderr string
	code           int
}

// runVMM runs the vmm binary with args and returns its output and exit status.
func runVMM(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, vmmBin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("vmm %s: still running after %v, killed\nstdout:\n%s\nstderr:\n%s",
			strings.Join(args, " "), runTimeout, &stdout, &stderr)
	}
	r := result{stdout: strings.ReplaceAll(stdout.String(), "\r\n", "\n"), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("run vmm: %v", err)
	}
	if strings.Contains(r.stderr, "panic:") || strings.Contains(r.stderr, "goroutine ") {
		t.Errorf("vmm %s: Go panic on stderr:\n%s", strings.Join(args, " "), r.stderr)
	}
	return r
}

// runGuest boots test guest name with extra vmm flags.
func runGuest(t *testing.T, name string, args ...string) result {
	t.Helper()
	requireKVM(t)
	kernel := testguest.Path(t, name)
	return runVMM(t, append([]string{"run", "--kernel", kernel, "--mem", "64M"}, args...)...)
}

func (r result) dump() string {
	return fmt.Sprintf("exit status %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

func (r result) lines() []string {
	return strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
}

// expect checks the exit status and that each line in want appears in order.
func (r result) expect(t *testing.T, code int, want ...string) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit status %d, want %d", r.code, code)
	}
	got := r.lines()
	i := 0
	for _, w := range want {
		for i < len(got) && got[i] != w {
			i++
		}
		if i == len(got) {
			t.Errorf("serial output lacks line %q (in order)", w)
			break
		}
	}
	if t.Failed() {
		t.Log(r.dump())
	}
}

// expectOK checks a guest that should finish cleanly: exit 0, the first
// line "<name>: start…", the last line "<name>: ok", and no failure report.
func (r result) expectOK(t *testing.T, name string, want ...string) {
	t.Helper()
	r.expect(t, 0, want...)
	got := r.lines()
	if !strings.HasPrefix(got[0], name+": start") {
		t.Errorf("first serial line %q, want %q", got[0], name+": start")
	}
	if last := got[len(got)-1]; last != name+": ok" {
		t.Errorf("last serial line %q, want %q", last, name+": ok")
	}
	if strings.Contains(r.stdout, "FAIL") {
		t.Errorf("guest reported a failure")
	}
	if t.Failed() {
		t.Log(r.dump())
	}
}

var e820Line = regexp.MustCompile(`^hello: e820 \[mem 0x([0-9a-f]{16})-0x([0-9a-f]{16})\] type (\d+)$`)

func TestGuestHello(t *testing.T) {
	t.Parallel()
	r := runGuest(t, "hello", "--cmdline", "sietch.test=hello marker=42")
	r.expectOK(t, "hello", "hello: start", "hello from sietch test guest")

	var cmdline string
	var ramTop, ram uint64
	for _, l := range r.lines() {
		if s, ok := strings.CutPrefix(l, "hello: cmdline "); ok {
			cmdline = s
		}
		m := e820Line.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		start, _ := strconv.ParseUint(m[1], 16, 64)
		last, _ := strconv.ParseUint(m[2], 16, 64)
		if m[3] == "1" {
			ram += last - start + 1
			ramTop = max(ramTop, last+1)
		}
	}
	if !strings.Contains(cmdline, "sietch.test=hello marker=42") {
		t.Errorf("guest saw command line %s, want it to contain %q", cmdline, "sietch.test=hello marker=42")
	}
	// 64 MiB of RAM: usable up to 64 MiB, less the EBDA/ROM hole below 1 MiB.
	if ramTop != 64<<20 || ram < 63<<20 || ram > 64<<20 {
		t.Errorf("e820 RAM: %d KiB ending at %#x, want about 64 MiB ending at 0x4000000", ram>>10, ramTop)
	}
	if t.Failed() {
		t.Log(r.dump())
	}
}

// counterChecksum mirrors testguest/src/counter.c.
func counterChecksum(n uint64) uint64 {
	x := uint64(0xcbf29ce484222325)
	for i := uint64(1); i <= n; i++ {
		x = (x ^ i) * 0x100000001b3
	}
	return x
}

func TestGuestCounter(t *testing.T) {
	t.Parallel()
	const n = 3000000
	want := []string{fmt.Sprintf("counter: start n=%d", n)}
	for i := 1; i <= 10; i++ {
		want = append(want, fmt.Sprintf("counter: %d", i*n/10))
	}
	want = append(want, fmt.Sprintf("counter: checksum 0x%016x", counterChecksum(n)), "counter: ok")

	r := runGuest(t, "counter", "--cmdline", fmt.Sprintf("n=%d", n))
	r.expectOK(t, "counter", want...)
	if got := r.lines(); len(got) != len(want) {
		t.Errorf("%d serial lines, want exactly %d:\n%s", len(got), len(want), r.stdout)
	}
	// Snapshot tests compare output across runs: it must not vary.
	if again := runGuest(t, "counter", "--cmdline", fmt.Sprintf("n=%d", n)); again.stdout != r.stdout {
		t.Errorf("second run printed different output:\n%s\nfirst run:\n%s", again.stdout, r.stdout)
	}
}

func TestGuestPingpong(t *testing.T) {
	t.Parallel()
	r := runGuest(t, "pingpong", "--cmdline", "n=200")
	r.expectOK(t, "pingpong", "pingpong: start n=200")
	for _, prefix := range []string{"pingpong: mmio 200 round trips", "pingpong: pio 200 round trips"} {
		if !strings.Contains(r.stdout, prefix) {
			t.Errorf("serial output lacks %q\n%s", prefix, r.dump())
		}
	}
}

func TestGuestSMP(t *testing.T) {
	t.Parallel()
	r := runGuest(t, "smp", "--cpus", "2")
	r.expectOK(t, "smp", "smp: start", "smp: 2 cpus up", "smp: counter 2000000", "smp: ipi delivered")
}

func TestGuestPowerOff(t *testing.T) {
	t.Parallel()
	r := runGuest(t, "poweroff")
	r.expectOK(t, "poweroff", "poweroff: start")
}

func TestGuestReset(t *testing.T) {
	t.Parallel()
	r := runGuest(t, "reset")
	r.expect(t, 3, "reset: start", "reset: ok")
	if strings.Contains(r.stdout, "FAIL") {
		t.Errorf("guest kept running after the i8042 reset\n%s", r.dump())
	}
}

func TestGuestTripleFault(t *testing.T) {
	t.Parallel()
	r := runGuest(t, "fault", "--cmdline", "mode=triple")
	r.expect(t, 4, "fault: start mode=triple", "fault: loading an empty IDT")
	if !strings.Contains(strings.ToLower(r.stderr), "triple fault") {
		t.Errorf("stderr does not say the guest triple-faulted:\n%s", r.stderr)
	}
	if strings.Contains(r.stdout, "FAIL") {
		t.Errorf("guest survived an exception with an empty IDT\n%s", r.dump())
	}
}

func TestGuestPageFaultReport(t *testing.T) {
	t.Parallel()
	r := runGuest(t, "fault", "--cmdline", "mode=pf")
	r.expect(t, 3, "fault: start mode=pf", "fault: reading 0x800000000")
	// The guest's own #PF handler, not the vmm, reports the fault; error 0x4
	// is a user-mode read of a non-present page (SDM Vol. 3A §4.7).
	want := regexp.MustCompile(`fault: FAIL: #PF \(vector 14\) at CPL3: error 0x4 rip 0x[0-9a-f]+ rsp 0x[0-9a-f]+ cr2 0x800000000\n`)
	if !want.MatchString(r.stdout) {
		t.Errorf("no page-fault report matching %s\n%s", want, r.dump())
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		says string // the message must point at the mistake
	}{
		{"no command", nil, "usage"},
		{"unknown command", []string{"frobnicate"}, "frobnicate"},
		{"unknown flag", []string{"run", "--kernel", "/dev/null", "--no-such-flag"}, "no-such-flag"},
		{"missing kernel flag", []string{"run"}, "--kernel"},
		{"bad memory size", []string{"run", "--kernel", "/dev/null", "--mem", "lots"}, "lots"},
		{"stray argument", []string{"run", "--kernel", "/dev/null", "extra"}, "extra"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runVMM(t, tc.args...)
			if r.code != 2 {
				t.Errorf("exit status %d, want 2 (usage error)\n%s", r.code, r.dump())
			}
			if !strings.Contains(strings.ToLower(r.stderr), "usage") || !strings.Contains(r.stderr, tc.says) {
				t.Errorf("stderr should show the usage and mention %q:\n%s", tc.says, r.stderr)
			}
		})
	}
}

func TestMissingKernel(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "no-such-dir", "vmlinux")
	r := runVMM(t, "run", "--kernel", path, "--mem", "64M")
	if r.code != 1 {
		t.Errorf("exit status %d, want 1\n%s", r.code, r.dump())
	}
	if !strings.Contains(r.stderr, path) {
		t.Errorf("stderr does not name the missing kernel %s:\n%s", path, r.stderr)
	}
}

func TestTruncatedKernel(t *testing.T) {
	t.Parallel()
	requireKVM(t)
	full, err := os.ReadFile(testguest.Path(t, "hello"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		size int
	}{
		{"inside the ELF header", 40},
		{"inside the program headers", 64 + 56 + 20},
		{"inside a segment", len(full) / 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "truncated.elf")
			if err := os.WriteFile(path, full[:tc.size], 0o644); err != nil {
				t.Fatal(err)
			}
			r := runVMM(t, "run", "--kernel", path, "--mem", "64M")
			if r.code != 1 {
				t.Errorf("exit status %d, want 1\n%s", r.code, r.dump())
			}
			if !strings.Contains(r.stderr, "truncated") {
				t.Errorf("stderr does not say the kernel is truncated:\n%s", r.stderr)
			}
		})
	}
}

// TestQuietGuestHint: a guest that prints nothing (halted at CPL0, as a
// kernel that never speaks) gets the quiet-console hint once on stderr,
// and the VM keeps running until it is stopped. --compat on makes the
// hint due on any host, native or emulated.
func TestQuietGuestHint(t *testing.T) {
	t.Parallel()
	requireKVM(t)
	kernel := testguest.Path(t, "silent")
	ctx, cancel := context.WithTimeout(t.Context(), runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, vmmBin, "run", "--kernel", kernel, "--mem", "64M", "--compat", "on", "--quiet-hint", "1s")
	var stdout bytes.Buffer
	stderr := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start vmm: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	const hint = "the guest has printed nothing on its console for 1s"
	for !strings.Contains(stderr.String(), hint) {
		select {
		case err := <-exited:
			t.Fatalf("vmm exited (%v) before the hint; stderr:\n%s", err, stderr)
		case <-ctx.Done():
			t.Fatalf("no quiet-console hint within %v; stderr:\n%s", runTimeout, stderr)
		case <-time.After(100 * time.Millisecond):
		}
	}
	// Not a timeout: the VM is still running a second after the hint.
	select {
	case err := <-exited:
		t.Fatalf("vmm exited (%v) after the hint; it must keep running; stderr:\n%s", err, stderr)
	case <-time.After(time.Second):
	}
	cmd.Process.Signal(syscall.SIGTERM)
	err := <-exited
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitStopped {
		t.Errorf("vmm after SIGTERM: %v, want exit status %d", err, exitStopped)
	}
	if n := strings.Count(stderr.String(), "printed nothing"); n != 1 {
		t.Errorf("hint logged %d times, want once; stderr:\n%s", n, stderr)
	}
	for _, want := range []string{"emulates guest kernel mode", "make kernel", "keeps running"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("hint does not say %q; stderr:\n%s", want, stderr)
		}
	}
	if stdout.Len() != 0 {
		t.Errorf("the silent guest printed %q", stdout.String())
	}
}
