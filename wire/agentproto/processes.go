package agentproto

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sietch-vm/sietch/wire/execstream"
)

func execPath(id, rest string) string { return "/v1/exec/" + url.PathEscape(id) + rest }

// StartDetached starts a process that outlives the call (req.Detach is
// set for it): its output goes to a ring the agent keeps, read with
// Output, and it stays listed after it exits until DeleteProcess.
func (c *Client) StartDetached(ctx context.Context, req ExecRequest) (Started, error) {
	req.Detach = true
	var st Started
	err := c.doJSON(ctx, http.MethodPost, "/v1/exec", nil, req, &st)
	return st, err
}

// Processes lists the running execs and the detached ones kept after
// they exited, oldest first.
func (c *Client) Processes(ctx context.Context) ([]Process, error) {
	var out struct {
		Processes []Process `json:"processes"`
	}
	err := c.doJSON(ctx, http.MethodGet, "/v1/exec", nil, nil, &out)
	return out.Processes, err
}

// Process describes one exec.
func (c *Client) Process(ctx context.Context, id string) (Process, error) {
	var p Process
	err := c.doJSON(ctx, http.MethodGet, execPath(id, ""), nil, nil, &p)
	return p, err
}

// WaitProcess waits for an exec to exit (and a detached one's output to
// be in) and describes it.
func (c *Client) WaitProcess(ctx context.Context, id string) (Process, error) {
	var p Process
	err := c.doJSON(ctx, http.MethodPost, execPath(id, "/wait"), nil, nil, &p)
	return p, err
}

// DeleteProcess kills an exec if it runs and forgets it.
func (c *Client) DeleteProcess(ctx context.Context, id string) error {
	return c.doJSON(ctx, http.MethodDelete, execPath(id, ""), nil, nil, nil)
}

// Output reads a detached process's output from byte offset on (0: all
// the agent kept), calling each for every event: output chunks, a Dropped
// count when the ring lost some, and the exit status last once the
// process has exited. With follow it returns only at the exit (or when
// ctx ends); without, once the output so far is read.
func (c *Client) Output(ctx context.Context, id string, offset int64, follow bool, each func(ExecEvent) error) error {
	q := url.Values{"offset": {strconv.FormatInt(offset, 10)}, "follow": {strconv.FormatBool(follow)}}
	resp, err := c.do(ctx, http.MethodGet, execPath(id, "/output"), q, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	br := bufio.NewReaderSize(resp.Body, 64<<10)
	for {
		if _, err := br.Peek(1); errors.Is(err, io.EOF) {
			return nil // the end, between events
		}
		line, err := readLine(br, maxEventLine)
		if err != nil {
			return fmt.Errorf("agent output of exec %s: %w", id, err)
		}
		var ev ExecEvent
		if err := json.Unmarshal(line, &ev); err != nil {
			return fmt.Errorf("agent output of exec %s: bad event %.80q: %w", id, line, err)
		}
		if err := each(ev); err != nil {
			return err
		}
	}
}

// ExecStream starts req with its stdio on an exec stream (package
// execstream) and returns the stream once the agent has switched to it:
// the Started frame is the first to read. A request that cannot start is
// an *Error. Closing the stream kills the process if it still runs.
func (c *Client) ExecStream(ctx context.Context, req ExecRequest) (net.Conn, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("agent exec stream %s: encode request: %w", req.Cmd, err)
	}
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("agent exec stream %s: %w", req.Cmd, err)
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(connectTimeout)
	}
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	hreq, err := http.NewRequest(http.MethodPost, clientBase+"/v1/exec", bytes.NewReader(body))
	var br *bufio.Reader
	if err == nil {
		hreq.Header.Set("Content-Type", "application/json")
		hreq.Header.Set("Connection", "Upgrade")
		hreq.Header.Set("Upgrade", execstream.Protocol)
		br, err = switchProtocols(conn, hreq, execstream.Protocol)
	}
	if !stop() && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		conn.Close()
		var ae *Error
		if errors.As(err, &ae) {
			return nil, err
		}
		return nil, fmt.Errorf("agent exec stream %s: %w", req.Cmd, err)
	}
	conn.SetDeadline(time.Time{})
	return &relayConn{Conn: conn, r: br}, nil
}

// switchProtocols sends req on conn and reads the reply, which must be
// "101 Switching Protocols" to proto; an error reply is an *Error. The
// returned reader holds what came after the reply's headers.
func switchProtocols(conn net.Conn, req *http.Request, proto string) (*bufio.Reader, error) {
	if err := req.Write(conn); err != nil {
		return nil, fmt.Errorf("send request: %w", err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return nil, fmt.Errorf("read reply: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer resp.Body.Close()
		if resp.StatusCode >= 400 {
			return nil, readError(resp)
		}
		return nil, fmt.Errorf("agent replied %s; want 101 Switching Protocols", resp.Status)
	}
	if !strings.EqualFold(resp.Header.Get("Upgrade"), proto) {
		return nil, fmt.Errorf("agent switched to %q; want %s", resp.Header.Get("Upgrade"), proto)
	}
	return br, nil
}
