package agent

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sietch-vm/sietch/wire/agentproto"
)

// events collects a watch's events in the background.
type events struct {
	ch   chan agentproto.WatchEvent
	done chan error
}

func collect(w *agentproto.Watcher) *events {
	e := &events{ch: make(chan agentproto.WatchEvent, 4096), done: make(chan error, 1)}
	go func() {
		for {
			ev, err := w.Next()
			if err != nil {
				close(e.ch)
				e.done <- err
				return
			}
			e.ch <- ev
		}
	}()
	return e
}

// until reads events until one matches typ and path, returning all read.
func (e *events) until(t *testing.T, typ, path string) []agentproto.WatchEvent {
	t.Helper()
	var got []agentproto.WatchEvent
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-e.ch:
			if !ok {
				t.Fatalf("the watch ended before %s %s; got %v", typ, path, got)
			}
			got = append(got, ev)
			if ev.Type == typ && ev.Path == path {
				return got
			}
		case <-timeout:
			t.Fatalf("no %s %s within 10s; got %v", typ, path, got)
		}
	}
}

func summary(evs []agentproto.WatchEvent, root string) string {
	var s []string
	for _, ev := range evs {
		d := ""
		if ev.IsDir {
			d = "/"
		}
		s = append(s, ev.Type+" "+strings.TrimPrefix(ev.Path, root)+d)
	}
	return strings.Join(s, ", ")
}

// Every kind of change is reported with its path, recursively into
// directories made after the watch began, and the watch ends when its
// client goes.
func TestWatchRecursive(t *testing.T) {
	env := startAgent(t, Config{})
	ctx := testCtx(t)
	r := env.root
	os.MkdirAll(r+"/w/old", 0o755)
	w, err := env.c.Watch(ctx, r+"/w", true)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	evs := collect(w)

	// A file in a directory that existed before.
	os.WriteFile(r+"/w/old/f", []byte("x"), 0o644)
	got := evs.until(t, "write", r+"/w/old/f")
	if s := summary(got, r); s != "create /w/old/f, write /w/old/f" {
		t.Errorf("new file: %s", s)
	}
	// Directories made now, nested at once: each is watched in turn, and
	// what was made in them before their watch is announced.
	os.MkdirAll(r+"/w/new/a/b", 0o755)
	os.WriteFile(r+"/w/new/a/b/deep", nil, 0o644)
	got = evs.until(t, "create", r+"/w/new/a/b/deep")
	for _, want := range []string{"create /w/new/", "create /w/new/a/", "create /w/new/a/b/"} {
		if !strings.Contains(summary(got, r)+",", want+",") {
			t.Errorf("mkdir -p: %s; want %s in it", summary(got, r), want)
		}
	}
	os.WriteFile(r+"/w/new/a/b/later", []byte("y"), 0o644)
	evs.until(t, "write", r+"/w/new/a/b/later")

	os.Chmod(r+"/w/old/f", 0o600)
	evs.until(t, "chmod", r+"/w/old/f")
	os.Rename(r+"/w/old/f", r+"/w/old/g")
	got = evs.until(t, "create", r+"/w/old/g")
	if s := summary(got, r); s != "rename /w/old/f, create /w/old/g" {
		t.Errorf("rename: %s", s)
	}
	// A directory renamed keeps being watched under its new name.
	os.Rename(r+"/w/new", r+"/w/moved")
	evs.until(t, "create", r+"/w/moved")
	os.WriteFile(r+"/w/moved/a/b/after-move", nil, 0o644)
	evs.until(t, "create", r+"/w/moved/a/b/after-move")
	os.RemoveAll(r + "/w/moved")
	got = evs.until(t, "remove", r+"/w/moved")
	if !strings.Contains(summary(got, r), "remove /w/moved/a/b/after-move") {
		t.Errorf("remove tree: %s", summary(got, r))
	}
	// An upload through the files API shows as its file, not its
	// temporary name.
	if err := env.c.Upload(ctx, r+"/w/up.txt", 0, strings.NewReader("up")); err != nil {
		t.Fatal(err)
	}
	got = evs.until(t, "create", r+"/w/up.txt")
	if strings.Contains(summary(got, r), ".sietch-upload-") {
		t.Errorf("upload's temporary file reported: %s", summary(got, r))
	}

	// The client going away ends the watch: the agent frees the slot.
	w.Close()
	<-evs.done
	for i := 0; ; i++ {
		env.a.mu.Lock()
		n := env.a.watches
		env.a.mu.Unlock()
		if n == 0 {
			break
		}
		if i > 500 {
			t.Fatalf("%d watches still run after the client closed", n)
		}
		sleepBriefly()
	}
}

