package api

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sietch-vm/sietch/api/model"
	"github.com/sietch-vm/sietch/sandbox"
)

// A disk that fills up during a snapshot: the snapshot fails saying so,
// nothing half-written is left or listed, the sandbox runs on, and once
// there is room the same snapshot works. The state directory is a small
// tmpfs the test mounts.
func TestSnapshotDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	requireKVM(t)
	dir, err := os.MkdirTemp("", "sd-full-")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("mount a tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run(); os.Remove(dir) })
	e := newEnv(t, func(c *sandbox.Config) { c.StateDir = dir })
	sb := e.create(model.CreateRequest{Image: "counter"})
	waitConsole(t, e, sb.ID, "counter: start n=")

	// Fill the disk but for a few KiB: less than the guest's memory data.
	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	for i := range buf {
		buf[i] = 1
	}
	for {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	f.Close()

	st, b := e.do("POST", "/v1/sandboxes/"+sb.ID+"/snapshots", nil)
	if st < 500 || !strings.Contains(strings.ToLower(string(b)), "no space") {
		t.Errorf("snapshot on a full disk: %d %s; want a server error saying there is no space", st, b)
	}
	t.Logf("snapshot on a full disk: %d %s", st, b)
	var snaps struct{ Snapshots []model.Snapshot }
	e.call("GET", "/v1/snapshots", nil, http.StatusOK, &snaps)
	if len(snaps.Snapshots) != 0 {
		t.Errorf("a failed snapshot is listed: %+v", snaps.Snapshots)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "snapshots")); len(ents) != 0 {
		t.Errorf("a failed snapshot left %d entries under snapshots/", len(ents))
	}
	if got := e.get(sb.ID); got.State != model.StateRunning {
		t.Errorf("after the failed snapshot the sandbox is %s, want running", got.State)
	}

	os.Remove(filler)
	var snap model.Snapshot
	e.call("POST", "/v1/sandboxes/"+sb.ID+"/snapshots", nil, http.StatusCreated, &snap)
	restored := e.create(model.CreateRequest{Snapshot: snap.ID})
	e.call("DELETE", "/v1/sandboxes/"+restored.ID, nil, http.StatusNoContent, nil)
	e.call("DELETE", "/v1/sandboxes/"+sb.ID, nil, http.StatusNoContent, nil)
}

// drillVMM builds the vmm with the sietchdrill tag, whose crash points
// SIETCH_VMM_DRILL_CRASH names.
func drillVMM(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "vmm")
	if out, err := exec.Command("go", "build", "-tags", "sietchdrill", "-o", bin, "../cmd/vmm").CombinedOutput(); err != nil {
		t.Fatalf("build the drill vmm: %v\n%s", err, out)
	}
	return bin
}

// A vmm that dies in the middle of a snapshot (its memory file written,
// its state file not yet, the commit point) or just after the state file,
// before it answers: the request fails whole. A failed one is neither listed nor left on
// disk, the sandbox is failed, and a restarted sietchd finds the same.
func TestVMMKilledDuringSnapshot(t *testing.T) {
	requireKVM(t)
	bin := drillVMM(t)
	for _, point := range []string{"snapshot-memory-written", "snapshot-state-written"} {
		t.Run(point, func(t *testing.T) {
			t.Setenv("SIETCH_VMM_DRILL_CRASH", point)
			e := newEnv(t, func(c *sandbox.Config) { c.VMMPath = bin })
			sb := e.create(model.CreateRequest{Image: "counter"})
			waitConsole(t, e, sb.ID, "counter: start n=")
			st, b := e.do("POST", "/v1/sandboxes/"+sb.ID+"/snapshots", nil)
			t.Logf("snapshot with the vmm killed at %s: %d %s", point, st, b)
			check := func(when string) {
				t.Helper()
				var snaps struct{ Snapshots []model.Snapshot }
				e.call("GET", "/v1/snapshots", nil, http.StatusOK, &snaps)
				ents, _ := os.ReadDir(filepath.Join(e.cfg.StateDir, "snapshots"))
				switch {
				case st == http.StatusCreated && (len(snaps.Snapshots) != 1 || len(ents) != 1):
					t.Errorf("%s: the snapshot was answered as made, but %d are listed and %d on disk", when, len(snaps.Snapshots), len(ents))
				case st != http.StatusCreated && (len(snaps.Snapshots) != 0 || len(ents) != 0):
					t.Errorf("%s: the snapshot failed (%d), but %d are listed and %d entries are on disk", when, st, len(snaps.Snapshots), len(ents))
				}
				if got := e.get(sb.ID); got.State != model.StateFailed {
					t.Errorf("%s: the sandbox whose vmm was killed is %s, want failed", when, got.State)
				}
			}
			if st == http.StatusCreated {
				t.Errorf("the snapshot was answered as made although the vmm died before answering")
			}
			e.waitFor(sb.ID, "failed", func(s model.Sandbox) bool { return s.State == model.StateFailed })
			check("at once")
			e.restart()
			check("after a restart")
			e.call("DELETE", "/v1/sandboxes/"+sb.ID, nil, http.StatusNoContent, nil)
		})
	}
}
