package agent

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

	"github.com/sietch-vm/sietch/wire/agentproto"
	"github.com/sietch-vm/sietch/wire/execstream"
)

// streamResult is what one exec stream carried back.
type streamResult struct {
	started execstream.StartedMsg
	stdout  bytes.Buffer
	stderr  bytes.Buffer
	exit    *execstream.ExitMsg
}

// collectStream reads frames until the exit (or error) frame, calling on for
// each output chunk as it comes.
func collectStream(t *testing.T, conn net.Conn, on func(r *streamResult)) *streamResult {
	t.Helper()
	var r streamResult
	fr := execstream.NewReader(conn)
	for {
		f, err := fr.Next()
		if err != nil {
			t.Fatalf("stream ended before the exit: %v (stdout %q)", err, r.stdout.String())
		}
		switch f.Type {
		case execstream.Started:
			if err := execstream.Decode(f, &r.started); err != nil {
				t.Fatal(err)
			}
		case execstream.Stdout:
			r.stdout.Write(f.Payload)
		case execstream.Stderr:
			r.stderr.Write(f.Payload)
		case execstream.Exit:
			var e execstream.ExitMsg
			if err := execstream.Decode(f, &e); err != nil {
				t.Fatal(err)
			}
			r.exit = &e
			return &r
		case execstream.Error:
			t.Fatalf("error frame: %s", f.Payload)
		}
		if on != nil {
			on(&r)
		}
	}
}

// Stdin streams through (64 MiB, checksummed in the guest), stdout and
// stderr come back apart, and the exit status ends the stream.
func TestExecStreamPipes(t *testing.T) {
	env := startAgent(t, Config{})
	ctx := testCtx(t)
	conn, err := env.c.ExecStream(ctx, agentproto.ExecRequest{Cmd: "sh", Args: []string{"-c", "sha256sum; echo done >&2; exit 5"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	data := make([]byte, 64<<20)
	rand.Read(data)
	sum := sha256.Sum256(data)
	go func() {
		fw := execstream.NewWriter(conn)
		for b := data; len(b) > 0; {
			n := min(len(b), 256<<10)
			if fw.Write(execstream.Stdin, b[:n]) != nil {
				return
			}
			b = b[n:]
		}
		fw.Write(execstream.StdinEOF, nil)
	}()
	r := collectStream(t, conn, nil)
	if got := strings.Fields(r.stdout.String()); len(got) == 0 || got[0] != hex.EncodeToString(sum[:]) {
		t.Errorf("checksum in the guest: %q, want %x", r.stdout.String(), sum)
	}
	if r.stderr.String() != "done\n" || r.exit.Code != 5 || r.started.PID <= 0 {
		t.Errorf("stderr %q, exit %+v, started %+v", r.stderr.String(), r.exit, r.started)
	}
}

// On a terminal: what is typed is echoed and run, a resize changes what
// the program sees, Ctrl-C stops the foreground command and the shell
// lives on, and exit ends the stream with the shell's status.
func TestExecStreamTTY(t *testing.T) {
	env := startAgent(t, Config{})
	ctx := testCtx(t)
	conn, err := env.c.ExecStream(ctx, agentproto.ExecRequest{Cmd: "sh", Env: map[string]string{"PS1": "$ ", "TERM": "dumb"},
		TTY: &agentproto.TTYSize{Rows: 24, Cols: 80}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fw := execstream.NewWriter(conn)
	type step struct {
		send  func()
		await string
	}
	typed := func(s string) func() { return func() { fw.Write(execstream.Stdin, []byte(s)) } }
	steps := []step{
		{typed("echo $((6*7))\n"), "42"},
		{func() { fw.WriteJSON(execstream.Resize, execstream.Size{Rows: 30, Cols: 132}) }, ""},
		{typed("stty size\n"), "30 132"},
		{typed("sleep 100\n"), ""},
		{func() { time.Sleep(300 * time.Millisecond); fw.Write(execstream.Stdin, []byte{3}) }, ""},
		{typed("echo $((1000+337))\n"), "1337"}, // only once sleep is gone
		{typed("exit 7\n"), ""},
	}
	i := 0
	next := func(r *streamResult) {
		for i < len(steps) && (steps[i].await == "" || strings.Contains(r.stdout.String(), steps[i].await)) {
			if steps[i].await != "" {
				r.stdout.Reset()
			}
			i++
			if i < len(steps) {
				steps[i].send()
			}
		}
	}
	steps[0].send()
	done := make(chan *streamResult, 1)
	go func() { done <- collectStream(t, conn, next) }()
	select {
	case r := <-done:
		if r.exit.Code != 7 || i != len(steps) {
			t.Errorf("exit %+v after step %d of %d; last output %q", r.exit, i, len(steps), r.stdout.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("stuck at step %d", i)
	}
}

// A request that cannot start is an ordinary error reply; a client that
// goes away ends its process.
func TestExecStreamErrorsAndHangUp(t *testing.T) {
	env := startAgent(t, Config{})
	ctx := testCtx(t)
	var ae *Error
	if _, err := env.c.ExecStream(ctx, agentproto.ExecRequest{Cmd: "no-such-program-here"}); !errors.As(err, &ae) || ae.Status != http.StatusNotFound {
		t.Errorf("a missing program: %v", err)
	}
	conn, err := env.c.ExecStream(ctx, agentproto.ExecRequest{ID: "hang", Cmd: "sleep", Args: []string{"60"}})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { h, _ := env.c.Health(ctx); return h.Execs == 1 })
	conn.Close()
	waitFor(t, func() bool { h, _ := env.c.Health(ctx); return h.Execs == 0 })
}

// Whatever frames a client sends, the agent neither panics nor hangs: the
// process ends with the stream.
func FuzzStreamFrames(f *testing.F) {
	var b bytes.Buffer
	fw := execstream.NewWriter(&b)
	fw.Write(execstream.Stdin, []byte("hi\n"))
	fw.WriteJSON(execstream.Resize, execstream.Size{Rows: 10, Cols: 20})
	fw.WriteJSON(execstream.Signal, execstream.SignalReq{Signal: "TERM"})
	fw.Write(execstream.StdinEOF, nil)
	f.Add(b.Bytes(), false)
	f.Add([]byte{execstream.Resize, 0, 0, 0, 2, '{', '}', 99, 0, 0, 0, 0}, true)
	f.Add([]byte{execstream.Signal, 0, 0, 0, 12, '{', '"', 's', 'i', 'g', 'n', 'a', 'l', '"', ':', '9', '}'}, true)
	// One agent for every input: a new one per input (and waiting out a
	// read deadline for each frame cut short) made this target run 16
	// inputs a minute.
	env := startAgent(f, Config{})
	f.Fuzz(func(t *testing.T, frames []byte, tty bool) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req := agentproto.ExecRequest{Cmd: "cat"}
		if tty {
			req.TTY = &agentproto.TTYSize{Rows: 24, Cols: 80}
		}
		conn, err := env.c.ExecStream(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		conn.Write(frames)
		fw := execstream.NewWriter(conn)
		fw.Write(execstream.StdinEOF, nil)
		fw.WriteJSON(execstream.Signal, execstream.SignalReq{Signal: "KILL"})
		// Hanging up ends the process whatever the frames did (a frame
		// cut short swallows what follows it); the agent must notice.
		conn.Close()
		for {
			h, err := env.c.Health(ctx)
			if err != nil {
				t.Fatalf("the agent stopped answering after frames %q: %v", frames, err)
			}
			if h.Execs == 0 {
				return
			}
			time.Sleep(time.Millisecond)
		}
	})
}
