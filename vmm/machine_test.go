package vmm

import (
	"bytes"
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sietch-vm/sietch/testguest"
)

// syncBuffer is a console that tests can read while vCPUs write to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func needKVM(tb testing.TB) {
	tb.Helper()
	if _, err := os.Stat("/dev/kvm"); err != nil {
		tb.Skipf("no KVM on this host: %v", err)
	}
}

func newGuest(tb testing.TB, name, cmdline string, cpus int, console *syncBuffer) *Machine {
	tb.Helper()
	needKVM(tb)
	kernel, err := os.ReadFile(testguest.Path(tb, name))
	if err != nil {
		tb.Fatal(err)
	}
	m, err := New(Config{Kernel: kernel, Cmdline: cmdline, MemSize: 64 << 20, CPUs: cpus, Console: console})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { m.Close() })
	return m
}

func waitFor(t *testing.T, console *syncBuffer, s string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(console.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("guest never printed %q; console:\n%s", s, console)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRunHelloInProcess(t *testing.T) {
	console := &syncBuffer{}
	m := newGuest(t, "hello", "console=ttyS0", 1, console)
	exit, err := m.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if exit.Kind != ExitPowerOff {
		t.Fatalf("exit = %v, want power-off; console:\n%s", exit, console)
	}
	if !strings.Contains(console.String(), "hello: ok") {
		t.Errorf("console lacks \"hello: ok\":\n%s", console)
	}
	if _, err := m.Run(context.Background()); err == nil {
		t.Error("a second Run of the same machine succeeded")
	}
}

// A paused guest makes no progress and, resumed, finishes with exactly the
// output of an uninterrupted run.
func TestPauseResume(t *testing.T) {
	const cmdline = "n=400000000"
	ref := &syncBuffer{}
	if exit, err := newGuest(t, "counter", cmdline, 1, ref).Run(context.Background()); err != nil || exit.Kind != ExitPowerOff {
		t.Fatalf("reference run: %v %v", exit, err)
	}

	console := &syncBuffer{}
	m := newGuest(t, "counter", cmdline, 1, console)
	type result struct {
		exit Exit
		err  error
	}
	done := make(chan result, 1)
	go func() {
		e, err := m.Run(context.Background())
		done <- result{e, err}
	}()
	waitFor(t, console, "counter: start")
	if err := m.Pause(); err != nil {
		t.Fatal(err)
	}
	before := console.String()
	time.Sleep(300 * time.Millisecond)
	if after := console.String(); after != before {
		t.Fatalf("paused guest kept printing: %q", strings.TrimPrefix(after, before))
	}
	if err := m.Pause(); err != nil {
		t.Fatalf("second Pause: %v", err)
	}
	if err := m.Resume(); err != nil {
		t.Fatal(err)
	}
	if err := m.Resume(); err == nil {
		t.Error("Resume of a running VM succeeded")
	}
	r := <-done
	if r.err != nil || r.exit.Kind != ExitPowerOff {
		t.Fatalf("exit = %v, %v", r.exit, r.err)
	}
	if console.String() != ref.String() {
		t.Errorf("output after pause/resume differs from an uninterrupted run:\n got %q\nwant %q", console, ref)
	}
}

// Stop ends a running guest promptly, and an AP still waiting for its SIPI
// (vCPU 1 of a guest that never starts it) does not hold Run up.
func TestStopWithWaitingAP(t *testing.T) {
	console := &syncBuffer{}
	m := newGuest(t, "counter", "n=100000000000", 2, console)
	done := make(chan Exit, 1)
	go func() {
		e, _ := m.Run(context.Background())
		done <- e
	}()
	waitFor(t, console, "counter: start")
	m.Stop("test")
	select {
	case e := <-done:
		if e.Kind != ExitStopped {
			t.Errorf("exit = %v, want stopped", e)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after Stop")
	}
	if err := m.Pause(); err == nil {
		t.Error("Pause of a stopped VM succeeded")
	}
}

func TestContextCancelStops(t *testing.T) {
	console := &syncBuffer{}
	m := newGuest(t, "counter", "n=100000000000", 1, console)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		waitFor(t, console, "counter: start")
		cancel()
	}()
	e, err := m.Run(ctx)
	if err != nil || e.Kind != ExitStopped {
		t.Fatalf("exit = %v, %v; want stopped", e, err)
	}
}

func TestTripleFaultIsACrash(t *testing.T) {
	console := &syncBuffer{}
	m := newGuest(t, "fault", "mode=triple", 1, console)
	e, err := m.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if e.Kind != ExitCrash || e.VCPU != 0 || !strings.Contains(e.Reason, "triple fault") {
		t.Errorf("exit = %v, want a triple-fault crash on vCPU 0", e)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, c := range []Config{
		{},
		{Kernel: []byte{1}, MemSize: 1 << 20, CPUs: 1},
		{Kernel: []byte{1}, MemSize: 64<<20 + 4096, CPUs: 1},
		{Kernel: []byte{1}, MemSize: 64 << 20, CPUs: 0},
		{Kernel: []byte{1}, MemSize: 64 << 20, CPUs: MaxCPUs + 1},
	} {
		if _, err := New(c); err == nil || !strings.Contains(err.Error(), "invalid VM configuration") {
			t.Errorf("New(%+v) = %v, want a configuration error", c, err)
		}
	}
}

func TestMeasureModes(t *testing.T) {
	needKVM(t)
	r := CheckHost()
	if !r.OK() {
		t.Fatalf("host check failed on a host with /dev/kvm: %+v", r)
	}
	if r.Modes.CPL0 <= 0 {
		t.Errorf("kernel-mode loop took %v per iteration", r.Modes.CPL0)
	}
	t.Logf("CPL0 %v/iter, CPL3 %v/iter, emulated=%v", r.Modes.CPL0, r.Modes.CPL3, r.Modes.Emulated())
	var out strings.Builder
	r.Print(&out)
	want := "runs natively"
	if r.Modes.Emulated() {
		want = "Distribution kernels will not boot here"
	}
	if !strings.Contains(out.String(), want) {
		t.Errorf("report lacks %q:\n%s", want, out.String())
	}
}
