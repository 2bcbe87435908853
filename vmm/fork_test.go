package vmm

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sietch-vm/sietch/snapshot"
	"github.com/sietch-vm/sietch/testguest"
)

func TestCheckForkID(t *testing.T) {
	for _, tc := range []struct {
		id string
		ok bool
	}{
		{"a", true},
		{"fork-07", true},
		{"A.b_c-9", true},
		{strings.Repeat("x", MaxForkIDLen), true},
		{"", false},
		{strings.Repeat("x", MaxForkIDLen+1), false},
		{".hidden", false},
		{"..", false},
		{"a/b", false},
		{"../x", false},
		{"a b", false},
		{"é", false},
		{"a\x00", false},
	} {
		err := CheckForkID(tc.id)
		if (err == nil) != tc.ok {
			t.Errorf("CheckForkID(%q) = %v, want ok=%v", tc.id, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "fork id") {
			t.Errorf("CheckForkID(%q) error %q does not say what it refused", tc.id, err)
		}
	}
}

// An accepted id is always one plain file name component.
func FuzzCheckForkID(f *testing.F) {
	for _, s := range []string{"a", "fork-1", "../x", ".", "a/b", "x\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if CheckForkID(id) != nil {
			return
		}
		if filepath.Base(id) != id || id == "." || id == ".." || strings.ContainsAny(id, "/\x00") {
			t.Errorf("accepted fork id %q is not a plain name", id)
		}
	})
}

func TestForkMAC(t *testing.T) {
	saved, _ := net.ParseMAC("52:54:00:12:34:56")
	seen := map[string]string{saved.String(): "the snapshot"}
	for i := 0; i < 1000; i++ {
		id := fmt.Sprint(i)
		mac := forkMAC(saved, id)
		if len(mac) != 6 || mac[0]&1 != 0 || mac[0]&2 == 0 {
			t.Fatalf("fork %s got %s, not a locally administered unicast address", id, mac)
		}
		if other, ok := seen[mac.String()]; ok {
			t.Fatalf("fork %s got %s, as did %s", id, mac, other)
		}
		seen[mac.String()] = id
		if again := forkMAC(saved, id); again.String() != mac.String() {
			t.Fatalf("fork %s got %s, then %s", id, mac, again)
		}
	}
	other, _ := net.ParseMAC("52:54:00:12:34:57")
	if forkMAC(other, "1").String() == forkMAC(saved, "1").String() {
		t.Errorf("fork 1 of two snapshots with different MACs got the same MAC")
	}
}

// A copied image has the same bytes and keeps its holes; an existing
// destination is replaced only when asked.
func TestCopyDisk(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.img")
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	const size = 64 << 20
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{0, 5 << 20, size - 4096} {
		if _, err := f.WriteAt(bytes.Repeat([]byte{byte(off>>20) | 1}, 4096), off); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	dst := filepath.Join(dir, "dst.img")
	if err := copyDisk(src, dst, false); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readFile(t, dst), readFile(t, src)) {
		t.Fatal("the copy differs from the image")
	}
	var st syscall.Stat_t
	if err := syscall.Stat(dst, &st); err != nil {
		t.Fatal(err)
	}
	if used := st.Blocks * 512; used > 4<<20 {
		t.Errorf("the copy of a 64 MiB image holding 12 KiB uses %d bytes: its holes were filled", used)
	}
	if err := copyDisk(src, dst, false); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("copy onto an existing fork disk: %v, want it refused", err)
	}
	if err := copyDisk(src, dst, true); err != nil {
		t.Errorf("replacing a clone: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*tmp*")); len(left) != 0 {
		t.Errorf("temporary files left behind: %v", left)
	}
	if err := copyDisk(filepath.Join(dir, "missing"), filepath.Join(dir, "x"), false); err == nil {
		t.Error("copy of a missing image succeeded")
	}
}

