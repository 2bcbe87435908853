package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/sietch-vm/sietch/wire/agentproto"
)

// watchWriter collects output and tells a waiter when it contains a string.
type watchWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	want  string
	found chan struct{}
}

func newWatch(want string) *watchWriter {
	return &watchWriter{want: want, found: make(chan struct{})}
}

func (w *watchWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(b)
	if w.want != "" && strings.Contains(w.buf.String(), w.want) {
		w.want = ""
		close(w.found)
	}
	return len(b), nil
}

func (w *watchWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// Output arrives as produced: the process prints, then waits for input
// that the test only sends after it has seen the print. Without streaming
// this would hang until the test's deadline.
func TestExecStreamsBeforeExit(t *testing.T) {
	env := startAgent(t, Config{})
	ctx := testCtx(t)
	stdinR, stdinW := io.Pipe()
	out := newWatch("first\n")
	type result struct {
		res agentproto.ExecResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := env.c.Exec(ctx, agentproto.ExecRequest{Cmd: "sh", Args: []string{"-c", "echo first; read x; echo second $x; exit 3"}}, stdinR, out, nil)
		done <- result{res, err}
	}()
	select {
	case <-out.found:
	case r := <-done:
		t.Fatalf("exec ended (%+v, %v) before its first line was delivered", r.res, r.err)
	case <-ctx.Done():
		t.Fatal("first line never arrived while the process waited for input")
	}
	io.WriteString(stdinW, "hello\n")
	stdinW.Close()
	r := <-done
	if r.err != nil {
		t.Fatalf("Exec: %v", r.err)
	}
	if got := out.String(); got != "first\nsecond hello\n" || r.res.ExitCode != 3 || r.res.Signal != "" {
		t.Fatalf("got output %q, result %+v; want \"first\\nsecond hello\\n\", exit 3", got, r.res)
	}
}

// The brief's print, sleep, print: stdout and stderr each keep their
// order and nothing is lost.
func TestExecPrintSleepPrint(t *testing.T) {
	env := startAgent(t, Config{})
	var stdout, stderr bytes.Buffer
	res, err := env.c.Exec(testCtx(t), agentproto.ExecRequest{Cmd: "sh", Args: []string{"-c", "echo one; sleep 0.2; echo two >&2; sleep 0.2; echo three; echo four >&2"}}, nil, &stdout, &stderr)
	if err != nil {
		t.Fatalf("Exec: %v", err)
	}
	if stdout.String() != "one\nthree\n" || stderr.String() != "two\nfour\n" || res.ExitCode != 0 || res.ID == "" {
		t.Fatalf("stdout %q stderr %q result %+v", stdout.String(), stderr.String(), res)
	}
}

func TestExecExitStatus(t *testing.T) {
	env := startAgent(t, Config{})
	tests := []struct {
		script string
		code   int
		signal string
	}{
		{"true", 0, ""},
		{"exit 1", 1, ""},
		{"exit 42", 42, ""},
		{"exit 255", 255, ""},
		{"kill -9 $$", -1, "SIGKILL"},
		{"kill -TERM $$", -1, "SIGTERM"},
		{"kill -SEGV $$", -1, "SIGSEGV"},
	}
	for _, tt := range tests {
		t.Run(tt.script, func(t *testing.T) {
			res, err := env.c.Exec(testCtx(t), agentproto.ExecRequest{Cmd: "sh", Args: []string{"-c", tt.script}}, nil, nil, nil)
			if err != nil {
				t.Fatalf("Exec: %v", err)
			}
			if res.ExitCode != tt.code || res.Signal != tt.signal || res.TimedOut {
				t.Fatalf("got %+v; want exit %d signal %q", res, tt.code, tt.signal)
			}
		})
	}
}

// A large burst from a process that exits at once arrives whole.
func TestExecQuickExitKeepsOutput(t *testing.T) {
	env := startAgent(t, Config{})
	for i := 0; i < 10; i++ {
		var stdout, stderr bytes.Buffer
		res, err := env.c.Exec(testCtx(t), agentproto.ExecRequest{Cmd: "sh", Args: []string{"-c", "head -c 3000000 /dev/zero | tr '\\0' a; echo err >&2"}}, nil, &stdout, &stderr)
		if err != nil {
			t.Fatalf("Exec: %v", err)
		}
		if stdout.Len() != 3000000 || strings.Trim(stdout.String(), "a") != "" || stderr.String() != "err\n" || res.ExitCode != 0 {
			t.Fatalf("run %d: got %d bytes of stdout, stderr %q, %+v", i, stdout.Len(), stderr.String(), res)
		}
	}
}

// A timeout kills the whole process group, background children too.
func TestExecTimeoutKillsGroup(t *testing.T) {
	env := startAgent(t, Config{})
	var stdout bytes.Buffer
	res, err := env.c.Exec(testCtx(t), agentproto.ExecRequest{Cmd: "sh", Args: []string{"-c", "sleep 60 & echo $!; wait"}, TimeoutMS: 300}, nil, &stdout, nil)
	if err != nil {
		t.Fatalf("Exec: %v", err)
	}
	if !res.TimedOut || res.Signal != "SIGKILL" || res.ExitCode != -1 {
		t.Fatalf("got %+v; want timed out by SIGKILL", res)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(stdout.String()))
	if err != nil {
		t.Fatalf("background pid: %q", stdout.String())
	}
	waitDead(t, pid)
}

// waitDead polls until pid is gone or a zombie: a killed process closes
// its pipes a moment before it becomes a zombie.
func waitDead(t *testing.T, pid int) {
	t.Helper()
	for i := 0; alive(pid); i++ {
		if i > 1000 {
			t.Fatalf("process %d still runs", pid)
		}
		sleepBriefly()
	}
}

// alive reports whether pid runs (a zombie does not).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func TestExecStdin(t *testing.T) {
	env := startAgent(t, Config{})
	in := make([]byte, 3<<20)
	rand.NewChaCha8([32]byte{1}).Read(in)
	var out bytes.Buffer
	res, err := env.c.Exec(testCtx(t), agentproto.ExecRequest{Cmd: "cat"}, bytes.NewReader(in), &out, nil)
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("Exec: %+v, %v", res, err)
	}
	if sha(out.Bytes()) != sha(in) {
		t.Fatalf("cat returned %d bytes that differ from the %d sent", out.Len(), len(in))
	}
	// Without stdin the process reads /dev/null, not the agent's stdin.
	out.Reset()
	res, err = env.c.Exec(testCtx(t), agentproto.ExecRequest{Cmd: "wc", Args: []string{"-c"}}, nil, &out, nil)
	if err != nil || strings.TrimSpace(out.String()) != "0" {
		t.Fatalf("wc -c without stdin: %q %+v %v", out.String(), res, err)
	}
}

