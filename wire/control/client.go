package control

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"

	"github.com/sietch-vm/sietch/internal/httpjson"
)

// Client calls a vmm's control API over its unix socket.
type Client struct {
	path string
	hc   *http.Client
}

// NewClient returns a client of the control socket at path.
func NewClient(path string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}
	return &Client{path: path, hc: &http.Client{Transport: tr}}
}

// Info returns GET /info.
func (c *Client) Info(ctx context.Context) (*Info, error) {
	var info Info
	if err := c.do(ctx, http.MethodGet, "/info", nil, &info); err != nil {
		return nil, err
	}
	return &info, nil
}

// Pause parks every vCPU; it returns once the guest makes no progress.
func (c *Client) Pause(ctx context.Context) error {
	return c.do(ctx, http.MethodPut, "/pause", nil, nil)
}

// Resume lets a paused VM run again.
func (c *Client) Resume(ctx context.Context) error {
	return c.do(ctx, http.MethodPut, "/resume", nil, nil)
}

// Stop ends the VM (its vmm exits with status 5).
func (c *Client) Stop(ctx context.Context) error {
	return c.do(ctx, http.MethodPut, "/stop", nil, nil)
}

// Snapshot writes a snapshot of the VM into req.Dir.
func (c *Client) Snapshot(ctx context.Context, req SnapshotRequest) error {
	return c.do(ctx, http.MethodPut, "/snapshot", req, nil)
}

// do sends one request; an API error comes back as *Error.
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("%s %s: encode the request: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://vmm"+path, body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s on control socket %s: %w (is `vmm run --api-sock %s` running?)", method, path, c.path, err, c.path)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 400 {
		return httpjson.ReadError(resp, MaxBody)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxBody))
	if err != nil {
		return fmt.Errorf("%s %s: read the response: %w", method, path, err)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: decode the response: %w", method, path, err)
		}
	}
	return nil
}
