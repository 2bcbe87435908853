package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sietch-vm/sietch/api/client"
	"github.com/sietch-vm/sietch/api/model"
	"github.com/sietch-vm/sietch/sandbox"
	"github.com/sietch-vm/sietch/wire/agentproto"
)

// Exec streams and detached processes through sietchd and the Go SDK, with
// the agent running as a host process.
func TestExecStreamsAndProcesses(t *testing.T) {
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

	// 64 MiB of stdin streams through and is checksummed in the "guest".
	var out, errOut bytes.Buffer
	s, err := c.ExecStream(ctx, sb.ID, model.ExecRequest{Cmd: "sh", Args: []string{"-c", "sha256sum; echo bye >&2; exit 4"}}, &out, &errOut)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 64<<20)
	rand.Read(data)
	sum := sha256.Sum256(data)
	go func() {
		for b := data; len(b) > 0; b = b[min(len(b), 1<<20):] {
			if _, err := s.Write(b[:min(len(b), 1<<20)]); err != nil {
				return
			}
		}
		s.CloseStdin()
	}()
	exit, err := s.Wait()
	if err != nil || exit.Code != 4 || !strings.HasPrefix(out.String(), hex.EncodeToString(sum[:])) || errOut.String() != "bye\n" || s.PID == 0 {
		t.Errorf("stream: exit %+v, %v, stdout %q, stderr %q", exit, err, out.String(), errOut.String())
	}

	// A terminal: resize, then a signal from the client.
	out.Reset()
	s, err = c.ExecStream(ctx, sb.ID, model.ExecRequest{Cmd: "sh", Args: []string{"-c", "read line; stty size; sleep 60"}, TTY: &model.TTYSize{Rows: 24, Cols: 80}}, &out, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Resize(50, 160)
	time.Sleep(100 * time.Millisecond) // the resize goes first, on its own path
	s.Write([]byte("go\n"))
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), "50 160") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	s.Signal("TERM")
	if exit, err := s.Wait(); err != nil || exit.Signal != "SIGTERM" || !strings.Contains(out.String(), "50 160") {
		t.Errorf("tty stream: exit %+v, %v, output %q", exit, err, out.String())
	}

	// A command that cannot start is an ordinary error.
	var ae *client.Error
	if _, err := c.ExecStream(ctx, sb.ID, model.ExecRequest{Cmd: "no-such-program-here"}, nil, nil); !errors.As(err, &ae) || ae.Status != 404 {
		t.Errorf("stream of a missing program: %v", err)
	}

	// Detached: output kept from the start, listed, waited for, deleted.
	st, err := c.StartProcess(ctx, sb.ID, model.ExecRequest{Cmd: "sh", Args: []string{"-c", "echo one; sleep 0.3; echo two >&2; exit 2"}})
	if err != nil || st.ID == "" {
		t.Fatalf("StartProcess: %+v, %v", st, err)
	}
	ps, err := c.Processes(ctx, sb.ID)
	if err != nil || len(ps) != 1 || ps[0].ID != st.ID || !ps[0].Detached {
		t.Errorf("Processes: %+v, %v", ps, err)
	}
	var pout, perr bytes.Buffer
	pexit, dropped, err := c.ProcessOutput(ctx, sb.ID, st.ID, 0, true, &pout, &perr)
	if err != nil || pexit == nil || pexit.Code != 2 || pout.String() != "one\n" || perr.String() != "two\n" || dropped != 0 {
		t.Errorf("ProcessOutput: %+v, %d, %v, %q, %q", pexit, dropped, err, pout.String(), perr.String())
	}
	if p, err := c.WaitProcess(ctx, sb.ID, st.ID); err != nil || p.State != model.ProcessExited || p.Exit == nil || p.Exit.Code != 2 {
		t.Errorf("WaitProcess: %+v, %v", p, err)
	}
	if err := c.DeleteProcess(ctx, sb.ID, st.ID); err != nil {
		t.Error(err)
	}
	if _, err := c.Process(ctx, sb.ID, st.ID); !errors.As(err, &ae) || ae.Code != model.CodeNotFound {
		t.Errorf("a deleted process: %v", err)
	}
	st, err = c.StartProcess(ctx, sb.ID, model.ExecRequest{Cmd: "sleep", Args: []string{"60"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SignalProcess(ctx, sb.ID, st.ID, "KILL"); err != nil {
		t.Error(err)
	}
	if p, err := c.WaitProcess(ctx, sb.ID, st.ID); err != nil || p.Exit == nil || p.Exit.Signal != "SIGKILL" {
		t.Errorf("killed: %+v, %v", p, err)
	}
	// Refusals: a terminal on the NDJSON form, stdin with detach.
	for _, req := range []model.ExecRequest{
		{Cmd: "true", TTY: &model.TTYSize{Rows: 1, Cols: 1}},
		{Cmd: "true", Detach: true, Stdin: "aGk="},
		{Cmd: "true", Detach: true, TTY: &model.TTYSize{Rows: 0, Cols: 80}},
	} {
		if st, _, body := e.exec(sb.ID, req); st != http.StatusBadRequest {
			t.Errorf("exec %+v: %d %s; want 400", req, st, body)
		}
	}
}