func TestExecEnvCwdUser(t *testing.T) {
	env := startAgent(t, Config{Env: []string{"PATH=" + os.Getenv("PATH"), "BASE=1", "OVER=base"}})
	var out bytes.Buffer
	res, err := env.c.Exec(testCtx(t), agentproto.ExecRequest{Cmd: "sh", Args: []string{"-c", "echo $BASE $OVER $NEW; pwd"}, Env: map[string]string{"OVER": "req", "NEW": "x y"}, Cwd: "/tmp"}, nil, &out, nil)
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("Exec: %+v %v", res, err)
	}
	if out.String() != "1 req x y\n/tmp\n" {
		t.Fatalf("got %q", out.String())
	}
	out.Reset()
	if _, err := env.c.Exec(testCtx(t), agentproto.ExecRequest{Cmd: "pwd"}, nil, &out, nil); err != nil || out.String() != env.root+"\n" {
		t.Fatalf("default cwd: %q %v; want the root %s", out.String(), err, env.root)
	}
	if os.Geteuid() != 0 {
		t.Skip("switching users needs root")
	}
	for _, user := range []string{"nobody", "65534"} {
		out.Reset()
		res, err = env.c.Exec(testCtx(t), agentproto.ExecRequest{Cmd: "sh", Args: []string{"-c", "id -u; id -G"}, User: user, Cwd: "/tmp"}, nil, &out, nil)
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("user %s: %+v %v", user, res, err)
		}
		if f := strings.Fields(out.String()); len(f) < 2 || f[0] != "65534" || strings.Contains(out.String(), " 0 ") || f[1] == "0" {
			t.Fatalf("user %s: id printed %q; want uid 65534 without root's groups", user, out.String())
		}
	}
}

