package client

import (
	"context"
	"fmt"
	"image"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/sietch-vm/sietch/api/model"
)

// Desktop reads a sandbox's X display ("": the default, :1): its screen
// size and pointer.
func (c *Client) Desktop(ctx context.Context, id, display string) (model.DesktopState, error) {
	var st model.DesktopState
	err := c.call(ctx, http.MethodGet, sandboxPath(id, "/desktop"+displayQuery(display, nil)), nil, &st, http.StatusOK)
	return st, err
}

// Screenshot writes a PNG of a sandbox's screen (region r, or all of it
// when r is empty), scaled by scale (0 or 1: full size; 0.5 halves each
// side), to w.
func (c *Client) Screenshot(ctx context.Context, id, display string, r image.Rectangle, scale float64, w io.Writer) error {
	q := url.Values{}
	if scale != 0 && scale != 1 {
		q.Set("scale", strconv.FormatFloat(scale, 'g', -1, 64))
	}
	if !r.Empty() {
		q.Set("x", strconv.Itoa(r.Min.X))
		q.Set("y", strconv.Itoa(r.Min.Y))
		q.Set("w", strconv.Itoa(r.Dx()))
		q.Set("h", strconv.Itoa(r.Dy()))
	}
	req, err := c.newRequest(ctx, http.MethodGet, sandboxPath(id, "/screenshot"+displayQuery(display, q)), nil)
	if err != nil {
		return err
	}
	resp, err := c.send(req, http.StatusOK)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("screenshot of %s: %w", id, err)
	}
	return nil
}

// Input applies mouse and keyboard actions in order on a sandbox's
// display and returns the display once they are done.
func (c *Client) Input(ctx context.Context, id string, in model.DesktopInput) (model.DesktopState, error) {
	var st model.DesktopState
	err := c.call(ctx, http.MethodPost, sandboxPath(id, "/input"), in, &st, http.StatusOK)
	return st, err
}

// displayQuery is "?display=…&more", or "" when there is nothing.
func displayQuery(display string, q url.Values) string {
	if q == nil {
		q = url.Values{}
	}
	if display != "" {
		q.Set("display", display)
	}
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}

// VNC makes a new VNC password for a sandbox's desktop (the one before
// stops working) and returns the forwarded host port and noVNC's URL.
func (c *Client) VNC(ctx context.Context, id string, req model.VNCRequest) (model.VNC, error) {
	var v model.VNC
	err := c.call(ctx, http.MethodPost, sandboxPath(id, "/vnc"), req, &v, http.StatusOK)
	return v, err
}

// OpenURL opens a URL in the browser of a sandbox's desktop, starting the
// browser if it is not running.
func (c *Client) OpenURL(ctx context.Context, id string, req model.BrowserRequest) (model.Browser, error) {
	var b model.Browser
	err := c.call(ctx, http.MethodPost, sandboxPath(id, "/browser"), req, &b, http.StatusOK)
	return b, err
}
