package vmm

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/sietch-vm/sietch/boot"
	"github.com/sietch-vm/sietch/kvm"
	"github.com/sietch-vm/sietch/testguest"
)

// Benchmarks of the vmm in-process; run them with `make bench` and read
// docs/PERFORMANCE.md for what the numbers mean on our hosts.

// quiet keeps the compatibility-profile notice out of benchmark output.
var quiet = slog.New(slog.DiscardHandler)

// pingpongTSC is the guest's own figure: TSC ticks per round trip.
var pingpongTSC = regexp.MustCompile(`pingpong: (mmio|pio) (\d+) round trips, (\d+) tsc each`)

// BenchmarkExitRoundTrip times MMIO and port-I/O exits with the pingpong
// guest: each op boots it twice, with n=0 and n=rounds, so that the boot
// cancels in (T(rounds) - T(0)) / rounds. A round trip is a write and a
// read, two exits; a port-I/O access also takes a ud2 trap into the guest's
// CPL0 and an iretq back, which is emulated on hosts without VT-x/AMD-V.
func BenchmarkExitRoundTrip(b *testing.B) {
	for _, bc := range []struct {
		mode   string
		rounds int // enough for ~0.1 s of exits on an emulated-CPL0 host
	}{
		{"mmio", 2000},
		{"pio", 300},
	} {
		b.Run("mode="+bc.mode, func(b *testing.B) {
			needKVM(b)
			kernel, err := os.ReadFile(testguest.Path(b, "pingpong"))
			if err != nil {
				b.Fatal(err)
			}
			var diff time.Duration
			var ticks, tscKHz uint64
			for b.Loop() {
				base, _, _ := runPingpong(b, kernel, bc.mode, 0)
				full, t, khz := runPingpong(b, kernel, bc.mode, bc.rounds)
				diff += full - base
				ticks += t
				tscKHz = khz
			}
			perRound := float64(diff.Nanoseconds()) / float64(b.N*bc.rounds) / 1e3
			b.ReportMetric(perRound/2, "µs/exit")
			b.ReportMetric(perRound, "µs/roundtrip")
			b.ReportMetric(float64(ticks)/float64(b.N), "guest-tsc/roundtrip")
			if tscKHz > 0 {
				b.ReportMetric(float64(ticks)/float64(b.N)/float64(tscKHz)*1e3/2, "guest-µs/exit")
			}
		})
	}
}

// runPingpong boots pingpong with n rounds in mode and returns how long Run
// took, the guest's TSC ticks per round trip and the vCPU's TSC rate.
func runPingpong(b *testing.B, kernel []byte, mode string, rounds int) (took time.Duration, ticks, tscKHz uint64) {
	b.Helper()
	var console syncBuffer
	m, err := New(Config{
		Kernel:  kernel,
		Cmdline: fmt.Sprintf("n=%d mode=%s", rounds, mode),
		MemSize: 64 << 20,
		CPUs:    1,
		Console: &console,
		Log:     quiet,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	if khz, err := m.vcpus[0].kvm.GetTSCKHz(); err == nil {
		tscKHz = uint64(khz)
	}
	ctx, cancel := context.WithTimeout(b.Context(), 2*time.Minute)
	defer cancel()
	t := time.Now()
	exit, err := m.Run(ctx)
	took = time.Since(t)
	if err != nil || exit.Kind != ExitPowerOff {
		b.Fatalf("pingpong n=%d mode=%s: exit %v, err %v; console:\n%s", rounds, mode, exit, err, &console)
	}
	sub := pingpongTSC.FindStringSubmatch(console.String())
	if sub == nil || sub[1] != mode || sub[2] != strconv.Itoa(rounds) {
		b.Fatalf("pingpong n=%d mode=%s printed no matching result line; console:\n%s", rounds, mode, &console)
	}
	ticks, _ = strconv.ParseUint(sub[3], 10, 64)
	return took, ticks, tscKHz
}

// BenchmarkVMCreateDestroy measures how many VMs per second KVM and the vmm
// can set up and tear down: first the bare KVM objects a VM needs, then a
// full New+Close with the hello guest loaded (not run).
func BenchmarkVMCreateDestroy(b *testing.B) {
	b.Run("kvm", func(b *testing.B) {
		needKVM(b)
		sys, err := kvm.Open()
		if err != nil {
			b.Fatal(err)
		}
		defer sys.Close()
		for b.Loop() {
			if err := createDestroyVM(sys); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "VMs/s")
	})
	for _, bc := range []struct {
		name   string
		compat CompatMode
	}{
		{"new-close/compat=auto", CompatAuto}, // includes the host probe
		{"new-close/compat=on", CompatOn},
	} {
		b.Run(bc.name, func(b *testing.B) {
			needKVM(b)
			kernel, err := os.ReadFile(testguest.Path(b, "hello"))
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				m, err := New(Config{Kernel: kernel, MemSize: 64 << 20, CPUs: 1, Compat: bc.compat, Log: quiet})
				if err != nil {
					b.Fatal(err)
				}
				if err := m.Close(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "VMs/s")
		})
	}
}

// createDestroyVM creates a VM with 64 MiB of memfd RAM in one slot, the
// in-kernel irqchip and PIT, and one vCPU, then closes everything. Most of
// the time goes to the last close of the VM fd once an irqchip exists (the
// host kernel tears down the irqchip; ~15 ms on our nested hosts).
func createDestroyVM(sys *kvm.System) (err error) {
	// Memory first so that the deferred closes tear the VM down before
	// unmapping the RAM it points at, as Machine.Close does.
	mem, err := NewMemory(64 << 20)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := mem.Close(); err == nil {
			err = cerr
		}
	}()
	vm, err := sys.CreateVM()
	if err != nil {
		return err
	}
	defer func() {
		if cerr := vm.Close(); err == nil {
			err = cerr
		}
	}()
	if err := vm.SetTSSAddr(boot.TSSAddr); err != nil {
		return err
	}
	if err := vm.SetIdentityMapAddr(boot.IdentityMapAddr); err != nil {
		return err
	}
	r := mem.Regions()[0]
	if err := vm.SetUserMemoryRegion(&kvm.UserspaceMemoryRegion{
		GuestPhysAddr: r.GPA,
		MemorySize:    r.Size,
		UserspaceAddr: hostAddr(mem.Mapping()),
	}); err != nil {
		return err
	}
	if err := vm.CreateIRQChip(); err != nil {
		return err
	}
	if err := vm.CreatePIT2(); err != nil {
		return err
	}
	c, err := vm.CreateVCPU(0)
	if err != nil {
		return err
	}
	return c.Close()
}