func TestExecStartErrors(t *testing.T) {
	env := startAgent(t, Config{})
	file := env.root + "/f"
	os.WriteFile(file, []byte("x"), 0o644)
	os.WriteFile(env.root+"/noexec", []byte("#!/bin/sh\n"), 0o644)
	tests := []struct {
		name   string
		req    agentproto.ExecRequest
		status int
	}{
		{"no such command", agentproto.ExecRequest{Cmd: "no-such-command-sietch"}, 404},
		{"no such path", agentproto.ExecRequest{Cmd: "/no/such/bin"}, 404},
		{"not executable", agentproto.ExecRequest{Cmd: env.root + "/noexec"}, 403},
		{"directory", agentproto.ExecRequest{Cmd: "/tmp"}, 400},
		{"missing cwd", agentproto.ExecRequest{Cmd: "true", Cwd: "/no/such/dir"}, 400},
		{"cwd is a file", agentproto.ExecRequest{Cmd: "true", Cwd: file}, 400},
		{"relative cwd", agentproto.ExecRequest{Cmd: "true", Cwd: "tmp"}, 400},
		{"unknown user", agentproto.ExecRequest{Cmd: "true", User: "no-such-user-sietch"}, 400},
		{"bad id", agentproto.ExecRequest{Cmd: "true", ID: "a/b"}, 400},
		{"bad tty", agentproto.ExecRequest{Cmd: "true", TTY: &agentproto.TTYSize{Rows: 0, Cols: 80}}, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := env.c.Exec(testCtx(t), tt.req, nil, nil, nil)
			var e *Error
			if !errors.As(err, &e) || e.Status != tt.status || e.Message == "" {
				t.Fatalf("got %v; want a %d error with a reason", err, tt.status)
			}
		})
	}
}

