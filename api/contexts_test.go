package api

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sietch-vm/sietch/api/client"
	"github.com/sietch-vm/sietch/api/model"
	"github.com/sietch-vm/sietch/sandbox"
	"github.com/sietch-vm/sietch/wire/agentproto"
)

// Code contexts through sietchd and the Go SDK, with the agent (and its
// python and bash) running on the host: state persists between runs,
// events come in order, errors are events, interrupt leaves the context
// usable, and the default context needs no create.
func TestContextsThroughServer(t *testing.T) {
	for _, prog := range []string{"python3", "bash"} {
		if _, err := exec.LookPath(prog); err != nil {
			t.Skipf("%s is not installed here (make deps installs it)", prog)
		}
	}
	_, sock := startAgent(t)
	e := newEnv(t, func(c *sandbox.Config) {
		c.AgentDial = func(string) func(context.Context) (net.Conn, error) { return agentproto.DialUDS(sock, agentproto.Port) }
	})
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	c, err := client.New("unix://"+e.sock, e.token)
	if err != nil {
		t.Fatal(err)
	}
	sb := e.create(model.CreateRequest{Image: "counter"})
	t.Cleanup(func() { e.call("DELETE", "/v1/sandboxes/"+sb.ID, nil, http.StatusNoContent, nil) })

	type result struct {
		out     string
		results []map[string]string
		errs    []model.RunError
		end     model.RunEnd
	}
	run := func(ctxID, code string, timeoutMS int) result {
		t.Helper()
		var r result
		end, err := c.Run(ctx, sb.ID, ctxID, model.RunRequest{Code: code, TimeoutMS: timeoutMS}, func(ev model.RunEvent) error {
			switch {
			case ev.Stdout != "":
				r.out += "out:" + ev.Stdout
			case ev.Stderr != "":
				r.out += "err:" + ev.Stderr
			case ev.Result != nil:
				r.results = append(r.results, ev.Result)
			case ev.Error != nil:
				r.errs = append(r.errs, *ev.Error)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("run %q in %s: %v", code, ctxID, err)
		}
		r.end = end
		return r
	}

	py, err := c.NewContext(ctx, sb.ID, model.ContextRequest{ID: "py", Language: model.LanguagePython})
	if err != nil || py.ID != "py" || py.State != model.ContextIdle || py.PID == 0 {
		t.Fatalf("NewContext: %+v, %v", py, err)
	}
	run("py", "x = 5", 0)
	if r := run("py", "print(x * 2)", 0); r.out != "out:10\n" || r.end.Status != model.RunOK {
		t.Errorf("state across runs: %+v", r)
	}
	r := run("py", "import sys\nprint('a'); sys.stdout.flush()\nprint('b', file=sys.stderr); sys.stderr.flush()\nprint('c')\nx + 1", 0)
	if r.out != "out:a\nerr:b\nout:c\n" || len(r.results) != 1 || r.results[0]["text/plain"] != "6" {
		t.Errorf("order of stdout, stderr and the result: %+v", r)
	}
	r = run("py", "1/0", 0)
	if r.end.Status != model.RunFailed || len(r.errs) != 1 || r.errs[0].Name != "ZeroDivisionError" || !strings.Contains(r.errs[0].Traceback, "ZeroDivisionError") {
		t.Errorf("an exception: %+v", r)
	}
	r = run("py", "while True: pass", 300)
	if r.end.Status != model.RunTimeout {
		t.Errorf("a run past its timeout: %+v", r)
	}
	if r := run("py", "x", 0); len(r.results) != 1 || r.results[0]["text/plain"] != "5" {
		t.Errorf("the context after a timed-out run: %+v", r)
	}

	// Interrupt through its own route while a run is stuck.
	done := make(chan result, 1)
	go func() { done <- run("py", "import time\nwhile True: time.sleep(0.05)", 0) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		cs, err := c.Contexts(ctx, sb.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(cs) == 1 && cs[0].State == model.ContextRunning {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the run never showed as running: %+v", cs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := c.Interrupt(ctx, sb.ID, "py"); err != nil {
		t.Fatal(err)
	}
	if r := <-done; r.end.Status != model.RunInterrupted || len(r.errs) != 1 || r.errs[0].Name != "KeyboardInterrupt" {
		t.Errorf("interrupted run: %+v", r)
	}

	// The default contexts start on first use: python's, and bash's with
	// its cwd and variables kept.
	if r := run(model.DefaultContext, "40 + 2", 0); len(r.results) != 1 || r.results[0]["text/plain"] != "42" {
		t.Errorf("default context: %+v", r)
	}
	run("default-bash", "cd /tmp; N=7", 0)
	if r := run("default-bash", "echo \"$N $(pwd)\"; false", 0); r.out != "out:7 /tmp\n" || r.end.ExitCode == nil || *r.end.ExitCode != 1 {
		t.Errorf("bash context: %+v (exit %v)", r, r.end.ExitCode)
	}

	// Restart loses the state; delete ends the context.
	if c2, err := c.RestartContext(ctx, sb.ID, "py"); err != nil || c2.PID == py.PID {
		t.Errorf("restart: %+v, %v", c2, err)
	}
	if r := run("py", "x", 0); r.end.Status != model.RunFailed || len(r.errs) != 1 || r.errs[0].Name != "NameError" {
		t.Errorf("x after a restart: %+v", r)
	}
	if err := c.DeleteContext(ctx, sb.ID, "py"); err != nil {
		t.Fatal(err)
	}
	var ae *client.Error
	if _, err := c.Run(ctx, sb.ID, "py", model.RunRequest{Code: "1"}, nil); !errors.As(err, &ae) || ae.Status != 404 || ae.Code != model.CodeNotFound {
		t.Errorf("run in a deleted context: %v", err)
	}
	if _, err := c.NewContext(ctx, sb.ID, model.ContextRequest{Language: "cobol"}); !errors.As(err, &ae) || ae.Status != 400 {
		t.Errorf("a context in an unknown language: %v", err)
	}
	if _, err := c.NewContext(ctx, sb.ID, model.ContextRequest{ID: "default-bash", Language: "bash"}); !errors.As(err, &ae) || ae.Status != 409 || ae.Code != model.CodeConflict {
		t.Errorf("a context whose id is taken: %v", err)
	}
}
