package api

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sietch-vm/sietch/api/model"
)

// A counter sandbox goes through every lifecycle call over HTTP, its
// console shows the guest's output, a snapshot of it forks into two
// running sandboxes, metrics count them, and deleting leaves nothing.
func TestLifecycle(t *testing.T) {
	e := newEnv(t, nil)
	var imgs struct{ Images []model.Image }
	e.call("GET", "/v1/images", nil, http.StatusOK, &imgs)
	if len(imgs.Images) != 1 || imgs.Images[0].Name != "counter" || imgs.Images[0].Kind != "testguest" || imgs.Images[0].SizeBytes == 0 {
		t.Errorf("images: %+v", imgs.Images)
	}

	sb := e.create(model.CreateRequest{Image: "counter", Labels: map[string]string{"team": "a"}})
	if sb.State != model.StateRunning || sb.VMMPID == 0 || sb.Limits.MemoryMiB != 64 || sb.Limits.CPUs != 1 || sb.Labels["team"] != "a" {
		t.Fatalf("created sandbox: %+v", sb)
	}
	var list struct{ Sandboxes []model.Sandbox }
	e.call("GET", "/v1/sandboxes", nil, http.StatusOK, &list)
	if len(list.Sandboxes) != 1 || list.Sandboxes[0].ID != sb.ID {
		t.Errorf("list: %+v", list)
	}
	if got := e.get(sb.ID); got.ID != sb.ID || got.State != model.StateRunning {
		t.Errorf("get: %+v", got)
	}
	waitConsole(t, e, sb.ID, "counter: start n=")

	var p model.Sandbox
	e.call("POST", "/v1/sandboxes/"+sb.ID+"/pause", nil, http.StatusOK, &p)
	if p.State != model.StatePaused {
		t.Errorf("after pause: %s", p.State)
	}
	st, b := e.do("POST", "/v1/sandboxes/"+sb.ID+"/pause", nil)
	if st != http.StatusConflict || apiError(t, b).Code != model.CodeWrongState {
		t.Errorf("pause twice: %d %s", st, b)
	}
	e.call("POST", "/v1/sandboxes/"+sb.ID+"/resume", nil, http.StatusOK, &p)
	if p.State != model.StateRunning {
		t.Errorf("after resume: %s", p.State)
	}

	var snap model.Snapshot
	e.call("POST", "/v1/sandboxes/"+sb.ID+"/snapshots", "", http.StatusCreated, &snap)
	if snap.SandboxID != sb.ID || snap.Kind != "full" || snap.SizeBytes == 0 || !strings.HasPrefix(snap.ID, "snap-") {
		t.Errorf("snapshot: %+v", snap)
	}
	if got := e.get(sb.ID); got.State != model.StateRunning {
		t.Errorf("after the snapshot the sandbox is %s, want running again", got.State)
	}
	var snaps struct{ Snapshots []model.Snapshot }
	e.call("GET", "/v1/sandboxes/"+sb.ID+"/snapshots", nil, http.StatusOK, &snaps)
	if len(snaps.Snapshots) != 1 || snaps.Snapshots[0].ID != snap.ID {
		t.Errorf("snapshots: %+v", snaps)
	}

	var forks struct{ Sandboxes []model.Sandbox }
	e.call("POST", "/v1/sandboxes/"+sb.ID+"/fork", model.ForkRequest{Snapshot: snap.ID, Count: 2}, http.StatusCreated, &forks)
	if len(forks.Sandboxes) != 2 {
		t.Fatalf("fork: %+v", forks)
	}
	for _, f := range forks.Sandboxes {
		if f.State != model.StateRunning || f.Snapshot != snap.ID || f.VMMPID == 0 || f.VMMPID == sb.VMMPID || f.Labels["team"] != "a" {
			t.Errorf("fork: %+v", f)
		}
	}
	if forks.Sandboxes[0].ID == forks.Sandboxes[1].ID || forks.Sandboxes[0].VMMPID == forks.Sandboxes[1].VMMPID {
		t.Errorf("the forks share an id or a vmm: %+v", forks.Sandboxes)
	}
	// Create from the snapshot is one more restore.
	restored := e.create(model.CreateRequest{Snapshot: snap.ID})
	if restored.State != model.StateRunning || restored.Image != "counter" || restored.Snapshot != snap.ID {
		t.Errorf("create from snapshot: %+v", restored)
	}
	// Its first snapshot can be a diff on the snapshot it came from.
	var diff model.Snapshot
	e.call("POST", "/v1/sandboxes/"+restored.ID+"/snapshots", model.SnapshotRequest{Kind: "diff"}, http.StatusCreated, &diff)
	if diff.Kind != "diff" || diff.Base != snap.ID || diff.SizeBytes >= snap.SizeBytes {
		t.Errorf("diff snapshot of the restored sandbox: %+v; want a diff on %s smaller than its %d bytes", diff, snap.ID, snap.SizeBytes)
	}

	_, metrics := e.do("GET", "/metrics", nil)
	for _, want := range []string{
		`sietch_sandboxes{state="running"} 4`,
		`sietch_sandboxes{state="failed"} 0`,
		"sietch_boot_seconds_count 1",
		"sietch_restore_seconds_count 3",
		`sietch_restore_seconds_bucket{le="+Inf"} 3`,
		fmt.Sprintf(`sietch_vmm_rss_bytes{sandbox=%q} `, sb.ID),
		fmt.Sprintf(`sietch_vmm_rss_bytes{sandbox=%q} `, forks.Sandboxes[1].ID),
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %q:\n%s", want, metrics)
		}
	}

	pids := []int{sb.VMMPID, forks.Sandboxes[0].VMMPID, forks.Sandboxes[1].VMMPID, restored.VMMPID}
	for _, id := range []string{sb.ID, forks.Sandboxes[0].ID, forks.Sandboxes[1].ID, restored.ID} {
		e.call("DELETE", "/v1/sandboxes/"+id, nil, http.StatusNoContent, nil)
		st, b := e.do("GET", "/v1/sandboxes/"+id, nil)
		if st != http.StatusNotFound || apiError(t, b).Code != model.CodeNotFound {
			t.Errorf("get after delete: %d %s", st, b)
		}
	}
	for _, pid := range pids {
		if slices.Contains(vmmProcesses(), pid) {
			t.Errorf("vmm %d still runs after its sandbox was deleted", pid)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(e.cfg.StateDir, "sandboxes")); len(ents) != 0 {
		t.Errorf("sandbox directories left: %v", ents)
	}
	// The snapshot outlives its sandbox and still restores.
	again := e.create(model.CreateRequest{Snapshot: snap.ID})
	e.call("DELETE", "/v1/sandboxes/"+again.ID, nil, http.StatusNoContent, nil)
}

