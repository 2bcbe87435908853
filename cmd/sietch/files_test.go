package main

import (
	"archive/tar"
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sietch-vm/sietch/api/model"
)

func TestParseFileCommands(t *testing.T) {
	type rm struct {
		ids             []string
		files, recurses bool
	}
	pRmFiles := func(a []string) (any, error) {
		ids, files, r, err := parseRm(testFlags(), a)
		return rm{ids, files, r}, err
	}
	type mv struct{ id, from, to string }
	pMv := func(a []string) (any, error) {
		id, from, to, err := parseMv(testFlags(), a)
		return mv{id, from, to}, err
	}
	type mk struct {
		targets [][2]string
		req     model.MkdirRequest
	}
	pMkdir := func(a []string) (any, error) {
		t, req, err := parseMkdir(testFlags(), a)
		return mk{t, req}, err
	}
	pCpTree := func(a []string) (any, error) { return parseCp(testFlags(), a) }
	for _, tc := range []struct {
		name    string
		parse   func([]string) (any, error)
		args    []string
		want    any
		wantErr string
	}{
		{"rm", pRmFiles, []string{"sb-1", "sb-2"}, rm{[]string{"sb-1", "sb-2"}, false, false}, ""},
		{"rm", pRmFiles, []string{"-r", "sb-1:/tmp/a", "sb-2:/b"}, rm{[]string{"sb-1:/tmp/a", "sb-2:/b"}, true, true}, ""},
		{"rm", pRmFiles, []string{"sb-1:/a", "sb-2"}, nil, "separate commands"},
		{"rm", pRmFiles, []string{"-r", "sb-1"}, nil, "-r goes with ID:/path"},
		{"rm", pRmFiles, []string{"sb-1:relative"}, nil, "not ID:/absolute/path"},
		{"rm", pRmFiles, nil, nil, "at least one"},
		{"mv", pMv, []string{"sb-1:/a/b", "sb-1:/c/"}, mv{"sb-1", "/a/b", "/c/b"}, ""},
		{"mv", pMv, []string{"sb-1:/a", "sb-1:/b"}, mv{"sb-1", "/a", "/b"}, ""},
		{"mv", pMv, []string{"sb-1:/a", "sb-2:/b"}, nil, "within one sandbox"},
		{"mv", pMv, []string{"sb-1:/a"}, nil, "want ID:/from and ID:/to"},
		{"mv", pMv, []string{"./a", "sb-1:/b"}, nil, "not ID:/absolute/path"},
		{"mkdir", pMkdir, []string{"-p", "--mode", "0700", "sb-1:/a/b", "sb-2:/c"},
			mk{[][2]string{{"sb-1", "/a/b"}, {"sb-2", "/c"}}, model.MkdirRequest{Parents: true, Mode: "0700"}}, ""},
		{"mkdir", pMkdir, []string{"--mode", "rwx", "sb-1:/a"}, nil, "--mode"},
		{"mkdir", pMkdir, nil, nil, "at least one"},
		{"cp -r", pCpTree, []string{"-r", "./proj", "sb-1:/root/"}, copySpec{upload: true, id: "sb-1", remote: "/root/proj", local: "./proj", tree: true}, ""},
		{"cp -r", pCpTree, []string{"-r", "sb-1:/root/out/", "."}, copySpec{id: "sb-1", remote: "/root/out/", local: ".", tree: true}, ""},
		{"cp -r", pCpTree, []string{"-r", "sb-1:/root/out", "-"}, nil, "not stdin or stdout"},
		{"cp -r", pCpTree, []string{"-r", "--mode", "0644", "x", "sb-1:/x"}, nil, "one-file uploads"},
	} {
		t.Run(tc.name+" "+strings.Join(tc.args, " "), func(t *testing.T) {
			got, err := tc.parse(tc.args)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %#v, %v\nwant %#v", got, err, tc.want)
			}
		})
	}
}

func TestModeString(t *testing.T) {
	for _, tt := range []struct{ typ, mode, want string }{
		{"file", "0644", "-rw-r--r--"}, {"dir", "0755", "drwxr-xr-x"}, {"symlink", "0777", "lrwxrwxrwx"},
		{"file", "4755", "-rwsr-xr-x"}, {"file", "2640", "-rw-r-S---"}, {"dir", "1777", "drwxrwxrwt"}, {"dir", "1776", "drwxrwxrwT"},
		{"other", "0600", "?rw-------"}, {"file", "bad", "?bad"},
	} {
		if got := modeString(tt.typ, tt.mode); got != tt.want {
			t.Errorf("modeString(%s, %s) = %s, want %s", tt.typ, tt.mode, got, tt.want)
		}
	}
}

