package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sietch-vm/sietch/testguest"
)

// A virtio-blk guest with requests in flight, snapshotted through the
// control socket of one vmm process, finishes in a new `vmm restore`
// process against the original disk; restored again as a fork it finishes
// too, on its own copy of the disk, leaving the original image alone.
func TestSnapshotRestoreVirtioBlkInNewProcess(t *testing.T) {
	requireKVM(t)
	dir, err := os.MkdirTemp("", "vmmsnap-") // unix socket paths must fit 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "vm.sock")
	snap := filepath.Join(dir, "snap")
	img := filepath.Join(dir, "disk.raw")
	if err := os.WriteFile(img, make([]byte, 8<<20), 0o644); err != nil {
		t.Fatal(err)
	}

	// The random-write phase runs for seconds here, so the pause lands
	// while it keeps 16 requests posted.
	before := snapshotRunning(t, sock, snap, "virtio-blk: bench randwrite begin\n",
		"--kernel", testguest.Path(t, "virtio-blk"), "--mem", "64M",
		"--disk", img, "--cmdline", "bench=1 bench_mib=4 qd=16 ops=60000")
	if strings.Contains(before, "randwrite end") {
		t.Fatalf("the random writes ended before the snapshot; nothing in flight was tested:\n%s", before)
	}
	finished := func(name string, r result) {
		t.Helper()
		for _, l := range []string{"virtio-blk: bench randwrite end: 60000 requests", "virtio-blk: bench randread end: 60000 requests", "virtio-blk: ok"} {
			if !strings.Contains(r.stdout, l) || strings.Contains(r.stdout, "FAIL") {
				t.Errorf("%s: the guest did not finish (%q missing):\nbefore the snapshot:\n%s\n%s", name, l, before, r.dump())
				return
			}
		}
	}

	// A fork first: it must not touch the original image, which the plain
	// restore then still finds as the snapshot recorded it.
	orig := readAll(t, img)
	work := filepath.Join(dir, "work")
	if err := os.Mkdir(work, 0o700); err != nil {
		t.Fatal(err)
	}
	fork := runVMM(t, "restore", "--from", snap, "--fork-id", "f1", "--work-dir", work)
	if fork.code != exitPowerOff {
		t.Fatalf("vmm restore --fork-id:\n%s", fork.dump())
	}
	finished("fork", fork)
	if !bytes.Equal(readAll(t, img), orig) {
		t.Errorf("the fork wrote to the original image %s", img)
	}
	if copies, _ := filepath.Glob(filepath.Join(work, "*")); len(copies) != 1 || !strings.Contains(copies[0], "f1") {
		t.Errorf("work directory holds %v, want the fork's one disk copy, named after it", copies)
	}
	if r := runVMM(t, "restore", "--from", snap, "--fork-id", "f1", "--work-dir", work); r.code != exitError || !strings.Contains(r.stderr, "exists") {
		t.Errorf("a second fork with the same id and work directory should be refused, as it would share the disk:\n%s", r.dump())
	}

	after := runVMM(t, "restore", "--from", snap)
	if after.code != exitPowerOff {
		t.Fatalf("vmm restore:\n%s", after.dump())
	}
	finished("restore", after)
}

func TestRestoreForkFlagErrors(t *testing.T) {
	if r := runVMM(t, "restore", "--from", "/x", "--work-dir", "/tmp"); r.code != exitUsage || !strings.Contains(r.stderr, "--work-dir needs --fork-id") {
		t.Errorf("vmm restore --work-dir without --fork-id:\n%s", r.dump())
	}
	if r := runVMM(t, "restore", "--from", "/x", "--fork-id", "../x"); r.code != exitUsage || !strings.Contains(r.stderr, "--fork-id") {
		t.Errorf("vmm restore with a fork id that is a path:\n%s", r.dump())
	}
}

func readAll(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
