package vmm

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sietch-vm/sietch/snapshot"
	"github.com/sietch-vm/sietch/testguest"
	"github.com/sietch-vm/sietch/uffd"
	"github.com/sietch-vm/sietch/vmm/pager"
)

// snapshotGuestAt runs a guest built from cfg until its console shows line,
// pauses it, snapshots it into dir and stops it. It returns the console
// output up to the snapshot.
func snapshotGuestAt(t *testing.T, cfg Config, line, dir string) string {
	t.Helper()
	before, ok := trySnapshotGuestAt(t, cfg, line, dir)
	if !ok {
		t.Fatalf("the guest finished before it could be paused:\n%s", before)
	}
	return before
}

// snapshotGuestMidRun is snapshotGuestAt for short guests whose run after
// line may outpace the pause: it retries with a fresh configuration from
// mk (which also resets any disk image) when the guest ended, or printed
// done, before the pause.
func snapshotGuestMidRun(t *testing.T, mk func() Config, line, done, dir string) string {
	t.Helper()
	var before string
	for attempt := 0; attempt < 8; attempt++ {
		var ok bool
		if before, ok = trySnapshotGuestAt(t, mk(), line, dir); ok && !strings.Contains(before, done) {
			return before
		}
		os.RemoveAll(dir)
		t.Logf("attempt %d: the guest got past %q before the pause; trying again", attempt+1, done)
	}
	t.Fatalf("the guest always finished before it could be paused:\n%s", before)
	return ""
}

// trySnapshotGuestAt runs cfg until its console shows line, pauses,
// snapshots into dir and stops it. ok=false: the guest ended before the
// pause (nothing written to dir).
func trySnapshotGuestAt(t *testing.T, cfg Config, line, dir string) (before string, ok bool) {
	t.Helper()
	console := &syncBuffer{}
	cfg.Console = console
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	wait := runAsync(t, m)
	waitFor(t, console, line)
	if err := m.Pause(); err != nil {
		if e := wait(); e.Kind == ExitPowerOff {
			return console.String(), false
		}
		t.Fatal(err)
	}
	before = console.String()
	if err := m.Snapshot(dir); err != nil {
		t.Fatal(err)
	}
	m.Stop("snapshot taken")
	if e := wait(); e.Kind != ExitStopped {
		t.Fatalf("original VM ended with %v, want stopped; console:\n%s", e, console)
	}
	if after := console.String(); after != before {
		t.Fatalf("the original printed after its snapshot: %q", strings.TrimPrefix(after, before))
	}
	return before, true
}

// restoreAndFinish restores dir in this process and runs it to power-off,
// returning what it printed.
func restoreAndFinish(t *testing.T, dir string) string {
	t.Helper()
	after := &syncBuffer{}
	r, err := Restore(dir, RestoreConfig{Console: after})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	if e := runAsync(t, r)(); e.Kind != ExitPowerOff {
		t.Fatalf("restored VM ended with %v; console after restore:\n%s", e, after)
	}
	return after.String()
}

