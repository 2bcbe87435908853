package agent

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sietch-vm/sietch/wire/agentproto"
)

// runResult is a run read to its end.
type runResult struct {
	stdout, stderr string
	results        []map[string]string
	errs           []agentproto.RunError
	order          []string // "out", "err", "result", "error"
	end            agentproto.RunEnd
}

func run(t *testing.T, env *testEnv, id, code string, timeout time.Duration) runResult {
	t.Helper()
	var r runResult
	end, err := env.c.Run(testCtx(t), id, agentproto.RunRequest{Code: code, TimeoutMS: timeout.Milliseconds()}, func(ev agentproto.RunEvent) error {
		switch {
		case ev.Stdout != "":
			r.stdout += ev.Stdout
			r.order = append(r.order, "out")
		case ev.Stderr != "":
			r.stderr += ev.Stderr
			r.order = append(r.order, "err")
		case ev.Result != nil:
			r.results = append(r.results, ev.Result)
			r.order = append(r.order, "result")
		case ev.Error != nil:
			r.errs = append(r.errs, *ev.Error)
			r.order = append(r.order, "error")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("run %q: %v", code, err)
	}
	r.end = end
	return r
}

func need(t *testing.T, prog string) {
	t.Helper()
	if _, err := exec.LookPath(prog); err != nil {
		t.Skipf("%s is not installed here", prog)
	}
}

// A python context keeps its state, streams output in order, returns the
// last expression's value with its richer representations, reports
// exceptions, survives an interrupt, and times a runaway run out.
func TestPythonContext(t *testing.T) {
	need(t, "python3")
	env := startAgent(t, Config{})
	ctx := testCtx(t)
	c, err := env.c.NewContext(ctx, agentproto.ContextRequest{ID: "py", Language: "python"})
	if err != nil || c.State != agentproto.ContextIdle || c.PID <= 0 {
		t.Fatalf("NewContext: %+v %v", c, err)
	}
	if r := run(t, env, "py", "x = 5", 0); r.end.Status != agentproto.RunOK || r.stdout != "" || len(r.results) != 0 {
		t.Errorf("x = 5: %+v", r)
	}
	r := run(t, env, "py", "import sys\nprint(x * 2)\nprint('warn', file=sys.stderr)\nprint('after')\nx + 1", 0)
	if r.stdout != "10\nafter\n" || r.stderr != "warn\n" || strings.Join(r.order, ",") != "out,err,out,result" ||
		len(r.results) != 1 || r.results[0]["text/plain"] != "6" || r.end.ExecutionCount != 2 {
		t.Errorf("state, order and result: %+v", r)
	}
	// A PNG drawn with the standard library comes back as image/png.
	r = run(t, env, "py", `
import struct, zlib
class Dot:
    def _repr_png_(self):
        raw = b"\x00\xff\x00\x00"
        chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
        return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    def _repr_html_(self):
        return "<b>dot</b>"
Dot()`, 0)
	png, _ := base64.StdEncoding.DecodeString(r.results[0]["image/png"])
	if len(r.results) != 1 || !strings.HasPrefix(string(png), "\x89PNG") || r.results[0]["text/html"] != "<b>dot</b>" {
		t.Errorf("rich result: %+v", r.results)
	}
	r = run(t, env, "py", "def f():\n    raise ValueError('bad value')\nf()", 0)
	if r.end.Status != agentproto.RunFailed || len(r.errs) != 1 || r.errs[0].Name != "ValueError" || r.errs[0].Value != "bad value" ||
		!strings.Contains(r.errs[0].Traceback, "line 2, in f") || strings.Contains(r.errs[0].Traceback, "python.py") {
		t.Errorf("exception: %+v", r)
	}
	// Subprocess output reaches the run too.
	if r = run(t, env, "py", "import os\nos.system('echo from-a-child')", 0); !strings.Contains(r.stdout, "from-a-child") {
		t.Errorf("a subprocess's output: %+v", r)
	}

	// Interrupt a busy loop: the context survives with its state.
	done := make(chan runResult)
	go func() { done <- run(t, env, "py", "while True:\n    pass", 0) }()
	waitFor(t, func() bool {
		cs, _ := env.c.Contexts(ctx)
		return len(cs) == 1 && cs[0].State == agentproto.ContextRunning
	})
	time.Sleep(100 * time.Millisecond)
	if err := env.c.Interrupt(ctx, "py"); err != nil {
		t.Fatal(err)
	}
	if r := <-done; r.end.Status != agentproto.RunInterrupted || len(r.errs) != 1 || r.errs[0].Name != "KeyboardInterrupt" {
		t.Errorf("interrupted run: %+v", r)
	}
	if r := run(t, env, "py", "x", 0); len(r.results) != 1 || r.results[0]["text/plain"] != "5" {
		t.Errorf("state after the interrupt: %+v", r)
	}
	if r := run(t, env, "py", "import time\ntime.sleep(30)", 300*time.Millisecond); r.end.Status != agentproto.RunTimeout {
		t.Errorf("a run past its timeout: %+v", r)
	}

	// A context whose interpreter exits is dead until restarted, state gone.
	r = run(t, env, "py", "import os\nos._exit(3)", 0)
	if len(r.errs) != 1 || r.errs[0].Name != "ContextDied" {
		t.Errorf("run that killed its interpreter: %+v", r)
	}
	if cs, _ := env.c.Contexts(ctx); cs[0].State != agentproto.ContextDead || !strings.Contains(cs[0].Reason, "status 3") {
		t.Errorf("dead context: %+v", cs)
	}
	if r = run(t, env, "py", "1", 0); len(r.errs) != 1 || r.errs[0].Name != "ContextDied" {
		t.Errorf("run in a dead context: %+v", r)
	}
	if c, err := env.c.Restart(ctx, "py"); err != nil || c.State != agentproto.ContextIdle {
		t.Fatalf("Restart: %+v %v", c, err)
	}
	if r = run(t, env, "py", "'x' in globals()", 0); r.results[0]["text/plain"] != "False" {
		t.Errorf("state after a restart: %+v", r)
	}
	if err := env.c.DeleteContext(ctx, "py"); err != nil {
		t.Fatal(err)
	}
	var ae *Error
	if _, err := env.c.Run(ctx, "py", agentproto.RunRequest{Code: "1"}, nil); !errors.As(err, &ae) || ae.Status != http.StatusNotFound {
		t.Errorf("run in a deleted context: %v", err)
	}
}

// The default context starts on first use, once.
func TestDefaultContext(t *testing.T) {
	need(t, "python3")
	env := startAgent(t, Config{})
	if r := run(t, env, agentproto.DefaultContext, "y = 'hi'", 0); r.end.Status != agentproto.RunOK {
		t.Fatalf("first run in the default context: %+v", r)
	}
	if r := run(t, env, agentproto.DefaultContext, "y", 0); r.results[0]["text/plain"] != "'hi'" {
		t.Errorf("second run: %+v", r)
	}
	if cs, _ := env.c.Contexts(testCtx(t)); len(cs) != 1 || cs[0].ID != "default" || cs[0].Language != "python" {
		t.Errorf("contexts: %+v", cs)
	}
	// Each language has a default context of its own.
	if r := run(t, env, agentproto.DefaultContextFor(agentproto.LanguageBash), "echo $((6*7))", 0); r.stdout != "42\n" {
		t.Errorf("run in default-bash: %+v", r)
	}
	if cs, _ := env.c.Contexts(testCtx(t)); len(cs) != 2 || cs[1].ID != "default-bash" || cs[1].Language != "bash" {
		t.Errorf("contexts: %+v", cs)
	}
}

// A bash context keeps cd and variables; a failing command reports its
// status; an interrupted sleep leaves the shell alive.
func TestBashContext(t *testing.T) {
	need(t, "bash")
	env := startAgent(t, Config{})
	ctx := testCtx(t)
	if _, err := env.c.NewContext(ctx, agentproto.ContextRequest{ID: "sh", Language: "bash", Cwd: "/"}); err != nil {
		t.Fatal(err)
	}
	run(t, env, "sh", "cd /tmp\nGREETING='it'\"'\"'s me'", 0)
	if r := run(t, env, "sh", "echo \"$GREETING in $(pwd)\"; echo oops >&2", 0); r.stdout != "it's me in /tmp\n" || r.stderr != "oops\n" || r.end.Status != agentproto.RunOK {
		t.Errorf("state kept: %+v", r)
	}
	if r := run(t, env, "sh", "false", 0); r.end.Status != agentproto.RunFailed || r.end.ExitCode == nil || *r.end.ExitCode != 1 {
		t.Errorf("a failing command: %+v", r.end)
	}
	if r := run(t, env, "sh", "cat", 0); r.end.Status != agentproto.RunOK {
		t.Errorf("code cannot read the shell's requests: %+v", r) // stdin is /dev/null
	}
	done := make(chan runResult)
	go func() { done <- run(t, env, "sh", "sleep 100", 0) }()
	waitFor(t, func() bool { cs, _ := env.c.Contexts(ctx); return cs[0].State == agentproto.ContextRunning })
	time.Sleep(200 * time.Millisecond)
	env.c.Interrupt(ctx, "sh")
	select {
	case r := <-done:
		if r.end.Status != agentproto.RunInterrupted {
			t.Errorf("interrupted sleep: %+v", r.end)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the interrupt did not end sleep 100")
	}
	if r := run(t, env, "sh", "echo $GREETING", 0); r.stdout != "it's me\n" {
		t.Errorf("the shell after the interrupt: %+v", r)
	}
}

func TestNodeContext(t *testing.T) {
	need(t, "node")
	env := startAgent(t, Config{})
	ctx := testCtx(t)
	if _, err := env.c.NewContext(ctx, agentproto.ContextRequest{ID: "js", Language: "node"}); err != nil {
		t.Fatal(err)
	}
	run(t, env, "js", "let n = 20", 0)
	if r := run(t, env, "js", "console.log('n is', n); n + 22", 0); r.stdout != "n is 20\n" || r.results[0]["text/plain"] != "42" {
		t.Errorf("node state and result: %+v", r)
	}
	if r := run(t, env, "js", "null.x", 0); len(r.errs) != 1 || r.errs[0].Name != "TypeError" || strings.Contains(r.errs[0].Traceback, "node.js") {
		t.Errorf("node error: %+v", r)
	}
}

func TestContextRequestsRefused(t *testing.T) {
	env := startAgent(t, Config{})
	ctx := context.Background()
	var ae *Error
	for _, req := range []agentproto.ContextRequest{
		{Language: "cobol"}, {ID: "../x"}, {Env: map[string]string{"A=B": "c"}}, {Cwd: "/no/such/dir"},
	} {
		if _, err := env.c.NewContext(ctx, req); !errors.As(err, &ae) || ae.Status/100 != 4 {
			t.Errorf("%+v: %v; want a 4xx", req, err)
		}
	}
}

// An interrupt is never lost and never leaks: one sent the moment a run
// starts (before the driver reads the code) still stops it, and one sent
// between runs does not touch the next.
func TestInterruptRaces(t *testing.T) {
	need(t, "python3")
	env := startAgent(t, Config{})
	ctx := testCtx(t)
	if _, err := env.c.NewContext(ctx, agentproto.ContextRequest{ID: "py", Language: "python"}); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		done := make(chan runResult, 1)
		go func() { done <- run(t, env, "py", "import time\nwhile True: time.sleep(0.05)", 0) }()
		for {
			cs, err := env.c.Contexts(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if cs[0].State == agentproto.ContextRunning {
				break
			}
		}
		if err := env.c.Interrupt(ctx, "py"); err != nil {
			t.Fatal(err)
		}
		select {
		case r := <-done:
			if r.end.Status != agentproto.RunInterrupted {
				t.Fatalf("run %d: %+v", i, r)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("run %d: the interrupt was lost", i)
		}
		if err := env.c.Interrupt(ctx, "py"); err != nil { // idle now: interrupts nothing
			t.Fatal(err)
		}
		if r := run(t, env, "py", "6 * 7", 0); r.end.Status != agentproto.RunOK || r.results[0]["text/plain"] != "42" {
			t.Fatalf("run after %d interrupts: %+v", i, r)
		}
	}
}