// Ten forks of one snapshot of the counter guest run at once, and each
// prints exactly what the original would have printed after the snapshot.
func TestTenForksOfCounter(t *testing.T) {
	kernel := guestKernel(t, "counter")
	const n = 200000000
	cfg := Config{Kernel: kernel, MemSize: 64 << 20, CPUs: 1, Cmdline: fmt.Sprintf("n=%d", n)}
	ref := &syncBuffer{}
	cfg.Console = ref
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	if e := runAsync(t, m)(); e.Kind != ExitPowerOff || !strings.Contains(ref.String(), "counter: ok") {
		t.Fatalf("reference run ended with %v:\n%s", e, ref)
	}
	dir := filepath.Join(t.TempDir(), "snap")
	before := snapshotGuestAt(t, cfg, fmt.Sprintf("counter: %d\n", n/10), dir)
	want, ok := strings.CutPrefix(ref.String(), before)
	if !ok {
		t.Fatalf("output before the snapshot %q is not a prefix of the reference run's %q", before, ref)
	}

	const forks = 10
	outs := make([]*syncBuffer, forks)
	waits := make([]func() Exit, forks)
	for i := range forks {
		outs[i] = &syncBuffer{}
		r, err := Restore(dir, RestoreConfig{Console: outs[i], ForkID: fmt.Sprintf("f%d", i)})
		if err != nil {
			t.Fatalf("fork %d: %v", i, err)
		}
		t.Cleanup(func() { r.Close() })
		waits[i] = runAsync(t, r)
	}
	var wg sync.WaitGroup
	exits := make([]Exit, forks)
	for i := range forks {
		wg.Go(func() { exits[i] = waits[i]() })
	}
	wg.Wait()
	for i := range forks {
		if exits[i].Kind != ExitPowerOff || outs[i].String() != want {
			t.Errorf("fork %d ended with %v and printed %q, want power-off and %q", i, exits[i], outs[i], want)
		}
	}
}

// Two forks of one virtio-blk snapshot each write to their own copy of the
// disk: the snapshot's clone and the other fork's disk stay as they were.
func TestForksOwnDisks(t *testing.T) {
	kernel := guestKernel(t, "virtio-blk")
	const sectors, seed, imageSize = 2048, 5, 2 << 20
	img := filepath.Join(t.TempDir(), "disk.raw")
	orig := testguest.Pattern(77, imageSize)
	if err := os.WriteFile(img, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "snap")
	before := snapshotGuestMidRun(t, func() Config {
		if err := os.WriteFile(img, orig, 0o644); err != nil {
			t.Fatal(err)
		}
		return Config{Kernel: kernel, MemSize: 64 << 20, CPUs: 1,
			Cmdline: fmt.Sprintf("sectors=%d seed=%d", sectors, seed), Disks: []DiskConfig{{Path: img}}}
	}, "virtio-blk: start", "virtio-blk: checksum", dir)
	if strings.Contains(before, "virtio-blk: checksum") {
		t.Fatalf("the guest finished its writes before the snapshot; nothing was tested:\n%s", before)
	}
	// The original VM is stopped: the image is as it was at the snapshot,
	// some of the guest's writes done, others in flight.
	atSnapshot := readFile(t, img)
	clone := filepath.Join(dir, cloneName(0))
	if !bytes.Equal(readFile(t, clone), atSnapshot) {
		t.Fatal("the snapshot's disk clone differs from the disk at snapshot time")
	}

	work := t.TempDir()
	forks := map[string]*Machine{}
	outs := map[string]*syncBuffer{}
	for _, id := range []string{"a", "b"} {
		outs[id] = &syncBuffer{}
		r, err := Restore(dir, RestoreConfig{Console: outs[id], ForkID: id, WorkDir: work})
		if err != nil {
			t.Fatalf("fork %s: %v", id, err)
		}
		t.Cleanup(func() { r.Close() })
		forks[id] = r
	}
	diskA, diskB := forks["a"].cfg.Disks[0].Path, forks["b"].cfg.Disks[0].Path
	if diskA == diskB || diskA == img || diskA == clone || diskB == img || diskB == clone {
		t.Fatalf("fork disks %s and %s are not each their own (image %s, clone %s)", diskA, diskB, img, clone)
	}
	written := testguest.Pattern(seed, sectors*512)
	// A fork's device may take the requests in flight as soon as it is
	// restored, before its vCPUs run, so each fork's disk carries a mark:
	// one the other guest would overwrite (inside its pattern) or one no
	// guest writes (past the pattern).
	mark := func(path string, off int, text string) []byte {
		t.Helper()
		m := bytes.Repeat([]byte(text), 512/len(text)+1)[:512]
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt(m, int64(off)); err != nil {
			t.Fatal(err)
		}
		return m
	}
	finish := func(id string) []byte {
		t.Helper()
		if e := runAsync(t, forks[id])(); e.Kind != ExitPowerOff {
			t.Fatalf("fork %s ended with %v:\n%s", id, e, outs[id])
		}
		if out := outs[id].String(); !strings.Contains(out, "virtio-blk: ok") || strings.Contains(out, "FAIL") {
			t.Errorf("fork %s did not finish:\n%s", id, out)
		}
		got := readFile(t, forks[id].cfg.Disks[0].Path)
		if len(got) != imageSize || !bytes.Equal(got[:len(written)], written) {
			t.Errorf("fork %s's disk does not hold what its guest wrote", id)
		}
		return got
	}

	markB := mark(diskB, len(written), "fork b ")
	gotA := finish("a")
	if !bytes.Equal(gotA[len(written):], atSnapshot[len(written):]) {
		t.Errorf("fork a's disk changed past what its guest wrote (fork b's mark?)")
	}
	if got := readFile(t, diskB); !bytes.Equal(got[len(written):len(written)+512], markB) {
		t.Errorf("fork a's run changed fork b's disk")
	}
	markA := mark(diskA, 0, "fork a ")
	gotB := finish("b")
	if !bytes.Equal(gotB[len(written):len(written)+512], markB) {
		t.Errorf("fork b's mark is gone from its disk")
	}
	if got := readFile(t, diskA); !bytes.Equal(got[:512], markA) {
		t.Errorf("fork b's writes reached fork a's disk")
	}
	if !bytes.Equal(readFile(t, clone), atSnapshot) {
		t.Errorf("the snapshot's disk clone changed")
	}
	if !bytes.Equal(readFile(t, img), atSnapshot) {
		t.Errorf("a fork wrote to the original image")
	}
}

