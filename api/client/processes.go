package client

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"

	"github.com/sietch-vm/sietch/api/model"
	"github.com/sietch-vm/sietch/wire/execstream"
)

// ExecSession is a command running with its stdio on an exec stream:
// write its stdin, resize its terminal, signal it, and Wait for its exit
// while its output goes to the writers given to ExecStream.
type ExecSession struct {
	ID  string // the process's id (GET .../processes)
	PID int    // in the guest

	rwc  io.ReadWriteCloser
	fw   *execstream.Writer
	stop func() bool
	done chan struct{}
	exit model.ExecExit
	err  error

	eofOnce sync.Once
}

// ExecStream starts req in sandbox id with its stdio on an exec stream
// (req.TTY for a terminal) and returns once the command runs; its output
// is copied to stdout and stderr (nil: discarded; on a terminal all of it
// is stdout) until it exits. Cancelling ctx, or Close, hangs up, which
// ends the command.
func (c *Client) ExecStream(ctx context.Context, id string, req model.ExecRequest, stdout, stderr io.Writer) (*ExecSession, error) {
	path := sandboxPath(id, "/exec")
	b, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("exec: encode request: %w", err)
	}
	hreq, err := c.newRequest(ctx, http.MethodPost, path, bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Connection", "Upgrade")
	hreq.Header.Set("Upgrade", execstream.Protocol)
	resp, err := c.send(hreq, http.StatusSwitchingProtocols)
	if err != nil {
		return nil, err
	}
	rwc, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		resp.Body.Close()
		return nil, errors.New("exec: the server switched protocols but the connection is not writable")
	}
	s := &ExecSession{rwc: rwc, fw: execstream.NewWriter(rwc), done: make(chan struct{})}
	s.stop = context.AfterFunc(ctx, func() { rwc.Close() })
	fr := execstream.NewReader(rwc)
	f, err := fr.Next()
	if err == nil && f.Type != execstream.Started {
		err = fmt.Errorf("the stream began with a frame of type %d, not Started", f.Type)
	}
	var st execstream.StartedMsg
	if err == nil {
		err = execstream.Decode(f, &st)
	}
	if err != nil {
		s.stop()
		rwc.Close()
		return nil, fmt.Errorf("exec %s: %w", req.Cmd, err)
	}
	s.ID, s.PID = st.ID, st.PID
	go s.read(ctx, fr, orDiscard(stdout), orDiscard(stderr))
	return s, nil
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

// read copies output frames until the exit.
func (s *ExecSession) read(ctx context.Context, fr *execstream.Reader, stdout, stderr io.Writer) {
	defer close(s.done)
	defer s.rwc.Close()
	defer s.stop()
	for {
		f, err := fr.Next()
		if err != nil {
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			s.err = fmt.Errorf("exec stream ended before the exit status: %w", err)
			return
		}
		switch f.Type {
		case execstream.Stdout:
			_, err = stdout.Write(f.Payload)
		case execstream.Stderr:
			_, err = stderr.Write(f.Payload)
		case execstream.Exit:
			var e execstream.ExitMsg
			if err := execstream.Decode(f, &e); err != nil {
				s.err = err
				return
			}
			s.exit = model.ExecExit{Code: e.Code, Signal: e.Signal, TimedOut: e.TimedOut}
			return
		case execstream.Error:
			var e execstream.ErrorMsg
			if err := execstream.Decode(f, &e); err != nil {
				s.err = err
				return
			}
			s.err = &Error{Status: http.StatusInternalServerError, Code: e.Code, Message: e.Message}
			return
		}
		if err != nil {
			s.err = fmt.Errorf("exec output: %w", err)
			return
		}
	}
}

