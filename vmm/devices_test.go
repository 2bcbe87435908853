package vmm

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sietch-vm/sietch/devproc/devmain"
	"github.com/sietch-vm/sietch/testguest"
	"github.com/sietch-vm/sietch/virtio"
)

// TestMain lets this test binary serve as the device process, as the vmm
// binary does: jail.Command re-executes /proc/self/exe.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "device" {
		os.Exit(devmain.Run(os.Args[2:], os.Stderr))
	}
	os.Exit(m.Run())
}

func needRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("device processes are jailed, which needs root")
	}
}

// startWithRNG runs a long counter guest with a virtio-rng device process.
func startWithRNG(t *testing.T, extra []string) (*Machine, *syncBuffer, chan Exit) {
	t.Helper()
	needKVM(t)
	needRoot(t)
	kernel, err := os.ReadFile(testguest.Path(t, "counter"))
	if err != nil {
		t.Fatal(err)
	}
	console := &syncBuffer{}
	m, err := New(Config{Kernel: kernel, Cmdline: "n=100000000000", MemSize: 64 << 20, CPUs: 1,
		RNG: true, Console: console, testDeviceArgs: extra})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	done := make(chan Exit, 1)
	go func() {
		e, _ := m.Run(context.Background())
		done <- e
	}()
	waitFor(t, console, "counter: start")
	return m, console, done
}

// waitNeedsReset waits until the device's transport shows DEVICE_NEEDS_RESET
// with a config-change interrupt pending.
func waitNeedsReset(t *testing.T, d *vhostDevice) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st := d.transport.State()
		if st.Status&virtio.StatusDeviceNeedsReset != 0 && st.InterruptStatus&2 != 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("transport never showed DEVICE_NEEDS_RESET: status %#x, interrupt status %#x", st.Status, st.InterruptStatus)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A device is announced on the guest's command line once, by the step that
// starts it.
func TestDeviceAnnouncedOnCmdline(t *testing.T) {
	m, _, done := startWithRNG(t, nil)
	want := virtio.CmdlineArg(VirtioBase, VirtioIRQBase)
	if n := strings.Count(m.Cmdline(), want); n != 1 || !strings.HasPrefix(m.Cmdline(), "n=100000000000 sietch.poweroff=") {
		t.Errorf("command line %q: want the user's first and %s once", m.Cmdline(), want)
	}
	m.Stop("test over")
	<-done
}

// The guest keeps running when a device process dies; the vmm says which
// device died and how, and the transport asks the driver for a reset.
func TestDeviceProcessKilled(t *testing.T) {
	m, _, done := startWithRNG(t, nil)
	p := m.procs[0]
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	if !strings.Contains(p.Why(), "SIGKILL") {
		t.Errorf("device death reported as %q, want SIGKILL named", p.Why())
	}
	waitNeedsReset(t, m.vdevs[0])
	if err := m.Pause(); err != nil {
		t.Fatalf("pause after the device died: %v", err)
	}
	if err := m.Resume(); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-done:
		t.Fatalf("the VM ended when its device died: %v", e)
	default:
	}
	m.Stop("test over")
	if e := <-done; e.Kind != ExitStopped {
		t.Errorf("exit = %v, want stopped", e)
	}
}

// A device process that makes a system call outside its seccomp policy is
// killed by the kernel, and the vmm reports it.
func TestDeviceForbiddenSyscallKills(t *testing.T) {
	needKVM(t)
	needRoot(t)
	kernel, err := os.ReadFile(testguest.Path(t, "hello"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(Config{Kernel: kernel, MemSize: 64 << 20, CPUs: 1, RNG: true,
		testDeviceArgs: []string{"--test-forbidden-syscall"}})
	if err == nil {
		t.Fatal("New succeeded although the device process was killed")
	}
	if !strings.Contains(err.Error(), "rng0") || !strings.Contains(err.Error(), "SIGSYS") {
		t.Errorf("error %q should name the device (rng0) and the seccomp kill (SIGSYS)", err)
	}
}
