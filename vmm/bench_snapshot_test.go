package vmm

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sietch-vm/sietch/testguest"
)

// Snapshot benchmarks (issue 4); numbers and their meaning are in
// docs/PERFORMANCE.md, "Snapshots (issue 4)":
//
//	go test ./vmm -run '^$' -bench 'Pause|Snapshot|Restore|Fork' -benchtime 1x

// benchReserved is the start of guest RAM that benchmarks leave to the
// counter guest when they dirty memory for it: its code, data, stacks and
// page tables all live in the first few MiB.
const benchReserved = 16 << 20

// startCounter boots the counter guest with n iterations on mem bytes of
// RAM and waits until it counts: its first progress line, or for an n too
// large to reach one soon, its start line. Cleanup stops and closes it.
func startCounter(b *testing.B, mem uint64, cpus int, n uint64) *Machine {
	b.Helper()
	needKVM(b)
	kernel, err := os.ReadFile(testguest.Path(b, "counter"))
	if err != nil {
		b.Fatal(err)
	}
	console := &syncBuffer{}
	m, err := New(Config{Kernel: kernel, Cmdline: fmt.Sprintf("n=%d", n), MemSize: mem, CPUs: cpus, Console: console, Log: quiet})
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Run(context.Background())
	}()
	b.Cleanup(func() {
		m.Stop("benchmark over")
		<-done
		m.Close()
	})
	first := fmt.Sprintf("counter: %d\n", n/10)
	if n > 1e9 {
		first = "counter: start"
	}
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(console.String(), first) {
		if time.Now().After(deadline) {
			b.Fatalf("the counter guest never printed %q; console:\n%s", first, console)
		}
		time.Sleep(time.Millisecond)
	}
	return m
}

// dirty makes every step-th page of guest RAM above benchReserved non-zero,
// as a guest that used that much memory would have.
func dirty(m *Machine, step int) {
	ram := m.Memory().Mapping()
	for off := benchReserved; off+pageSize <= len(ram); off += step * pageSize {
		for i := 0; i < pageSize; i += 512 {
			ram[off+i] = byte(off>>12) | 1
		}
	}
}

// allocatedMiB is how much of the file behind fd is backed by blocks or
// pages (st_blocks): on disk for a memory file, resident for a memfd.
func allocatedMiB(b *testing.B, fd int) float64 {
	b.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		b.Fatal(err)
	}
	return float64(st.Blocks*512) / (1 << 20)
}

func fileMiB(b *testing.B, path string) float64 {
	b.Helper()
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	return allocatedMiB(b, int(f.Fd()))
}

// BenchmarkPause times Machine.Pause of a counter guest busy at CPL3: from
// the request until every vCPU is parked outside KVM_RUN. With two vCPUs
// the second sleeps in KVM_RUN waiting for a SIPI and must be kicked too.
func BenchmarkPause(b *testing.B) {
	for _, cpus := range []int{1, 2} {
		b.Run(fmt.Sprintf("cpus=%d", cpus), func(b *testing.B) {
			m := startCounter(b, 64<<20, cpus, 1e13)
			var total time.Duration
			for i := 0; i < b.N; i++ {
				t := time.Now()
				if err := m.Pause(); err != nil {
					b.Fatal(err)
				}
				total += time.Since(t)
				if err := m.Resume(); err != nil {
					b.Fatal(err)
				}
				// Let the vCPUs get back into the guest before the next pause.
				time.Sleep(2 * time.Millisecond)
			}
			b.ReportMetric(float64(total.Microseconds())/float64(b.N), "µs/pause")
		})
	}
}

