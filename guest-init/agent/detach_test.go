package agent

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sietch-vm/sietch/wire/agentproto"
)

// output collects a detached process's output as Output hands it over.
type output struct {
	stdout, stderr string
	dropped        int64
	exit           *agentproto.ExecEvent
}

func readOutput(t *testing.T, env *testEnv, id string, follow bool) output {
	t.Helper()
	var o output
	err := env.c.Output(testCtx(t), id, 0, follow, func(ev agentproto.ExecEvent) error {
		switch {
		case len(ev.Stdout) > 0:
			o.stdout += string(ev.Stdout)
		case len(ev.Stderr) > 0:
			o.stderr += string(ev.Stderr)
		case ev.Dropped > 0:
			o.dropped += ev.Dropped
		case ev.ExitCode != nil || ev.Signal != "":
			o.exit = &ev
		}
		return nil
	})
	if err != nil {
		t.Fatalf("output of %s: %v", id, err)
	}
	return o
}

// A detached process runs on after its request; its output is there from
// the start for a reader that comes later, and a follower sees the rest
// and the exit; it is listed until deleted.
func TestDetachedProcess(t *testing.T) {
	env := startAgent(t, Config{})
	ctx := testCtx(t)
	gate := filepath.Join(t.TempDir(), "gate")
	st, err := env.c.StartDetached(ctx, agentproto.ExecRequest{ID: "job", Cmd: "sh", Args: []string{"-c",
		`echo first; echo oops >&2; while [ ! -e "$GATE" ]; do sleep 0.02; done; echo last; exit 3`},
		Env: map[string]string{"GATE": gate}})
	if err != nil || st.ID != "job" || st.PID <= 0 {
		t.Fatalf("start: %+v, %v", st, err)
	}
	// Attach after the output began: it is all there, from the start.
	waitFor(t, func() bool {
		o := readOutput(t, env, "job", false)
		return o.stdout == "first\n" && o.stderr == "oops\n"
	})
	ps, err := env.c.Processes(ctx)
	if err != nil || len(ps) != 1 || ps[0].ID != "job" || ps[0].State != agentproto.ProcessRunning || !ps[0].Detached || ps[0].Cmd != "sh" {
		t.Fatalf("processes: %+v, %v", ps, err)
	}
	follow := make(chan output, 1)
	go func() { follow <- readOutput(t, env, "job", true) }()
	os.WriteFile(gate, nil, 0o644)
	o := <-follow
	if o.stdout != "first\nlast\n" || o.exit == nil || *o.exit.ExitCode != 3 {
		t.Errorf("followed output: %+v", o)
	}
	p, err := env.c.WaitProcess(ctx, "job")
	if err != nil || p.State != agentproto.ProcessExited || p.ExitCode == nil || *p.ExitCode != 3 || p.EndedAt == nil || p.OutputBytes != 16 {
		t.Errorf("wait: %+v, %v", p, err)
	}
	// Exited, it stays listed with its output, and its id stays taken.
	if o := readOutput(t, env, "job", false); o.stdout != "first\nlast\n" || o.exit == nil {
		t.Errorf("output after the exit: %+v", o)
	}
	var ae *Error
	if _, err := env.c.StartDetached(ctx, agentproto.ExecRequest{ID: "job", Cmd: "true"}); !errors.As(err, &ae) || ae.Status != http.StatusConflict || !strings.Contains(ae.Message, "DELETE") {
		t.Errorf("reuse of a kept id: %v", err)
	}
	if h, _ := env.c.Health(ctx); h.Execs != 0 {
		t.Errorf("health counts %d running; want 0", h.Execs)
	}
	if err := env.c.DeleteProcess(ctx, "job"); err != nil {
		t.Fatal(err)
	}
	if _, err := env.c.Process(ctx, "job"); !errors.As(err, &ae) || ae.Status != http.StatusNotFound {
		t.Errorf("a deleted process: %v", err)
	}

	// Signal and delete a running one; a timeout kills one.
	if _, err := env.c.StartDetached(ctx, agentproto.ExecRequest{ID: "sleeper", Cmd: "sleep", Args: []string{"60"}}); err != nil {
		t.Fatal(err)
	}
	if err := env.c.Signal(ctx, "sleeper", "TERM"); err != nil {
		t.Fatal(err)
	}
	if p, err := env.c.WaitProcess(ctx, "sleeper"); err != nil || p.Signal != "SIGTERM" {
		t.Errorf("signalled: %+v, %v", p, err)
	}
	if _, err := env.c.StartDetached(ctx, agentproto.ExecRequest{ID: "slow", Cmd: "sleep", Args: []string{"60"}, TimeoutMS: 100}); err != nil {
		t.Fatal(err)
	}
	if p, err := env.c.WaitProcess(ctx, "slow"); err != nil || !p.TimedOut || p.Signal != "SIGKILL" {
		t.Errorf("timed out: %+v, %v", p, err)
	}
	if _, err := env.c.StartDetached(ctx, agentproto.ExecRequest{ID: "forever", Cmd: "sleep", Args: []string{"60"}}); err != nil {
		t.Fatal(err)
	}
	if err := env.c.DeleteProcess(ctx, "forever"); err != nil {
		t.Errorf("delete a running process: %v", err)
	}
	// Output of an attached exec is its request's alone.
	if err := env.c.Output(ctx, "nope", 0, false, func(agentproto.ExecEvent) error { return nil }); !errors.As(err, &ae) || ae.Status != http.StatusNotFound {
		t.Errorf("output of an unknown process: %v", err)
	}
}

// Past the ring's bound the oldest output goes, and a reader is told how
// much it missed.
func TestDetachedOutputBound(t *testing.T) {
	env := startAgent(t, Config{})
	ctx := testCtx(t)
	if _, err := env.c.StartDetached(ctx, agentproto.ExecRequest{ID: "chatty", Cmd: "sh", Args: []string{"-c", "head -c 600000 /dev/zero | tr '\\0' x; echo END"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.c.WaitProcess(ctx, "chatty"); err != nil {
		t.Fatal(err)
	}
	o := readOutput(t, env, "chatty", false)
	if int64(len(o.stdout))+o.dropped != 600004 || len(o.stdout) != ringBytes || !strings.HasSuffix(o.stdout, "xEND\n") {
		t.Errorf("kept %d bytes, dropped %d", len(o.stdout), o.dropped)
	}
}
