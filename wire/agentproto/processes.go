package agentproto

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
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