// BenchmarkSnapshotFull times Machine.Snapshot of a paused guest whose RAM
// is 10% or 100% non-zero, memory file and state file with their fsyncs.
func BenchmarkSnapshotFull(b *testing.B) {
	for _, size := range []struct {
		name string
		mem  uint64
	}{{"256MiB", 256 << 20}, {"1GiB", 1 << 30}} {
		for _, d := range []struct {
			name string
			step int
		}{{"touched=10%", 10}, {"touched=100%", 1}} {
			b.Run(size.name+"/"+d.name, func(b *testing.B) {
				m := startCounter(b, size.mem, 1, 1e13)
				if err := m.Pause(); err != nil {
					b.Fatal(err)
				}
				dirty(m, d.step)
				base := b.TempDir()
				var total time.Duration
				var onDisk float64
				for i := 0; i < b.N; i++ {
					dir := filepath.Join(base, fmt.Sprint("snap", i))
					t := time.Now()
					if err := m.Snapshot(dir); err != nil {
						b.Fatal(err)
					}
					total += time.Since(t)
					onDisk = fileMiB(b, filepath.Join(dir, MemoryFile))
					// Deleting costs seconds per GiB on a discard-mounted
					// disk (docs/SNAPSHOTS.md); it is not the snapshot's cost.
					os.RemoveAll(dir)
				}
				ms := float64(total.Microseconds()) / 1e3 / float64(b.N)
				b.ReportMetric(ms, "ms/snapshot")
				b.ReportMetric(ms/(float64(size.mem)/(1<<30)), "ms/GiB")
				b.ReportMetric(onDisk, "file-MiB")
			})
		}
	}
}

// snapshotCounter snapshots a counter guest of mem bytes at its first
// progress line (after dirtying every step-th page, if step > 0) and stops
// it; it returns the snapshot directory.
func snapshotCounter(b *testing.B, mem uint64, n uint64, step int) string {
	b.Helper()
	m := startCounter(b, mem, 1, n)
	if err := m.Pause(); err != nil {
		b.Fatal(err)
	}
	if step > 0 {
		dirty(m, step)
	}
	dir := filepath.Join(b.TempDir(), "snap")
	if err := m.Snapshot(dir); err != nil {
		b.Fatal(err)
	}
	m.Stop("snapshot taken")
	return dir
}

