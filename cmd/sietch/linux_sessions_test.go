package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// e2eCLI runs the sietch CLI against the end-to-end test's sietchd.
type e2eCLI struct {
	t      *testing.T
	ctx    context.Context
	cli    string   // the sietch binary
	env    []string // its environment (SIETCH_STATE_DIR)
	dir    string   // scratch directory
	sietch func(stdin []byte, args ...string) (string, string, int)
	must   func(args ...string) string
}

// sessions drives the ways an agent works in one Linux sandbox made from
// the template: code contexts warm from the template, an interactive
// shell on a terminal, stdin streamed into a command, background
// processes, and directory trees and watches through the files API.
func (e *e2eCLI) sessions(id string) {
	t := e.t
	// State persists between runs of the warm python context.
	e.must("run", id, "x = 5")
	if out := e.must("run", id, "print(x * 2)"); out != "10" {
		t.Errorf("run print(x * 2) after x = 5: %q; want 10", out)
	}
	// A rich result: the last expression's PNG, saved by --save.
	png := filepath.Join(e.dir, "results")
	os.MkdirAll(png, 0o755)
	out, errOut, code := e.sietch([]byte(pngCell), "run", "--save", png, id, "-")
	if b, err := os.ReadFile(filepath.Join(png, "result-1.png")); code != 0 || err != nil || !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) || !strings.Contains(out, "Dot()") {
		t.Errorf("run of a cell ending in an object with _repr_png_: exit %d, %q (stderr %q), saved %d bytes (%v); want its text and a PNG file", code, out, errOut, len(b), err)
	}
	// stdout and stderr arrive as separate events, in the order written.
	out = e.must("run", "--json", id, "import sys\nprint('one')\nprint('two', file=sys.stderr)\nprint('three')")
	var seq []string
	for line := range strings.Lines(out) {
		var ev struct{ Stdout, Stderr string }
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("run --json line %q: %v", line, err)
		}
		if s := ev.Stdout + ev.Stderr; s != "" {
			kind := "out"
			if ev.Stderr != "" {
				kind = "err"
			}
			seq = append(seq, kind+":"+strings.TrimSpace(s))
		}
	}
	if got := strings.Join(seq, " "); got != "out:one err:two out:three" {
		t.Errorf("run --json events: %s; want out:one err:two out:three", got)
	}
	// A run that does not end is interrupted at --timeout; the context
	// keeps its state.
	if _, errOut, code := e.sietch(nil, "run", "--timeout", "3s", id, "while True: pass"); code != exitTimedOut {
		t.Errorf("run --timeout 3s of an endless loop: exit %d, stderr %q; want %d", code, errOut, exitTimedOut)
	}
	if out := e.must("run", id, "print(x)"); out != "5" {
		t.Errorf("run print(x) after the interrupt: %q; want 5", out)
	}
	// The bash context keeps its directory and variables.
	e.must("run", "--lang", "bash", id, "cd /tmp && export V=7")
	if out := e.must("run", "--lang", "bash", id, "echo $PWD $V"); out != "/tmp 7" {
		t.Errorf("bash context: %q; want /tmp 7", out)
	}

	// stdin of any size streams into a command.
	in := make([]byte, 1<<20)
	rand.Read(in)
	out, errOut, code = e.sietch(in, "exec", id, "--", "sha256sum")
	if want := fmt.Sprintf("%x", sha256Sum(in)); code != 0 || !strings.HasPrefix(out, want) {
		t.Errorf("1 MiB piped into sha256sum: exit %d, %q (stderr %q); want %s", code, out, errOut, want)
	}

	// Background processes: the template's start command survived the
	// snapshot; a new one's output is there before and after it ends.
	proc := e.must("exec", "-d", id, "--", "sh", "-c", "echo begun; sleep 4; echo ended; exit 3")
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		if out := e.must("logs", id, proc); out == "begun" {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("logs of %s: %q a minute on; want begun", proc, out)
		}
	}
	ps := e.must("ps", id)
	if !strings.Contains(ps, proc) || !strings.Contains(ps, "python3") {
		t.Errorf("sietch ps lacks %s or the template's start command (python3):\n%s", proc, ps)
	}
	if out, _, code := e.sietch(nil, "logs", "-f", id, proc); out != "begun\nended\n" || code != 0 {
		t.Errorf("logs -f: exit %d, %q; want begun and ended", code, out)
	}
	if out, _, code := e.sietch(nil, "wait", id, proc); code != 3 {
		t.Errorf("wait for %s: exit %d (%q); want its status 3", proc, code, out)
	}

	e.shell(id)
	e.trees(id)
}

// pngCell ends in an object that shows itself as a PNG: one red pixel,
// made with the standard library.
const pngCell = `import struct, zlib
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
class Dot:
    def __repr__(self):
        return "Dot()"
    def _repr_png_(self):
        ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
        return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + chunk(b"IEND", b"")
Dot()
`