// ls, stat, mkdir, mv and rm on files, with their output and exit codes.
func TestFileCommands(t *testing.T) {
	r := newRunner(t)
	id := r.srv.AddSandbox(model.StateRunning, true)
	run := func(want int, args ...string) string {
		t.Helper()
		out, stderr, code := r.run("", args...)
		if code != want {
			t.Fatalf("sietch %s: exit %d, want %d: %s", strings.Join(args, " "), code, want, stderr)
		}
		if want != exitOK && (!strings.HasPrefix(stderr, "sietch ") || len(stderr) < 20) {
			t.Errorf("sietch %s: stderr %q does not say what failed", strings.Join(args, " "), stderr)
		}
		return out
	}
	run(exitOK, "mkdir", "-p", "--mode", "0700", id+":/root/proj/src")
	run(exitState, "mkdir", id+":/root/proj/src") // exists: a conflict
	run(exitNotFound, "mkdir", id+":/nope/x")
	if _, stderr, code := r.run("main\n", "cp", "-", id+":/root/proj/src/main.go"); code != exitOK {
		t.Fatalf("cp: %d %s", code, stderr)
	}
	want := "" +
		"MODE        SIZE  MODIFIED (UTC)       NAME\n" +
		"drwx------  4096  2025-01-02 03:04:05  src/\n"
	if out := run(exitOK, "ls", id+":/root/proj"); out != want {
		t.Errorf("ls:\n%s\nwant:\n%s", out, want)
	}
	if out := run(exitOK, "ls", id+":/root/proj/src/main.go"); !strings.Contains(out, "-rw-r--r--  5     2025-01-02 03:04:05  main.go\n") {
		t.Errorf("ls of a file:\n%s", out)
	}
	if out := run(exitOK, "ls", "--json", id+":/root/proj"); !strings.Contains(out, `"entries": [`) || !strings.Contains(out, `"mode": "0700"`) {
		t.Errorf("ls --json:\n%s", out)
	}
	run(exitNotFound, "ls", id+":/missing")
	// Without an argument, ls still lists sandboxes.
	if out := run(exitOK, "ls"); !strings.HasPrefix(out, "ID ") || !strings.Contains(out, id) {
		t.Errorf("ls without arguments:\n%s", out)
	}
	wantStat := "path:     /root/proj/src/main.go\ntype:     file\nsize:     5\nmode:     0644 (-rw-r--r--)\nmodified: 2025-01-02T03:04:05Z\n"
	if out := run(exitOK, "stat", id+":/root/proj/src/main.go"); out != wantStat {
		t.Errorf("stat:\n%s\nwant:\n%s", out, wantStat)
	}
	run(exitUsage, "stat", "main.go")

	run(exitOK, "mv", id+":/root/proj/src/main.go", id+":/root/proj/")
	run(exitNotFound, "stat", id+":/root/proj/src/main.go")
	run(exitOK, "stat", id+":/root/proj/main.go")
	run(exitState, "mv", id+":/root/proj/main.go", id+":/root/proj/src") // onto a directory

	run(exitState, "rm", id+":/root/proj") // not empty
	if out := run(exitOK, "rm", "-r", id+":/root/proj"); out != id+":/root/proj\n" {
		t.Errorf("rm -r printed %q", out)
	}
	run(exitNotFound, "ls", id+":/root/proj")
	// rm of sandboxes is unchanged.
	if out := run(exitOK, "rm", id); out != id+"\n" {
		t.Errorf("rm of a sandbox printed %q", out)
	}
}