func guestKernel(t *testing.T, name string) []byte {
	t.Helper()
	needKVM(t)
	needRoot(t)
	k, err := os.ReadFile(testguest.Path(t, name))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// ringPositions says where each started queue of the snapshot stood.
func ringPositions(t *testing.T, dir string) string {
	t.Helper()
	st, err := snapshot.Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, v := range st.Devices.Virtio {
		fmt.Fprintf(&b, "%s status %#x queues %+v; ", v.Name, v.Transport.Status, v.Queues)
	}
	return b.String()
}

// A virtio-blk guest snapshotted while its requests are in flight and
// restored in a new Machine (new device process) finishes: its read-back
// check and checksum pass and the image holds exactly its pattern.
func TestSnapshotRestoreVirtioBlk(t *testing.T) {
	kernel := guestKernel(t, "virtio-blk")
	const sectors, seed, imageSize = 2048, 11, 2 << 20
	img := filepath.Join(t.TempDir(), "disk.raw")
	if err := os.WriteFile(img, make([]byte, imageSize), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "snap")
	before := snapshotGuestMidRun(t, func() Config {
		if err := os.WriteFile(img, make([]byte, imageSize), 0o644); err != nil {
			t.Fatal(err)
		}
		return Config{Kernel: kernel, MemSize: 64 << 20, CPUs: 1,
			Cmdline: fmt.Sprintf("sectors=%d seed=%d", sectors, seed), Disks: []DiskConfig{{Path: img}}}
	}, "virtio-blk: slot", "virtio-blk: checksum", dir)
	if strings.Contains(before, "virtio-blk: ok") {
		t.Fatalf("the guest finished before its snapshot; nothing was tested:\n%s", before)
	}
	t.Logf("snapshot at: %s", ringPositions(t, dir))

	after := restoreAndFinish(t, dir)
	out := before + after
	want := testguest.Pattern(seed, sectors*512)
	for _, l := range []string{"virtio-blk: flushed", fmt.Sprintf("virtio-blk: checksum 0x%016x", testguest.FNV1a(testguest.FNVOffset, want)), "virtio-blk: ok"} {
		if !strings.Contains(out, l) {
			t.Errorf("output lacks %q:\nbefore snapshot:\n%s\nafter restore:\n%s", l, before, after)
		}
	}
	if strings.Contains(out, "FAIL") {
		t.Errorf("guest failed:\n%s%s", before, after)
	}
	got := readFile(t, img)
	if !bytes.Equal(got[:len(want)], want) || !bytes.Equal(got[len(want):], make([]byte, imageSize-len(want))) {
		t.Errorf("image does not hold exactly the guest's pattern after the restored run")
	}
}

// Queue-depth requests in flight at the snapshot: the bench mode keeps 16
// requests posted; the restored device takes the ones it had not taken.
func TestSnapshotRestoreVirtioBlkInFlight(t *testing.T) {
	kernel := guestKernel(t, "virtio-blk")
	img := filepath.Join(t.TempDir(), "disk.raw")
	if err := os.WriteFile(img, make([]byte, 8<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "snap")
	before := snapshotGuestAt(t, Config{Kernel: kernel, MemSize: 64 << 20, CPUs: 1,
		Cmdline: "bench=1 bench_mib=4 qd=16 ops=20000", Disks: []DiskConfig{{Path: img}}},
		"virtio-blk: bench randwrite begin", dir)
	t.Logf("snapshot at: %s", ringPositions(t, dir))
	after := restoreAndFinish(t, dir)
	if !strings.Contains(after, "virtio-blk: bench randread end") || !strings.Contains(after, "virtio-blk: ok") || strings.Contains(after, "FAIL") {
		t.Errorf("restored bench did not finish:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// A disk written after the snapshot is refused on restore, naming it.
func TestRestoreRefusesChangedDisk(t *testing.T) {
	kernel := guestKernel(t, "virtio-blk")
	img := filepath.Join(t.TempDir(), "disk.raw")
	if err := os.WriteFile(img, make([]byte, 8<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "snap")
	// Bench mode runs for seconds: the pause always lands mid-run.
	snapshotGuestAt(t, Config{Kernel: kernel, MemSize: 64 << 20, CPUs: 1,
		Cmdline: "bench=1 bench_mib=4 qd=16 ops=60000", Disks: []DiskConfig{{Path: img}}}, "virtio-blk: start", dir)
	f, err := os.OpenFile(img, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("moved on"), 4096); err != nil {
		t.Fatal(err)
	}
	f.Close()
	vmsBefore := kvmVMs(t)
	m, err := Restore(dir, RestoreConfig{})
	if err == nil {
		m.Close()
		t.Fatal("Restore accepted a disk that changed after the snapshot")
	}
	if !strings.Contains(err.Error(), img) || !strings.Contains(err.Error(), "changed since the snapshot") {
		t.Errorf("error %q should name the disk and say it changed", err)
	}
	if n := kvmVMs(t); n != vmsBefore {
		t.Errorf("%d KVM VMs open after the failed restore, %d before", n, vmsBefore)
	}
}

// The virtio-rng guest snapshotted after it started its device, restored,
// finishes its requests.
func TestSnapshotRestoreVirtioRNG(t *testing.T) {
	kernel := guestKernel(t, "virtio-rng")
	dir := filepath.Join(t.TempDir(), "snap")
	// rounds: long enough (~1 s of requests) that the snapshot lands with
	// the queue live, after the guest printed its slot line.
	before := snapshotGuestAt(t, Config{Kernel: kernel, MemSize: 64 << 20, CPUs: 1, RNG: true,
		Cmdline: "rounds=20000"}, "virtio-rng: slot", dir)
	t.Logf("snapshot at: %s", ringPositions(t, dir))
	after := restoreAndFinish(t, dir)
	if out := before + after; !strings.Contains(out, "virtio-rng: ok") || strings.Contains(out, "FAIL") {
		t.Errorf("guest did not finish after the restore:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// A running virtio-blk guest snapshotted without a pause of its own runs
// on: its rings start again when its vCPUs resume.
func TestSnapshotVirtioBlkRunsOn(t *testing.T) {
	kernel := guestKernel(t, "virtio-blk")
	img := filepath.Join(t.TempDir(), "disk.raw")
	if err := os.WriteFile(img, make([]byte, 8<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	console := &syncBuffer{}
	m, err := New(Config{Kernel: kernel, MemSize: 64 << 20, CPUs: 1, Console: console,
		Cmdline: "bench=1 bench_mib=4 qd=16 ops=4000", Disks: []DiskConfig{{Path: img}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	wait := runAsync(t, m)
	waitFor(t, console, "virtio-blk: bench seqread begin")
	if err := m.Snapshot(filepath.Join(t.TempDir(), "snap")); err != nil {
		t.Fatal(err)
	}
	if e := wait(); e.Kind != ExitPowerOff || !strings.Contains(console.String(), "virtio-blk: ok") {
		t.Fatalf("VM ended with %v after its snapshot; console:\n%s", e, console)
	}
}

// With the background filler held back, every page of a lazily restored
// virtio-blk guest arrives through a fault, the device process's too: the
// requests in flight at the snapshot read and write guest buffers that no
// vCPU touched since the restore, and the image still ends up holding
// exactly the guest's pattern.
func TestLazyRestoreServesDeviceFaults(t *testing.T) {
	kernel := guestKernel(t, "virtio-blk")
	if u, err := uffd.New(); err != nil {
		t.Skipf("no userfaultfd for the vmm: %v", err)
	} else {
		u.Close()
	}
	if f, err := uffd.OpenDevice(); err != nil {
		t.Skipf("device processes get their userfaultfd through %s: %v", uffd.DevicePath, err)
	} else {
		f.Close()
	}
	const sectors, seed, imageSize = 2048, 12, 2 << 20
	img := filepath.Join(t.TempDir(), "disk.raw")
	dir := filepath.Join(t.TempDir(), "snap")
	before := snapshotGuestMidRun(t, func() Config {
		if err := os.WriteFile(img, make([]byte, imageSize), 0o644); err != nil {
			t.Fatal(err)
		}
		return Config{Kernel: kernel, MemSize: 64 << 20, CPUs: 1,
			Cmdline: fmt.Sprintf("sectors=%d seed=%d", sectors, seed), Disks: []DiskConfig{{Path: img}}}
	}, "virtio-blk: slot", "virtio-blk: checksum", dir)

	pager.HoldFill.Store(true)
	defer pager.HoldFill.Store(false)
	after := &syncBuffer{}
	r, err := Restore(dir, RestoreConfig{Console: after, Memory: MemoryLazy})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	if r.pager == nil {
		t.Fatal("restore with Memory: lazy has no pager")
	}
	if e := runAsync(t, r)(); e.Kind != ExitPowerOff {
		t.Fatalf("restored VM ended with %v:\n%s", e, after)
	}
	out := before + after.String()
	want := testguest.Pattern(seed, sectors*512)
	if !strings.Contains(out, "virtio-blk: ok") || strings.Contains(out, "FAIL") {
		t.Errorf("lazily restored guest did not finish cleanly:\n%s", out)
	}
	if got := readFile(t, img); !bytes.Equal(got[:len(want)], want) {
		t.Errorf("image does not hold the guest's pattern after a lazily restored run")
	}
	st := r.pager.Stats()
	t.Logf("pages served on fault: %d (device process: %d), by the background filler: %d", st.Served, st.DevServed, st.Background)
	if st.DevServed == 0 {
		t.Error("the device process took no fault: its accesses to guest memory were not lazy")
	}
	if st.Background != 0 {
		t.Errorf("the held filler copied %d pages", st.Background)
	}
}

// An on-demand restore copies a page only when the guest first touches
// it: no background filler runs. A full snapshot of the restored VM fills
// the rest first, and restores to the same run.
func TestOnDemandRestore(t *testing.T) {
	kernel := guestKernel(t, "counter")
	if u, err := uffd.New(); err != nil {
		t.Skipf("no userfaultfd for the vmm: %v", err)
	} else {
		u.Close()
	}
	const n = 400000000
	cfg := Config{Kernel: kernel, MemSize: 64 << 20, CPUs: 1, Cmdline: fmt.Sprintf("n=%d", n)}
	dir := filepath.Join(t.TempDir(), "snap")
	before := snapshotGuestAt(t, cfg, fmt.Sprintf("counter: %d\n", n/10), dir)

	out := &syncBuffer{}
	r, err := Restore(dir, RestoreConfig{Console: out, Memory: MemoryOnDemand})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	if r.pager == nil {
		t.Fatal("restore with Memory: ondemand has no pager")
	}
	wait := runAsync(t, r)
	waitFor(t, out, fmt.Sprintf("counter: %d\n", 3*n/10))
	if err := r.Pause(); err != nil {
		t.Fatal(err)
	}
	p := r.pager
	if st := p.Stats(); st.Background != 0 || st.Served == 0 {
		t.Fatalf("on demand: %d pages on fault, %d in the background; want faults only", st.Served, st.Background)
	}
	need := p.DataPages()
	t.Logf("on demand: %d of the snapshot's %d data pages came in on fault", p.Stats().Served, need)

	dir2 := filepath.Join(t.TempDir(), "snap2")
	if err := r.Snapshot(dir2); err != nil {
		t.Fatal(err)
	}
	if st := p.Stats(); st.Served+st.Background < uint64(need) {
		t.Errorf("after a full snapshot %d of %d data pages are in", st.Served+st.Background, need)
	}
	mid := out.String()
	r.Stop("snapshot taken")
	wait()

	rest := &syncBuffer{}
	r2, err := Restore(dir2, RestoreConfig{Console: rest, Memory: MemoryEager})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r2.Close() })
	if e := runAsync(t, r2)(); e.Kind != ExitPowerOff {
		t.Fatalf("restore of the snapshot of an on-demand VM ended with %v:\n%s", e, rest)
	}
	if all := before + mid + rest.String(); !strings.Contains(all, "counter: ok") || strings.Contains(all, "FAIL") {
		t.Errorf("the counter did not finish cleanly across two restores:\n%s", all)
	}
}
