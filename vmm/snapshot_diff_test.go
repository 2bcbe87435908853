package vmm

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sietch-vm/sietch/snapshot"
)

// chainMemory fills a fresh buffer from the snapshot in dir (following a
// diff's chain of bases).
func chainMemory(t *testing.T, dir string) []byte {
	t.Helper()
	st, err := snapshot.Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	chain, err := snapshot.Layers(dir, st)
	if err != nil {
		t.Fatal(err)
	}
	mem := make([]byte, st.Memory.Size)
	if _, err := snapshot.Fill(mem, chain); err != nil {
		t.Fatal(err)
	}
	return mem
}

// sameAsLive checks that the snapshot in dir holds exactly the paused VM's
// memory: a page written since the base but missing from the diff shows.
func sameAsLive(t *testing.T, m *Machine, dir string) {
	t.Helper()
	got, live := chainMemory(t, dir), m.mem.Mapping()
	if bytes.Equal(got, live) {
		return
	}
	for p := 0; p < len(live); p += pageSize {
		if !bytes.Equal(got[p:p+pageSize], live[p:p+pageSize]) {
			t.Fatalf("%s: page at %#x differs from the paused VM's memory (a write the dirty log missed)", filepath.Base(dir), p)
		}
	}
}

// A counter guest that writes 1% of its memory per progress step: a full
// snapshot, then a diff one step later holds about 1% of memory; restoring
// the diff continues the count exactly; the restored VM's own diff (a chain
// of two) restores exactly too.
func TestDiffSnapshotCounter(t *testing.T) {
	const memSize = 64 << 20
	const touch = memSize / pageSize / 100 // 1% of the guest's pages
	args := snapCounterN + " touch=163"
	root := t.TempDir()
	full, d1, d2 := filepath.Join(root, "full"), filepath.Join(root, "d1"), filepath.Join(root, "d2")

	ref := &syncBuffer{}
	if e, err := newGuest(t, "counter", args, 1, ref).Run(t.Context()); err != nil || e.Kind != ExitPowerOff {
		t.Fatalf("reference run: %v %v", e, err)
	}

	console := &syncBuffer{}
	m := newGuest(t, "counter", args, 1, console)
	if err := m.SnapshotDiff(filepath.Join(root, "none")); err == nil || !strings.Contains(err.Error(), "take a full snapshot first") {
		t.Errorf("diff before any snapshot: err = %v, want ErrNoDiffBase", err)
	}
	wait := runAsync(t, m)
	waitFor(t, console, "counter: 100000000\n")
	if err := m.Pause(); err != nil {
		t.Fatal(err)
	}
	// Steps (progress lines) the guest completed at each snapshot: a
	// loaded host may let it pass more than one before a pause lands.
	steps := func(out string) int { return strings.Count(out, "00000000\n") }
	atFull := steps(console.String())
	if err := m.Snapshot(full); err != nil {
		t.Fatal(err)
	}
	if err := m.Resume(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, console, "counter: 200000000\n")
	if err := m.Pause(); err != nil {
		t.Fatal(err)
	}
	before := console.String()
	between := steps(before) - atFull
	if strings.Contains(before, "checksum") {
		t.Fatalf("the guest finished before the pause:\n%s", before)
	}
	if err := m.SnapshotDiff(d1); err != nil {
		t.Fatal(err)
	}
	sameAsLive(t, m, d1)
	m.Stop("snapshots taken")
	wait()

	st, err := snapshot.Read(d1)
	if err != nil {
		t.Fatal(err)
	}
	dirty := st.Memory.DirtyPages.Count()
	fullSt, _ := snapshot.Read(full)
	diffBytes, fullBytes := allocated(t, filepath.Join(d1, MemoryFile)), allocated(t, filepath.Join(full, MemoryFile))
	t.Logf("guest %d MiB touching %d pages per step, %d step(s) between the snapshots: full snapshot %d KiB on disk, diff %d dirty pages, %d KiB on disk (%.2f%% of memory)",
		memSize>>20, touch, between, fullBytes>>10, dirty, diffBytes>>10, 100*float64(diffBytes)/memSize)
	if st.Memory.Kind != snapshot.KindDiff || st.Memory.Base != "../full" || fullSt.Memory.Kind != snapshot.KindFull {
		t.Errorf("diff state: kind %q base %q (full: %q); want diff based on ../full", st.Memory.Kind, st.Memory.Base, fullSt.Memory.Kind)
	}
	// The guest's pages plus what printing and the page tables' accessed
	// and dirty bits touch: about 1%, far from the whole.
	if wrote := touch * between; dirty < wrote || dirty > wrote+64 {
		t.Errorf("diff holds %d pages; the guest wrote %d in %d step(s) (plus a few for its stack, console and page tables)", dirty, wrote, between)
	}
	if diffBytes > int64(between)*memSize/100*3/2 {
		t.Errorf("diff takes %d bytes on disk, more than 1.5%% of the %d-byte memory per step", diffBytes, memSize)
	}

	// Restore the diff, snapshot one step later again (a chain of two
	// diffs), and finish both ways.
	after := &syncBuffer{}
	r, err := Restore(d1, RestoreConfig{Console: after, TrackDirty: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	rwait := runAsync(t, r)
	// One step past where the diff was taken ("start" ends in zeros too).
	waitFor(t, after, fmt.Sprintf("counter: %d\n", steps(before)*100000000))
	if err := r.Pause(); err != nil {
		t.Fatal(err)
	}
	mid := after.String()
	if err := r.SnapshotDiff(d2); err != nil {
		t.Fatal(err)
	}
	sameAsLive(t, r, d2)
	if err := r.Resume(); err != nil {
		t.Fatal(err)
	}
	if e := rwait(); e.Kind != ExitPowerOff {
		t.Fatalf("VM restored from the diff ended with %v:\n%s", e, after)
	}
	if got := before + after.String(); got != ref.String() {
		t.Errorf("output across a diff snapshot/restore differs from an uninterrupted run:\ngot  %q\nwant %q", got, ref)
	}
	st2, _ := snapshot.Read(d2)
	if st2.Memory.Base != "../d1" {
		t.Errorf("second diff's base is %q, want ../d1 (the snapshot its VM was restored from)", st2.Memory.Base)
	}
	if got := before + mid + restoreAndFinish(t, d2); got != ref.String() {
		t.Errorf("output across a chain of two diffs differs from an uninterrupted run:\ngot  %q\nwant %q", got, ref)
	}
}

// Pages a device process writes (disk reads DMAed into guest buffers, used
// rings) are in the diff: the vhost-user dirty log covers them. The guest
// runs a random-read benchmark between the full snapshot and the diff.
func TestDiffSnapshotLogsDeviceWrites(t *testing.T) {
	kernel := guestKernel(t, "virtio-blk")
	img := filepath.Join(t.TempDir(), "disk.raw")
	if err := os.WriteFile(img, make([]byte, 8<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	console := &syncBuffer{}
	m, err := New(Config{Kernel: kernel, MemSize: 64 << 20, CPUs: 1, Console: console,
		Cmdline: "bench=1 bench_mib=4 qd=16 ops=200000", Disks: []DiskConfig{{Path: img}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	wait := runAsync(t, m)
	waitFor(t, console, "virtio-blk: bench randread begin")
	if err := m.Snapshot(filepath.Join(root, "full")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // reads land in guest memory meanwhile
	if err := m.Pause(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(console.String(), "bench randread end") {
		t.Fatalf("the benchmark ended before the diff; nothing was tested:\n%s", console)
	}
	d := filepath.Join(root, "diff")
	if err := m.SnapshotDiff(d); err != nil {
		t.Fatal(err)
	}
	sameAsLive(t, m, d)
	st, _ := snapshot.Read(d)
	t.Logf("diff after 300 ms of random reads: %d dirty pages", st.Memory.DirtyPages.Count())
	m.Stop("done")
	wait()
}

// allocated is the disk space a file takes (its data, not its holes).
func allocated(t *testing.T, path string) int64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}
