package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sietch-vm/sietch/api/model"
	"github.com/sietch-vm/sietch/sandbox"
)

// 20 creates and deletes, 4 at a time, leave no vmm process, no open file
// descriptor and no file under the state directory behind.
func TestLoadCreateDelete(t *testing.T) {
	const total, parallel = 20, 4
	e := newEnv(t, nil)
	warm := e.create(model.CreateRequest{Image: "counter"})
	e.call("DELETE", "/v1/sandboxes/"+warm.ID, nil, http.StatusNoContent, nil)
	e.hc.CloseIdleConnections()
	baseFDs := settledFDs(t, -1)

	var wg sync.WaitGroup
	work := make(chan int)
	errs := make(chan string, total)
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				st, b := e.do("POST", "/v1/sandboxes", model.CreateRequest{Image: "counter"})
				if st != http.StatusCreated {
					errs <- "create: " + strconv.Itoa(st) + " " + string(b)
					continue
				}
				var sb model.Sandbox
				json.Unmarshal(b, &sb)
				if st, b := e.do("DELETE", "/v1/sandboxes/"+sb.ID, nil); st != http.StatusNoContent {
					errs <- "delete: " + strconv.Itoa(st) + " " + string(b)
				}
			}
		}()
	}
	for i := range total {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	if pids := vmmProcesses(); len(pids) != 0 {
		t.Errorf("vmm processes left: %v", pids)
	}
	e.hc.CloseIdleConnections()
	if fds := settledFDs(t, baseFDs); fds > baseFDs {
		t.Errorf("%d file descriptors open after the load, %d before", fds, baseFDs)
	}
	for _, d := range []string{"sandboxes", "snapshots"} {
		if ents, _ := os.ReadDir(filepath.Join(e.cfg.StateDir, d)); len(ents) != 0 {
			t.Errorf("%s left under the state directory: %d entries", d, len(ents))
		}
	}
	var list struct{ Sandboxes []model.Sandbox }
	e.call("GET", "/v1/sandboxes", nil, http.StatusOK, &list)
	if len(list.Sandboxes) != 0 {
		t.Errorf("sandboxes left: %+v", list.Sandboxes)
	}
}

// settledFDs counts this process's open descriptors once connections the
// server is still closing are gone (waiting up to 5 s for at most want).
func settledFDs(t *testing.T, want int) int {
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := openFDs(t)
		if want < 0 || n <= want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A sandbox's lifetime ends it: stopped, or snapshotted first when its
// limits say so.
func TestLifetimeTimeout(t *testing.T) {
	e := newEnv(t, nil)
	stop := e.create(model.CreateRequest{Image: "counter", Limits: model.Limits{TimeoutS: 1}})
	snap := e.create(model.CreateRequest{Image: "counter", Limits: model.Limits{TimeoutS: 1, OnTimeout: sandbox.OnTimeoutSnapshot}})
	for _, sb := range []model.Sandbox{stop, snap} {
		got := e.waitFor(sb.ID, "the end of its lifetime", func(s model.Sandbox) bool { return s.State == model.StateStopped })
		if !strings.Contains(got.Reason, "lifetime of 1 s ended") {
			t.Errorf("reason %q", got.Reason)
		}
	}
	var snaps struct{ Snapshots []model.Snapshot }
	e.call("GET", "/v1/sandboxes/"+snap.ID+"/snapshots", nil, http.StatusOK, &snaps)
	if len(snaps.Snapshots) != 1 || !strings.Contains(e.get(snap.ID).Reason, snaps.Snapshots[0].ID) {
		t.Errorf("on_timeout snapshot: %+v, reason %q", snaps.Snapshots, e.get(snap.ID).Reason)
	}
	e.call("GET", "/v1/sandboxes/"+stop.ID+"/snapshots", nil, http.StatusOK, &snaps)
	if len(snaps.Snapshots) != 0 {
		t.Errorf("on_timeout stop took a snapshot: %+v", snaps.Snapshots)
	}
	e.call("DELETE", "/v1/sandboxes/"+stop.ID, nil, http.StatusNoContent, nil)
	e.call("DELETE", "/v1/sandboxes/"+snap.ID, nil, http.StatusNoContent, nil)
}

// A followed console streams until the sandbox ends.
func TestConsoleFollow(t *testing.T) {
	e := newEnv(t, nil)
	sb := e.create(model.CreateRequest{Image: "counter"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://sietchd/v1/sandboxes/"+sb.ID+"/console?follow=1", nil)
	req.Header.Set("Authorization", "Bearer "+e.token)
	resp, err := e.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var seen bytes.Buffer
	buf := make([]byte, 4096)
	for !strings.Contains(seen.String(), "counter: start") {
		n, err := resp.Body.Read(buf)
		seen.Write(buf[:n])
		if err != nil {
			t.Fatalf("console stream ended before the guest's first line: %v (%q)", err, seen.String())
		}
	}
	// Deleting the sandbox ends the stream.
	go e.do("DELETE", "/v1/sandboxes/"+sb.ID, nil)
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Errorf("console stream after the sandbox ended: %v", err)
	}
}