// A fork of a snapshot whose guest has virtio-net must get its own TAP:
// without RestoreConfig.NetTap the restore is refused, naming the TAP,
// before anything is built; a TAP for a guest without net is refused too.
func TestForkNeedsItsOwnTap(t *testing.T) {
	needKVM(t)
	dir := filepath.Join(t.TempDir(), "snap")
	snapshotMidRun(t, dir, 1)
	st, err := snapshot.Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Restore(dir, RestoreConfig{NetTap: "tap-x"}); err == nil || !strings.Contains(err.Error(), "no virtio-net device") {
		t.Errorf("restore with a TAP for a guest without net: err = %v", err)
	}
	st.Machine.Net = &snapshot.Net{Tap: "sietch-tap0", MAC: "52:54:00:12:34:56"}
	if err := snapshot.Write(dir, st); err != nil {
		t.Fatal(err)
	}
	vms := kvmVMs(t)
	_, err = Restore(dir, RestoreConfig{ForkID: "f1"})
	if err == nil || !strings.Contains(err.Error(), "cannot share") || !strings.Contains(err.Error(), "sietch-tap0") {
		t.Fatalf("fork of a net guest without its own TAP: err = %v, want a refusal naming sietch-tap0", err)
	}
	if n := kvmVMs(t); n != vms {
		t.Errorf("the refused fork left %d VMs behind", n-vms)
	}
}

// A read-only disk is shared, not cloned: the snapshot holds no copy of
// it, every fork attaches the image itself, and a restore confirms it by
// its identity, or by its content once the file was touched, and refuses
// it once its content changed.
func TestReadOnlyDiskShared(t *testing.T) {
	kernel := guestKernel(t, "counter")
	img := filepath.Join(t.TempDir(), "root.img")
	content := testguest.Pattern(9, 1<<20)
	if err := os.WriteFile(img, content, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Kernel: kernel, MemSize: 64 << 20, CPUs: 1, Cmdline: "n=100000000000", Disks: []DiskConfig{{Path: img, ReadOnly: true}}}
	dir := filepath.Join(t.TempDir(), "snap")
	snapshotGuestAt(t, cfg, "counter: start", dir)
	if _, err := os.Stat(filepath.Join(dir, cloneName(0))); err == nil {
		t.Errorf("the snapshot holds a clone of the read-only disk")
	}
	st, err := snapshot.Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if d := st.Machine.Disks[0]; !d.ReadOnly || d.FileID == nil || d.SHA256 == "" || d.Clone != "" {
		t.Fatalf("recorded disk %+v; want read-only with identity and hash, no clone", d)
	}
	work := t.TempDir()
	fork := func(id string) error {
		r, err := Restore(dir, RestoreConfig{Console: &syncBuffer{}, ForkID: id, WorkDir: work})
		if err != nil {
			return err
		}
		defer r.Close()
		if got := r.cfg.Disks[0].Path; got != img {
			t.Errorf("fork %s attached %s; want the read-only image %s itself", id, got, img)
		}
		return nil
	}
	if err := fork("a"); err != nil {
		t.Fatalf("fork of an unchanged image: %v", err)
	}
	if ents, _ := os.ReadDir(work); len(ents) != 0 {
		t.Errorf("the fork copied the read-only disk: %v", ents)
	}
	// Same content, new identity (a new ctime): confirmed by its hash.
	now := time.Now().Add(time.Minute)
	os.Chtimes(img, now, now)
	if err := fork("b"); err != nil {
		t.Errorf("fork after a touch of the image: %v", err)
	}
	content[4096] ^= 0xff
	if err := os.WriteFile(img, content, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := fork("c"); err == nil || !strings.Contains(err.Error(), "changed since the snapshot") {
		t.Errorf("fork after the image changed: %v; want a refusal", err)
	}
}