// dropCache evicts a clean file from the page cache, for cold restores.
// The host may still cache the virtual disk: cold is a lower bound.
func dropCache(b *testing.B, path string) {
	b.Helper()
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkRestore times Restore of a counter guest snapshot, from the call
// until the Machine is ready to run (ms/restore), and until its vCPU thread
// is about to enter KVM_RUN (ms-to-run: Restore, then Run starting the vCPU
// goroutine). It compares guest RAM resident after the restore (the memfd's
// allocated pages) with the memory the guest had touched (the memory file's
// allocated blocks). Each case runs with lazy memory (userfaultfd; ms-all-in
// is when the background filler has every page in) and eager memory.
func BenchmarkRestore(b *testing.B) {
	for _, c := range []struct {
		name string
		mem  uint64
		step int // dirty every step-th page above benchReserved; 0: none
	}{
		{"256MiB/sparse", 256 << 20, 0},
		{"1GiB/sparse", 1 << 30, 0},
		{"4GiB/sparse", 4 << 30, 0},
		{"1GiB/dense", 1 << 30, 1},
	} {
		for _, mode := range []string{MemoryLazy, MemoryEager} {
			for _, cache := range []string{"warm", "cold"} {
				b.Run(c.name+"/"+mode+"/"+cache, func(b *testing.B) {
					dir := snapshotCounter(b, c.mem, 1e13, c.step)
					touched := fileMiB(b, filepath.Join(dir, MemoryFile))
					var ready, toRun, allIn time.Duration
					var resident float64
					for i := 0; i < b.N; i++ {
						if cache == "cold" {
							dropCache(b, filepath.Join(dir, MemoryFile))
						}
						t := time.Now()
						r, err := Restore(dir, RestoreConfig{Log: benchLog(), Memory: mode})
						if err != nil {
							b.Fatal(err)
						}
						ready += time.Since(t)
						done := make(chan struct{})
						go func() {
							defer close(done)
							r.Run(context.Background())
						}()
						for r.vcpus[0].tid.Load() == 0 {
							select {
							case <-done:
								b.Fatal("the restored VM ended before its vCPU started")
							default:
								runtime.Gosched()
							}
						}
						toRun += time.Since(t)
						resident = allocatedMiB(b, r.Memory().FD())
						if r.pager != nil {
							r.pager.Wait()
						}
						allIn += time.Since(t)
						r.Stop("measured")
						<-done
						r.Close()
					}
					b.ReportMetric(float64(ready.Microseconds())/1e3/float64(b.N), "ms/restore")
					b.ReportMetric(float64(toRun.Microseconds())/1e3/float64(b.N), "ms-to-run")
					b.ReportMetric(float64(allIn.Microseconds())/1e3/float64(b.N), "ms-all-in")
					b.ReportMetric(resident, "resident-MiB")
					b.ReportMetric(touched, "touched-MiB")
				})
			}
		}
	}
}

// BenchmarkFork restores ten VMs from one counter snapshot at once, each in
// its own goroutine, and runs all of them to the guest's power-off.
// ms/fork10 is the wall time from the first Restore call until the last
// VM has powered off; ms-all-ready until the last Restore returned.
func BenchmarkFork(b *testing.B) {
	const forks = 10
	needKVM(b)
	dir := snapshotCounter(b, 256<<20, 1e8, 0)
	var total, ready time.Duration
	for i := 0; i < b.N; i++ {
		var wg sync.WaitGroup
		errs := make([]error, forks)
		readyAt := make([]time.Time, forks)
		consoles := make([]*syncBuffer, forks)
		t := time.Now()
		for f := range forks {
			consoles[f] = &syncBuffer{}
			wg.Go(func() {
				r, err := Restore(dir, RestoreConfig{Console: consoles[f], Log: quiet})
				readyAt[f] = time.Now()
				if err != nil {
					errs[f] = err
					return
				}
				defer r.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				e, err := r.Run(ctx)
				if err == nil && e.Kind != ExitPowerOff {
					err = fmt.Errorf("ended with %v", e)
				}
				errs[f] = err
			})
		}
		wg.Wait()
		total += time.Since(t)
		last := t
		for f := range forks {
			if errs[f] != nil {
				b.Fatalf("fork %d: %v; console:\n%s", f, errs[f], consoles[f])
			}
			if !strings.Contains(consoles[f].String(), "counter: ok") {
				b.Fatalf("fork %d did not finish its count; console:\n%s", f, consoles[f])
			}
			if readyAt[f].After(last) {
				last = readyAt[f]
			}
		}
		ready += last.Sub(t)
	}
	b.ReportMetric(float64(total.Microseconds())/1e3/float64(b.N), "ms/fork10")
	b.ReportMetric(float64(ready.Microseconds())/1e3/float64(b.N), "ms-all-ready")
}

// benchLog is quiet unless SIETCH_BENCH_DEBUG is set: then the restore
// steps' times are logged.
func benchLog() *slog.Logger {
	if os.Getenv("SIETCH_BENCH_DEBUG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return quiet
}

// BenchmarkSnapshotDiff times a diff snapshot of a 1 GiB counter guest
// that wrote 1% of its pages (touch=) since a full snapshot one progress
// step earlier, and reports the diff's size on disk next to the full one.
func BenchmarkSnapshotDiff(b *testing.B) {
	needKVM(b)
	kernel, err := os.ReadFile(testguest.Path(b, "counter"))
	if err != nil {
		b.Fatal(err)
	}
	const mem = 1 << 30
	touch := mem / pageSize / 100
	const n = 20000000000
	var took time.Duration
	var diffMiB, fullMiB float64
	for i := 0; i < b.N; i++ {
		console := &syncBuffer{}
		m, err := New(Config{Kernel: kernel, Cmdline: fmt.Sprintf("n=%d touch=%d", n, touch), MemSize: mem, CPUs: 1, Console: console, Log: quiet})
		if err != nil {
			b.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			m.Run(context.Background())
		}()
		waitLine := func(s string) {
			deadline := time.Now().Add(2 * time.Minute)
			for !strings.Contains(console.String(), s) {
				if time.Now().After(deadline) {
					b.Fatalf("guest never printed %q", s)
				}
				time.Sleep(time.Millisecond)
			}
		}
		root := b.TempDir()
		waitLine(fmt.Sprintf("counter: %d\n", n/10))
		if err := m.Snapshot(filepath.Join(root, "full")); err != nil {
			b.Fatal(err)
		}
		waitLine(fmt.Sprintf("counter: %d\n", 2*n/10))
		if err := m.Pause(); err != nil {
			b.Fatal(err)
		}
		t := time.Now()
		if err := m.SnapshotDiff(filepath.Join(root, "diff")); err != nil {
			b.Fatal(err)
		}
		took += time.Since(t)
		diffMiB = fileMiB(b, filepath.Join(root, "diff", MemoryFile))
		fullMiB = fileMiB(b, filepath.Join(root, "full", MemoryFile))
		m.Stop("measured")
		<-done
		m.Close()
	}
	b.ReportMetric(float64(took.Microseconds())/1e3/float64(b.N), "ms/diff")
	b.ReportMetric(diffMiB, "diff-MiB")
	b.ReportMetric(fullMiB, "full-MiB")
}