// cp -r copies a tree up and down: files, directories, modes; into
// DST/NAME when DST is an existing directory, else as DST.
func TestCpTree(t *testing.T) {
	r := newRunner(t)
	id := r.srv.AddSandbox(model.StateRunning, true)
	src := filepath.Join(t.TempDir(), "proj")
	os.MkdirAll(src+"/src/pkg", 0o755)
	os.Mkdir(src+"/empty", 0o700)
	os.WriteFile(src+"/src/pkg/a.go", []byte("package pkg\n"), 0o644)
	os.WriteFile(src+"/run.sh", []byte("#!/bin/sh\n"), 0o755)
	if _, stderr, code := r.run("", "cp", "-r", src, id+":/root/proj"); code != exitOK {
		t.Fatalf("cp -r up: exit %d: %s", code, stderr)
	}
	out, _, _ := r.run("", "ls", id+":/root/proj")
	if !strings.Contains(out, "src/") || !strings.Contains(out, "-rwxr-xr-x") || !strings.Contains(out, "drwx------") {
		t.Errorf("after cp -r up, ls:\n%s", out)
	}
	// Again, onto the existing directory: lands inside it, under its name.
	if _, stderr, code := r.run("", "cp", "-r", src, id+":/root/proj"); code != exitOK {
		t.Fatalf("cp -r up again: exit %d: %s", code, stderr)
	}
	if _, _, code := r.run("", "stat", id+":/root/proj/proj/run.sh"); code != exitOK {
		t.Errorf("the second copy did not land in /root/proj/proj")
	}

	dst := filepath.Join(t.TempDir(), "back")
	if _, stderr, code := r.run("", "cp", "-r", id+":/root/proj", dst); code != exitOK {
		t.Fatalf("cp -r down: exit %d: %s", code, stderr)
	}
	for p, mode := range map[string]os.FileMode{"src/pkg/a.go": 0o644, "run.sh": 0o755, "empty": 0o700 | os.ModeDir, "proj/src/pkg/a.go": 0o644} {
		fi, err := os.Stat(filepath.Join(dst, p))
		if err != nil || fi.Mode() != mode {
			t.Errorf("%s after cp -r down: %v %v; want mode %v", p, fi, err, mode)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "src/pkg/a.go")); string(b) != "package pkg\n" {
		t.Errorf("a.go holds %q", b)
	}
	// Into an existing local directory: under the sandbox directory's name.
	into := t.TempDir()
	if _, stderr, code := r.run("", "cp", "-r", id+":/root/proj/src", into); code != exitOK {
		t.Fatalf("cp -r down into a directory: exit %d: %s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(into, "src/pkg/a.go")); err != nil {
		t.Errorf("cp -r into an existing directory: %v", err)
	}
	if _, _, code := r.run("", "cp", "-r", id+":/nope", into); code != exitNotFound {
		t.Errorf("cp -r of a missing directory: exit %d", code)
	}
	// Without -r a directory is refused with the way to do it.
	if _, stderr, code := r.run("", "cp", src, id+":/root/x"); code != exitError || !strings.Contains(stderr, "cp -r") {
		t.Errorf("cp of a directory without -r: exit %d: %s", code, stderr)
	}
}

// A sandbox is not trusted: a hostile archive from it writes nothing
// outside the destination, and the CLI says which entry it refused.
func TestCpTreeHostileDownload(t *testing.T) {
	outside := t.TempDir()
	var archive bytes.Buffer
	tw := tar.NewWriter(&archive)
	tw.WriteHeader(&tar.Header{Name: "ok", Typeflag: tar.TypeReg, Size: 2, Mode: 0o644})
	tw.Write([]byte("ok"))
	tw.WriteHeader(&tar.Header{Name: "link", Typeflag: tar.TypeSymlink, Linkname: outside})
	tw.WriteHeader(&tar.Header{Name: "link/pwned", Typeflag: tar.TypeReg, Size: 1, Mode: 0o4755})
	tw.Write([]byte("x"))
	tw.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/sandboxes/sb-1/files/stat":
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"name":"d","type":"dir","size":4096,"mode":"0755","mtime":"2025-01-01T00:00:00Z"}`))
		case "/v1/sandboxes/sb-1/files/tar":
			w.Write(archive.Bytes())
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	r := newRunner(t)
	r.env["SIETCH_ADDR"] = srv.URL
	dst := filepath.Join(t.TempDir(), "d")
	_, stderr, code := r.run("", "cp", "-r", "sb-1:/d", dst)
	if code != exitError || !strings.Contains(stderr, `"link/pwned"`) || !strings.Contains(stderr, "through a symlink") {
		t.Errorf("hostile archive: exit %d: %s", code, stderr)
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Errorf("the archive wrote outside the destination: %v", ents)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "ok")); string(b) != "ok" {
		t.Errorf("the entry before the refused one: %q", b)
	}
}

// syncBuffer is a bytes.Buffer safe to read while a command writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// watch prints one line per event until interrupted, which is a normal end.
func TestWatchCommand(t *testing.T) {
	r := newRunner(t)
	id := r.srv.AddSandbox(model.StateRunning, true)
	r.run("", "mkdir", id+":/w")
	var out, errb syncBuffer
	c := &cli{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(k string) string { return r.env[k] }, now: time.Now}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() { done <- c.run(ctx, []string{"watch", "-r", id + ":/w"}) }()
	// The watch is in place once the command has its headers; until a
	// change shows, keep making them.
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; !strings.Contains(out.String(), "create"); i++ {
		if time.Now().After(deadline) {
			t.Fatalf("no event printed; stdout %q stderr %q", out.String(), errb.String())
		}
		if _, stderr, code := r.run("x", "cp", "-", id+":/w/f"+strings.Repeat("x", i%3)); code != exitOK {
			t.Fatalf("cp: %s", stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.run("", "mkdir", id+":/w/sub")
	for !strings.Contains(out.String(), " /w/sub/\n") {
		if time.Now().After(deadline) {
			t.Fatalf("no event for the new directory: %q", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if code := <-done; code != exitOK {
		t.Errorf("interrupted watch: exit %d: %s", code, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	sort.Strings(lines)
	if want := "2025-01-02T03:04:05.000Z create   /w/f"; !strings.HasPrefix(lines[0], want) {
		t.Errorf("first line %q; want it to start %q", lines[0], want)
	}
	if _, _, code := r.run("", "watch", id+":/nope"); code != exitNotFound {
		t.Errorf("watch of a missing directory: exit %d", code)
	}
}