// Without recursive, only the directory's own entries are reported;
// removing the directory ends the stream after saying so.
func TestWatchFlatAndEnd(t *testing.T) {
	env := startAgent(t, Config{})
	ctx := testCtx(t)
	r := env.root
	os.MkdirAll(r+"/w/sub", 0o755)
	w, err := env.c.Watch(ctx, r+"/w", false)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	defer w.Close()
	evs := collect(w)
	os.WriteFile(r+"/w/sub/hidden", nil, 0o644)
	os.WriteFile(r+"/w/top", nil, 0o644)
	got := evs.until(t, "create", r+"/w/top")
	if s := summary(got, r); s != "create /w/top" {
		t.Errorf("flat watch: %s; want only the top-level file", s)
	}
	os.RemoveAll(r + "/w")
	evs.until(t, "remove", r+"/w")
	if err := <-evs.done; !errors.Is(err, io.EOF) {
		t.Errorf("the stream ended with %v; want io.EOF after the directory went", err)
	}
}

// Many changes at once arrive one by one, none coalesced, no overflow.
func TestWatchBurst(t *testing.T) {
	env := startAgent(t, Config{})
	ctx := testCtx(t)
	r := env.root
	os.Mkdir(r+"/w", 0o755)
	w, err := env.c.Watch(ctx, r+"/w", true)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	defer w.Close()
	evs := collect(w)
	const n = 500
	for i := range n {
		os.WriteFile(fmt.Sprintf("%s/w/f%03d", r, i), nil, 0o644)
	}
	os.WriteFile(r+"/w/last", nil, 0o644)
	got := evs.until(t, "create", r+"/w/last")
	creates := 0
	for _, ev := range got {
		switch ev.Type {
		case "create":
			creates++
		case "overflow":
			t.Fatalf("overflow in a burst of %d files", n)
		}
		if ev.Time.IsZero() {
			t.Fatalf("event without a time: %+v", ev)
		}
	}
	if creates != n+1 {
		t.Errorf("%d create events; want %d", creates, n+1)
	}
}

func TestWatchRefusals(t *testing.T) {
	env := startAgent(t, Config{})
	ctx := testCtx(t)
	r := env.root
	os.WriteFile(r+"/file", nil, 0o644)
	outside := t.TempDir()
	os.Symlink(outside, r+"/out")
	var e *Error
	for _, tt := range []struct {
		path   string
		status int
	}{
		{r + "/file", 400}, {r + "/missing", 404}, {r + "/out", 403}, {"/etc", 403}, {r + "/../x", 403},
	} {
		if _, err := env.c.Watch(ctx, tt.path, true); !errors.As(err, &e) || e.Status != tt.status {
			t.Errorf("Watch %s: %v; want %d", tt.path, err, tt.status)
		}
	}
	// A bounded number at once.
	var ws []*agentproto.Watcher
	defer func() {
		for _, w := range ws {
			w.Close()
		}
	}()
	for range maxWatches {
		w, err := env.c.Watch(ctx, r, false)
		if err != nil {
			t.Fatalf("Watch: %v", err)
		}
		ws = append(ws, w)
	}
	if _, err := env.c.Watch(ctx, r, false); !errors.As(err, &e) || e.Status != 429 {
		t.Errorf("watch %d: %v; want 429", maxWatches+1, err)
	}
}