func TestExecDuplicateID(t *testing.T) {
	env := startAgent(t, Config{})
	ctx := testCtx(t)
	out := newWatch("up")
	done := make(chan error, 1)
	go func() {
		_, err := env.c.Exec(ctx, agentproto.ExecRequest{ID: "dup", Cmd: "sh", Args: []string{"-c", "echo up; sleep 60"}, TimeoutMS: 30000}, nil, out, nil)
		done <- err
	}()
	<-out.found
	_, err := env.c.Exec(ctx, agentproto.ExecRequest{ID: "dup", Cmd: "true"}, nil, nil, nil)
	var e *Error
	if !errors.As(err, &e) || e.Status != http.StatusConflict {
		t.Fatalf("second exec with id dup: %v; want 409", err)
	}
	if err := env.c.Signal(ctx, "dup", "KILL"); err != nil {
		t.Fatalf("Signal: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("first exec: %v", err)
	}
}

// A PTY: stty sees the size, a resize reaches it, a signal ends it.
func TestExecPTYResizeSignal(t *testing.T) {
	env := startAgent(t, Config{})
	ctx := testCtx(t)
	stdinR, stdinW := io.Pipe()
	out := newWatch("24 80")
	done := make(chan error, 1)
	var res agentproto.ExecResult
	go func() {
		var err error
		res, err = env.c.Exec(ctx, agentproto.ExecRequest{ID: "tty1", Cmd: "sh", Args: []string{"-c", "stty size; read x; stty size; test -t 0 && echo tty"}, TTY: &agentproto.TTYSize{Rows: 24, Cols: 80}}, stdinR, out, nil)
		done <- err
	}()
	<-out.found
	if err := env.c.Resize(ctx, "tty1", 40, 132); err != nil {
		t.Fatalf("Resize: %v", err)
	}
	io.WriteString(stdinW, "\n")
	stdinW.Close()
	if err := <-done; err != nil {
		t.Fatalf("Exec: %v", err)
	}
	if got := strings.ReplaceAll(out.String(), "\r", ""); !strings.Contains(got, "24 80\n") || !strings.Contains(got, "40 132\n") || !strings.Contains(got, "tty\n") || res.ExitCode != 0 {
		t.Fatalf("output %q, %+v; want sizes 24 80 then 40 132 on a tty", got, res)
	}

	out = newWatch("ready")
	go func() {
		var err error
		res, err = env.c.Exec(ctx, agentproto.ExecRequest{ID: "tty2", Cmd: "sh", Args: []string{"-c", "trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.05; done"}, TTY: &agentproto.TTYSize{Rows: 10, Cols: 40}}, nil, out, nil)
		done <- err
	}()
	<-out.found
	if err := env.c.Signal(ctx, "tty2", "SIGTERM"); err != nil {
		t.Fatalf("Signal: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Exec: %v", err)
	}
	if !strings.Contains(out.String(), "got-term") || res.ExitCode != 7 {
		t.Fatalf("output %q, %+v; want the trap's got-term and exit 7", out.String(), res)
	}
}

// Signal without a PTY; Resize of a pipe exec is refused.
func TestExecSignalPipes(t *testing.T) {
	env := startAgent(t, Config{})
	ctx := testCtx(t)
	out := newWatch("ready")
	done := make(chan error, 1)
	var res agentproto.ExecResult
	go func() {
		var err error
		res, err = env.c.Exec(ctx, agentproto.ExecRequest{ID: "p1", Cmd: "sh", Args: []string{"-c", "echo ready; exec sleep 60"}}, nil, out, nil)
		done <- err
	}()
	<-out.found
	var e *Error
	if err := env.c.Resize(ctx, "p1", 10, 10); !errors.As(err, &e) || e.Status != http.StatusConflict {
		t.Fatalf("Resize without a tty: %v; want 409", err)
	}
	if err := env.c.Signal(ctx, "p1", "15"); err != nil {
		t.Fatalf("Signal: %v", err)
	}
	if err := <-done; err != nil || res.Signal != "SIGTERM" {
		t.Fatalf("Exec: %+v %v; want ended by SIGTERM", res, err)
	}
	if err := env.c.Signal(ctx, "p1", "SIGTERM"); !errors.As(err, &e) || e.Status != http.StatusNotFound {
		t.Fatalf("Signal after the end: %v; want 404", err)
	}
}

func TestExecConcurrent(t *testing.T) {
	env := startAgent(t, Config{})
	ctx := testCtx(t)
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out bytes.Buffer
			res, err := env.c.Exec(ctx, agentproto.ExecRequest{Cmd: "sh", Args: []string{"-c", "echo start $0; sleep 0.3; echo end $0; exit $(($0 % 7))", strconv.Itoa(i)}}, nil, &out, nil)
			want := fmt.Sprintf("start %d\nend %d\n", i, i)
			if err != nil || out.String() != want || res.ExitCode != i%7 {
				errs <- fmt.Errorf("exec %d: output %q, %+v, %v", i, out.String(), res, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// Cancelling the client's context kills the process.
func TestExecCancelKills(t *testing.T) {
	env := startAgent(t, Config{})
	ctx := testCtx(t)
	out := newWatch("\n")
	ctx2, cancel := contextWithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := env.c.Exec(ctx2, agentproto.ExecRequest{Cmd: "sh", Args: []string{"-c", "echo $$; exec sleep 60"}}, nil, out, nil)
		done <- err
	}()
	<-out.found
	pid, _ := strconv.Atoi(strings.TrimSpace(out.String()))
	cancel()
	if err := <-done; err == nil {
		t.Fatal("Exec returned no error after cancel")
	}
	waitDead(t, pid)
}

// A background child that keeps the output pipes open does not keep the
// exec from ending (it would outlive the test's deadline).
func TestExecBackgroundChildDoesNotHold(t *testing.T) {
	env := startAgent(t, Config{})
	var out bytes.Buffer
	res, err := env.c.Exec(testCtx(t), agentproto.ExecRequest{Cmd: "sh", Args: []string{"-c", "sleep 120 & echo $!"}}, nil, &out, nil)
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("Exec: %+v %v", res, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(out.String()))
	if err != nil {
		t.Fatalf("output %q", out.String())
	}
	syscallKill(pid)
}

// Close kills running execs.
func TestCloseKillsExecs(t *testing.T) {
	env := startAgent(t, Config{})
	out := newWatch("\n")
	done := make(chan error, 1)
	go func() {
		_, err := env.c.Exec(testCtx(t), agentproto.ExecRequest{Cmd: "sh", Args: []string{"-c", "echo $$; exec sleep 60"}}, nil, out, nil)
		done <- err
	}()
	<-out.found
	pid, _ := strconv.Atoi(strings.TrimSpace(out.String()))
	env.a.Close()
	if err := <-done; err == nil {
		t.Fatal("Exec succeeded though the agent closed")
	}
	waitDead(t, pid)
}