// waitConsole waits for want in the sandbox's console.
func waitConsole(t *testing.T, e *env, id, want string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, b := e.do("GET", "/v1/sandboxes/"+id+"/console", nil)
		if st != http.StatusOK {
			t.Fatalf("console: %d %s", st, b)
		}
		if strings.Contains(string(b), want) {
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("console of %s lacks %q:\n%s", id, want, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Restarting sietchd (Close and Open on the same state) finds every
// sandbox in the state it was in, with the same vmm, and controllable.
func TestRestartReattaches(t *testing.T) {
	e := newEnv(t, nil)
	a := e.create(model.CreateRequest{Image: "counter"})
	b := e.create(model.CreateRequest{Image: "counter"})
	e.call("POST", "/v1/sandboxes/"+b.ID+"/pause", nil, http.StatusOK, nil)

	e.restart()
	ga, gb := e.get(a.ID), e.get(b.ID)
	if ga.State != model.StateRunning || ga.VMMPID != a.VMMPID {
		t.Errorf("after the restart %s is %s with vmm %d; want running with vmm %d (%s)", a.ID, ga.State, ga.VMMPID, a.VMMPID, ga.Reason)
	}
	if gb.State != model.StatePaused || gb.VMMPID != b.VMMPID {
		t.Errorf("after the restart %s is %s with vmm %d; want paused with vmm %d (%s)", b.ID, gb.State, gb.VMMPID, b.VMMPID, gb.Reason)
	}
	e.call("POST", "/v1/sandboxes/"+b.ID+"/resume", nil, http.StatusOK, nil)
	e.call("POST", "/v1/sandboxes/"+a.ID+"/pause", nil, http.StatusOK, nil)
	e.call("POST", "/v1/sandboxes/"+a.ID+"/snapshots", model.SnapshotRequest{Kind: "full"}, http.StatusCreated, nil)

	// Still supervised: a vmm killed after the restart is noticed.
	syscall.Kill(b.VMMPID, syscall.SIGKILL)
	failed := e.waitFor(b.ID, "failure after SIGKILL", func(s model.Sandbox) bool { return s.State == model.StateFailed })
	if failed.VMMPID != 0 || failed.Reason == "" {
		t.Errorf("failed sandbox: %+v", failed)
	}
	e.call("DELETE", "/v1/sandboxes/"+a.ID, nil, http.StatusNoContent, nil)
	e.call("DELETE", "/v1/sandboxes/"+b.ID, nil, http.StatusNoContent, nil)
}

// A vmm that dies while sietchd is down is marked failed at the next start.
func TestRestartAfterVMMDied(t *testing.T) {
	e := newEnv(t, nil)
	a := e.create(model.CreateRequest{Image: "counter"})
	e.stop()
	p, _ := os.FindProcess(a.VMMPID)
	p.Kill()
	p.Wait()
	e.start()
	got := e.get(a.ID)
	if got.State != model.StateFailed || !strings.Contains(got.Reason, "while sietchd was down") {
		t.Errorf("sandbox whose vmm died during the restart: %+v", got)
	}
	if _, err := os.Stat(filepath.Join(e.cfg.StateDir, "sandboxes", a.ID, "api.sock")); err == nil {
		t.Errorf("its control socket was left behind")
	}
	e.call("DELETE", "/v1/sandboxes/"+a.ID, nil, http.StatusNoContent, nil)
}

// kill -9 of a vmm marks its sandbox failed, saying so, and releases its
// socket; the console stays readable.
func TestKilledVMMFails(t *testing.T) {
	e := newEnv(t, nil)
	sb := e.create(model.CreateRequest{Image: "counter"})
	waitConsole(t, e, sb.ID, "counter: start")
	syscall.Kill(sb.VMMPID, syscall.SIGKILL)
	got := e.waitFor(sb.ID, "failure after SIGKILL", func(s model.Sandbox) bool { return s.State == model.StateFailed })
	if !strings.Contains(got.Reason, "killed by signal SIGKILL") || !strings.Contains(got.Reason, "counter: start") {
		t.Errorf("reason %q: want the signal and the console's last lines", got.Reason)
	}
	if _, err := os.Stat(filepath.Join(e.cfg.StateDir, "sandboxes", sb.ID, "api.sock")); err == nil {
		t.Errorf("the dead vmm's control socket was left behind")
	}
	waitConsole(t, e, sb.ID, "counter: start")
	st, b := e.do("POST", "/v1/sandboxes/"+sb.ID+"/resume", nil)
	if st != http.StatusConflict || apiError(t, b).Code != model.CodeWrongState {
		t.Errorf("resume of a failed sandbox: %d %s", st, b)
	}
	e.call("DELETE", "/v1/sandboxes/"+sb.ID, nil, http.StatusNoContent, nil)
}
