package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sietch-vm/sietch/api/model"
	"github.com/sietch-vm/sietch/internal/cgroups"
	"github.com/sietch-vm/sietch/sandbox"
)

// TestSoak runs cycles of the whole sandbox lifecycle from concurrent
// clients: create, snapshot, fork two, restore, a diff snapshot of the
// restore, delete everything. Afterwards nothing is left: no vmm process,
// no open descriptor, no file under the state directory, no sandbox
// cgroup, no goroutine of the server, and its heap is where it was. The
// count is SIETCH_SOAK_CYCLES per client (default 4, `make soak` more);
// the figures are in docs/RELIABILITY.md.
func TestSoak(t *testing.T) {
	cycles, clients := 4, 3
	if n, err := strconv.Atoi(os.Getenv("SIETCH_SOAK_CYCLES")); err == nil && n > 0 {
		cycles = n
	}
	cgroupsOn := os.Geteuid() == 0
	if _, err := cgroups.Probe("probe"); err != nil {
		cgroupsOn = false
	}
	e := newEnv(t, func(c *sandbox.Config) {
		if cgroupsOn {
			c.Cgroups = sandbox.CgroupsOn
		}
	})
	var mu sync.Mutex
	groups := map[string][]string{} // sandbox id → its cgroup directories
	seen := func(sb model.Sandbox) {
		if !cgroupsOn || sb.VMMPID == 0 {
			return
		}
		if g, err := cgroups.Of(sb.VMMPID); err == nil {
			mu.Lock()
			groups[sb.ID] = g.Dirs()
			mu.Unlock()
		}
	}
	cycle := func() error {
		st, b := e.do("POST", "/v1/sandboxes", model.CreateRequest{Image: "counter"})
		if st != http.StatusCreated {
			return fmt.Errorf("create: %d %s", st, b)
		}
		var sb model.Sandbox
		json.Unmarshal(b, &sb)
		seen(sb)
		ids := []string{sb.ID}
		var snaps []string // newest first: a diff goes before its base
		defer func() {
			for _, id := range ids {
				if st, b := e.do("DELETE", "/v1/sandboxes/"+id, nil); st != http.StatusNoContent {
					t.Errorf("delete %s: %d %s", id, st, b)
				}
			}
			for _, s := range snaps {
				if st, b := e.do("DELETE", "/v1/snapshots/"+s, nil); st != http.StatusNoContent {
					t.Errorf("delete snapshot %s: %d %s", s, st, b)
				}
			}
		}()
		var snap model.Snapshot
		if st, b := e.do("POST", "/v1/sandboxes/"+sb.ID+"/snapshots", nil); st != http.StatusCreated {
			return fmt.Errorf("snapshot: %d %s", st, b)
		} else {
			json.Unmarshal(b, &snap)
			snaps = append(snaps, snap.ID)
		}
		var forks struct{ Sandboxes []model.Sandbox }
		if st, b := e.do("POST", "/v1/sandboxes/"+sb.ID+"/fork", model.ForkRequest{Snapshot: snap.ID, Count: 2}); st != http.StatusCreated {
			return fmt.Errorf("fork: %d %s", st, b)
		} else {
			json.Unmarshal(b, &forks)
		}
		for _, f := range forks.Sandboxes {
			seen(f)
			ids = append(ids, f.ID)
		}
		st, b = e.do("POST", "/v1/sandboxes", model.CreateRequest{Snapshot: snap.ID})
		if st != http.StatusCreated {
			return fmt.Errorf("restore: %d %s", st, b)
		}
		var restored model.Sandbox
		json.Unmarshal(b, &restored)
		seen(restored)
		ids = append(ids, restored.ID)
		var diff model.Snapshot
		if st, b := e.do("POST", "/v1/sandboxes/"+restored.ID+"/snapshots", model.SnapshotRequest{Kind: "diff"}); st != http.StatusCreated {
			return fmt.Errorf("diff snapshot: %d %s", st, b)
		} else {
			json.Unmarshal(b, &diff)
			snaps = append([]string{diff.ID}, snaps...)
		}
		return nil
	}

	// One cycle first, so that lazily made things (pools, caches) are
	// in the baseline.
	if err := cycle(); err != nil {
		t.Fatal(err)
	}
	e.hc.CloseIdleConnections()
	baseFDs, baseG, baseHeap := settledFDs(t, -1), runtime.NumGoroutine(), heapInUse()

	t0 := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, clients*cycles)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range cycles {
				if err := cycle(); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	took := time.Since(t0)

	if pids := vmmProcesses(); len(pids) != 0 {
		t.Errorf("vmm processes left: %v", pids)
	}
	e.hc.CloseIdleConnections()
	fds := settledFDs(t, baseFDs)
	if fds > baseFDs {
		t.Errorf("%d file descriptors open after the soak, %d before", fds, baseFDs)
	}
	for _, d := range []string{"sandboxes", "snapshots"} {
		if ents, _ := os.ReadDir(filepath.Join(e.cfg.StateDir, d)); len(ents) != 0 {
			t.Errorf("%s left under the state directory: %d entries", d, len(ents))
		}
	}
	for id, dirs := range groups {
		for _, d := range dirs {
			if _, err := os.Stat(d); err == nil {
				t.Errorf("sandbox %s's cgroup %s is still there", id, d)
			}
		}
	}
	var g int
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if g = runtime.NumGoroutine(); g <= baseG || time.Now().After(deadline) {
			break
		}
	}
	if g > baseG {
		t.Errorf("%d goroutines after the soak, %d before", g, baseG)
	}
	// The heap may wobble by what a few requests hold; it must not grow
	// with the number of sandboxes made.
	heap := heapInUse()
	if heap > baseHeap+4<<20 {
		t.Errorf("heap in use %d KiB after the soak, %d KiB before", heap>>10, baseHeap>>10)
	}
	made := clients * cycles * 4
	t.Logf("soak: %d clients x %d cycles = %d sandboxes (%d snapshots) in %v; fds %d -> %d, goroutines %d -> %d, heap %d -> %d KiB, cgroups checked: %v",
		clients, cycles, made, clients*cycles*2, took.Round(time.Millisecond), baseFDs, fds, baseG, g, baseHeap>>10, heap>>10, cgroupsOn)
}

// heapInUse is the server's (this process's) live heap after a collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}
