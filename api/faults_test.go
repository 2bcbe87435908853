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