// shell drives `sietch shell` on a real terminal (tmux): a command's
// output, a window resize the shell sees, Ctrl-C ending a foreground
// command but not the shell, and the shell's exit status.
func (e *e2eCLI) shell(id string) {
	t := e.t
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Errorf("tmux is missing (make deps installs it): the shell test needs a terminal")
		return
	}
	sock := filepath.Join(e.dir, "tmux.sock")
	rc := filepath.Join(e.dir, "shell.rc")
	tmux := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(e.ctx, "tmux", append([]string{"-S", sock}, args...)...)
		cmd.Env = e.env
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %s: %v\n%s", strings.Join(args, " "), err, b)
		}
		return string(b)
	}
	tmux("new-session", "-d", "-s", "e2e", "-x", "100", "-y", "30",
		fmt.Sprintf("%s shell %s; echo $? > %s; sleep 60", e.cli, id, rc))
	defer exec.Command("tmux", "-S", sock, "kill-server").Run()
	// screen waits until the pane shows a line equal to want.
	screen := func(want, what string) string {
		t.Helper()
		for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(250 * time.Millisecond) {
			s := tmux("capture-pane", "-p", "-t", "e2e")
			for line := range strings.Lines(s) {
				if strings.TrimSpace(line) == want {
					return s
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: no line %q on the terminal after 90s:\n%s", what, want, s)
			}
		}
	}
	tmux("send-keys", "-t", "e2e", "echo $((6*7))", "Enter")
	screen("42", "a command in sietch shell")
	tmux("resize-window", "-t", "e2e", "-x", "120", "-y", "40")
	tmux("send-keys", "-t", "e2e", "stty size", "Enter")
	screen("40 120", "stty size after the window grew")
	tmux("send-keys", "-t", "e2e", "sleep 100 && echo $((900+99))", "Enter")
	time.Sleep(3 * time.Second)
	tmux("send-keys", "-t", "e2e", "C-c")
	tmux("send-keys", "-t", "e2e", "echo $((1000+337))", "Enter")
	s := screen("1337", "the shell after Ctrl-C")
	if strings.Contains(s, "999") {
		t.Errorf("Ctrl-C did not stop sleep 100 && echo 999:\n%s", s)
	}
	tmux("send-keys", "-t", "e2e", "exit 3", "Enter")
	// As generous as the screens above: a guest on a loaded host of this
	// kind takes its time.
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		if b, err := os.ReadFile(rc); err == nil && len(b) > 0 {
			if got := strings.TrimSpace(string(b)); got != "3" {
				t.Errorf("sietch shell exited %s after exit 3; want 3", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sietch shell did not exit 3 minutes after exit 3:\n%s", tmux("capture-pane", "-p", "-t", "e2e"))
		}
	}
}

// trees copies a directory tree in and out (files, modes, a symlink) and
// watches a directory change.
func (e *e2eCLI) trees(id string) {
	t := e.t
	src := filepath.Join(e.dir, "tree")
	os.MkdirAll(filepath.Join(src, "bin"), 0o755)
	os.WriteFile(filepath.Join(src, "bin", "run.sh"), []byte("#!/bin/sh\necho ran\n"), 0o755)
	os.WriteFile(filepath.Join(src, "secret"), []byte("s3cret"), 0o600)
	os.Symlink("bin/run.sh", filepath.Join(src, "link"))
	e.must("cp", "-r", src, id+":/root/tree")
	if out := e.must("exec", id, "--", "sh", "-c", "/root/tree/link; stat -c '%a %n' /root/tree/secret /root/tree/bin/run.sh"); out != "ran\n600 /root/tree/secret\n755 /root/tree/bin/run.sh" {
		t.Errorf("the tree copied in: %q; want the script run through the link and modes 600, 755", out)
	}
	back := filepath.Join(e.dir, "back")
	e.must("cp", "-r", id+":/root/tree", back)
	if fi, err := os.Stat(filepath.Join(back, "secret")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the tree copied back: secret %v, %v; want mode 0600", fi, err)
	}
	if l, err := os.Readlink(filepath.Join(back, "link")); err != nil || l != "bin/run.sh" {
		t.Errorf("the tree copied back: link -> %q, %v", l, err)
	}

	var events lockedBuffer
	w := exec.CommandContext(e.ctx, e.cli, "watch", id+":/root/tree")
	w.Env, w.Stdout, w.Stderr = e.env, &events, &events
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { w.Process.Kill(); w.Wait() }()
	time.Sleep(2 * time.Second) // the watch is up before the guest changes the tree
	e.must("exec", id, "--", "sh", "-c", "echo hi > /root/tree/new; rm /root/tree/secret")
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		s := events.String()
		if strings.Contains(s, "create") && strings.Contains(s, "/root/tree/new") && strings.Contains(s, "remove") && strings.Contains(s, "/root/tree/secret") {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("sietch watch printed %q; want a create of new and a remove of secret", s)
			break
		}
	}
}
