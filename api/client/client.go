// Package client is the Go SDK for sietchd's HTTP API (/v1).
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// DefaultAddr is where sietchd listens unless told otherwise.
const DefaultAddr = "/var/lib/sietch/sietchd.sock"

// DefaultTokenFile is where sietchd writes its bearer token at first start.
const DefaultTokenFile = "/var/lib/sietch/token"

// Client calls one sietchd. It is safe for concurrent use.
type Client struct {
	base  string // scheme://host, no trailing slash
	token string
	hc    *http.Client
	ua    string
}

// Option changes how New builds a Client.
type Option func(*Client)

// WithHTTPClient makes the Client send its requests through hc (which then
// decides how to reach addr). Streaming calls rely on hc having no Timeout.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) {
		if hc != nil {
			c.hc = hc
		}
	}
}

// WithUserAgent sets the User-Agent header of every request.
func WithUserAgent(ua string) Option {
	return func(c *Client) { c.ua = ua }
}

// New returns a Client for the sietchd at addr: "unix:///path/sietchd.sock",
// "/path/sietchd.sock", "http://host:port" or "tcp://host:port". token is the bearer token
// (empty: send none; only Health works without one).
func New(addr, token string, opts ...Option) (*Client, error) {
	c := &Client{token: strings.TrimSpace(token), ua: "sietch-go"}
	if rest, ok := strings.CutPrefix(addr, "tcp://"); ok {
		addr = "http://" + rest // sietchd --listen spells TCP this way
	}
	switch {
	case strings.HasPrefix(addr, "http://") || strings.HasPrefix(addr, "https://"):
		u, err := url.Parse(addr)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("sietchd address %q: want http://host:port, tcp://host:port, unix:///path or /path", addr)
		}
		c.base = u.Scheme + "://" + u.Host
		c.hc = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	case strings.HasPrefix(addr, "unix://") || strings.HasPrefix(addr, "/"):
		path := strings.TrimPrefix(addr, "unix://")
		if path == "" || !strings.HasPrefix(path, "/") {
			return nil, fmt.Errorf("sietchd address %q: a unix socket needs an absolute path (unix:///var/lib/sietch/sietchd.sock)", addr)
		}
		c.base = "http://sietchd"
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.Proxy = nil
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}
		c.hc = &http.Client{Transport: tr}
	default:
		return nil, fmt.Errorf("sietchd address %q: want unix:///path, /path or http://host:port", addr)
	}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// newRequest builds a request for path (which may carry a query) with the
// auth and user-agent headers set.
func (c *Client) newRequest(ctx context.Context, method, path string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if c.ua != "" {
		req.Header.Set("User-Agent", c.ua)
	}
	return req, nil
}

// send performs req and returns the response if its status is want; any
// other status becomes an *Error (and the body is closed).
func (c *Client) send(req *http.Request, want int) (*http.Response, error) {
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctxErr := req.Context().Err(); ctxErr != nil {
			return nil, fmt.Errorf("%s %s: %w", req.Method, req.URL.Path, ctxErr)
		}
		return nil, fmt.Errorf("%s %s: %w (is sietchd running and is --addr right?)", req.Method, req.URL.Path, err)
	}
	if resp.StatusCode != want {
		defer resp.Body.Close()
		return nil, decodeError(req, resp)
	}
	return resp, nil
}

// call sends in (if non-nil) as JSON and decodes a want-status response into
// out (if non-nil).
func (c *Client) call(ctx context.Context, method, path string, in, out any, want int) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("%s %s: encode request: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := c.newRequest(ctx, method, path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.send(req, want)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decode response: %w", method, path, err)
	}
	return nil
}

// sandboxPath is /v1/sandboxes/{id} plus rest, with id escaped.
func sandboxPath(id, rest string) string {
	return "/v1/sandboxes/" + url.PathEscape(id) + rest
}