// Write sends p to the command's stdin.
func (s *ExecSession) Write(p []byte) (int, error) {
	if err := s.fw.Write(execstream.Stdin, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// CloseStdin ends the command's stdin (on a terminal, types end-of-file).
func (s *ExecSession) CloseStdin() error {
	var err error
	s.eofOnce.Do(func() { err = s.fw.Write(execstream.StdinEOF, nil) })
	return err
}

// Resize sets the command's terminal size.
func (s *ExecSession) Resize(rows, cols uint16) error {
	return s.fw.WriteJSON(execstream.Resize, execstream.Size{Rows: rows, Cols: cols})
}

// Signal sends a signal ("SIGINT", "INT" or "2") to the command's
// process group.
func (s *ExecSession) Signal(sig string) error {
	return s.fw.WriteJSON(execstream.Signal, execstream.SignalReq{Signal: sig})
}

// Wait returns how the command ended, once it has and its output is in.
func (s *ExecSession) Wait() (model.ExecExit, error) {
	<-s.done
	return s.exit, s.err
}

// Close hangs up: the command is killed if it still runs.
func (s *ExecSession) Close() error { return s.rwc.Close() }

// StartProcess runs req in sandbox id in the background (req.Detach is
// set for it): it keeps running after the call, its output is kept for
// ProcessOutput, and it stays listed until DeleteProcess.
func (c *Client) StartProcess(ctx context.Context, id string, req model.ExecRequest) (model.Started, error) {
	req.Detach = true
	var st model.Started
	err := c.call(ctx, http.MethodPost, sandboxPath(id, "/exec"), req, &st, http.StatusCreated)
	return st, err
}

func processPath(id, proc, rest string) string {
	return sandboxPath(id, "/processes/"+url.PathEscape(proc)+rest)
}

// Processes lists a sandbox's processes: every running exec, and the
// detached ones kept after they exited.
func (c *Client) Processes(ctx context.Context, id string) ([]model.Process, error) {
	var out struct {
		Processes []model.Process `json:"processes"`
	}
	err := c.call(ctx, http.MethodGet, sandboxPath(id, "/processes"), nil, &out, http.StatusOK)
	return out.Processes, err
}

// Process describes one process.
func (c *Client) Process(ctx context.Context, id, proc string) (model.Process, error) {
	var p model.Process
	err := c.call(ctx, http.MethodGet, processPath(id, proc, ""), nil, &p, http.StatusOK)
	return p, err
}

// WaitProcess waits for a process to exit and describes it.
func (c *Client) WaitProcess(ctx context.Context, id, proc string) (model.Process, error) {
	var p model.Process
	err := c.call(ctx, http.MethodPost, processPath(id, proc, "/wait"), nil, &p, http.StatusOK)
	return p, err
}

// SignalProcess sends a signal to a process's group.
func (c *Client) SignalProcess(ctx context.Context, id, proc, sig string) error {
	return c.call(ctx, http.MethodPost, processPath(id, proc, "/signal"), model.SignalRequest{Signal: sig}, nil, http.StatusNoContent)
}

// DeleteProcess kills a process if it runs and forgets it.
func (c *Client) DeleteProcess(ctx context.Context, id, proc string) error {
	return c.call(ctx, http.MethodDelete, processPath(id, proc, ""), nil, nil, http.StatusNoContent)
}

// ProcessOutput copies a detached process's kept output, from byte offset
// on, to stdout and stderr; with follow it returns when the process exits.
// It returns the exit once the process has exited (else nil), and how many
// bytes the 256 KiB bound lost before what it copied.
func (c *Client) ProcessOutput(ctx context.Context, id, proc string, offset int64, follow bool, stdout, stderr io.Writer) (*model.ExecExit, int64, error) {
	q := url.Values{"offset": {strconv.FormatInt(offset, 10)}, "follow": {strconv.FormatBool(follow)}}
	hreq, err := c.newRequest(ctx, http.MethodGet, processPath(id, proc, "/output")+"?"+q.Encode(), nil)
	if err != nil {
		return nil, 0, err
	}
	hreq.Header.Set("Accept", "application/x-ndjson")
	resp, err := c.send(hreq, http.StatusOK)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	stdout, stderr = orDiscard(stdout), orDiscard(stderr)
	var dropped int64
	dec := json.NewDecoder(resp.Body)
	for {
		var ev model.ExecEvent
		if err := dec.Decode(&ev); err != nil {
			if errors.Is(err, io.EOF) {
				return nil, dropped, nil
			}
			if ctxErr := ctx.Err(); ctxErr != nil {
				return nil, dropped, ctxErr
			}
			return nil, dropped, fmt.Errorf("read the output of process %s: %w", proc, err)
		}
		dropped += ev.Dropped
		for _, o := range []struct {
			w   io.Writer
			b64 string
		}{{stdout, ev.Stdout}, {stderr, ev.Stderr}} {
			if o.b64 == "" {
				continue
			}
			b, err := base64.StdEncoding.DecodeString(o.b64)
			if err != nil {
				return nil, dropped, fmt.Errorf("bad base64 chunk from server: %w", err)
			}
			if _, err := o.w.Write(b); err != nil {
				return nil, dropped, err
			}
		}
		if ev.Exit != nil {
			return ev.Exit, dropped, nil
		}
	}
}
