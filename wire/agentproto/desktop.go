package agentproto

import (
	"context"
	"fmt"
	"image"
	"io"
	"net/http"
	"net/url"
	"strconv"
)

// DefaultDisplay is the X display a desktop sandbox runs.
const DefaultDisplay = ":1"

// Desktop action types (DesktopAction.Type).
const (
	ActionMove   = "move"   // X, Y
	ActionClick  = "click"  // X, Y, Button (default 1), Count (default 1)
	ActionDrag   = "drag"   // X, Y to X2, Y2 with the left button
	ActionScroll = "scroll" // DY steps: negative up, positive down
	ActionType   = "type"   // Text, any Unicode
	ActionKey    = "key"    // Keys: a combination such as ctrl+l
)

// DesktopAction is one input action.
type DesktopAction struct {
	Type   string `json:"type"`
	X      int    `json:"x,omitempty"`
	Y      int    `json:"y,omitempty"`
	X2     int    `json:"x2,omitempty"`
	Y2     int    `json:"y2,omitempty"`
	Button int    `json:"button,omitempty"`
	Count  int    `json:"count,omitempty"`
	DY     int    `json:"dy,omitempty"`
	Text   string `json:"text,omitempty"`
	Keys   string `json:"keys,omitempty"`
}

// DesktopInput is the body of POST /v1/desktop/input: actions applied in
// order; the reply comes once they are done.
type DesktopInput struct {
	Display string          `json:"display,omitempty"` // default DefaultDisplay
	Actions []DesktopAction `json:"actions"`
}

// DesktopState is the reply of GET /v1/desktop and POST /v1/desktop/input.
type DesktopState struct {
	Width   int `json:"width"`
	Height  int `json:"height"`
	CursorX int `json:"cursor_x"`
	CursorY int `json:"cursor_y"`
}

// Desktop reads the display's screen size and pointer.
func (c *Client) Desktop(ctx context.Context, display string) (DesktopState, error) {
	var st DesktopState
	err := c.doJSON(ctx, http.MethodGet, "/v1/desktop", url.Values{"display": {display}}, nil, &st)
	return st, err
}

// DesktopInput applies actions in order.
func (c *Client) DesktopInput(ctx context.Context, in DesktopInput) (DesktopState, error) {
	var st DesktopState
	err := c.doJSON(ctx, http.MethodPost, "/v1/desktop/input", nil, in, &st)
	return st, err
}

// Screenshot writes a PNG of the display's region r (the whole screen
// when empty), scaled by scale (0 or 1: not scaled), to w.
func (c *Client) Screenshot(ctx context.Context, display string, r image.Rectangle, scale float64, w io.Writer) error {
	q := url.Values{"display": {display}}
	if scale != 0 && scale != 1 {
		q.Set("scale", strconv.FormatFloat(scale, 'g', -1, 64))
	}
	if !r.Empty() {
		for k, v := range map[string]int{"x": r.Min.X, "y": r.Min.Y, "w": r.Dx(), "h": r.Dy()} {
			q.Set(k, strconv.Itoa(v))
		}
	}
	resp, err := c.do(ctx, http.MethodGet, "/v1/desktop/screenshot", q, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("agent screenshot: %w", err)
	}
	return nil
}

// MinScale is the smallest screenshot scale.
const MinScale = 0.05

// ParseScale reads a screenshot's scale from a query: "" is 1 (not
// scaled); otherwise a number from MinScale to 1.
func ParseScale(q url.Values) (float64, error) {
	s := q.Get("scale")
	if s == "" {
		return 1, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || !(f >= MinScale && f <= 1) { // NaN fails too
		return 0, fmt.Errorf("scale=%q: want a number from %g to 1 (0.5 halves width and height)", s, MinScale)
	}
	return f, nil
}

// maxRegionCoord bounds a region's numbers (X11 coordinates are 16-bit).
const maxRegionCoord = 1 << 15

// ParseRegion reads a screenshot region from a query: all of x, y, w and
// h, or none of them (the whole screen, an empty rectangle). sietchd's API
// and the agent take the same query.
func ParseRegion(q url.Values) (image.Rectangle, error) {
	var v [4]int
	given := 0
	for i, k := range []string{"x", "y", "w", "h"} {
		s := q.Get(k)
		if s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > maxRegionCoord {
			return image.Rectangle{}, fmt.Errorf("%s=%q: want a whole number of pixels, 0 to %d", k, s, maxRegionCoord)
		}
		v[i] = n
		given++
	}
	switch {
	case given == 0:
		return image.Rectangle{}, nil
	case given != 4:
		return image.Rectangle{}, fmt.Errorf("a region needs all of x, y, w and h")
	case v[2] == 0 || v[3] == 0:
		return image.Rectangle{}, fmt.Errorf("region %dx%d is empty", v[2], v[3])
	}
	return image.Rect(v[0], v[1], v[0]+v[2], v[1]+v[3]), nil
}

// VNC ports in the guest: a display :N is served on VNCPortBase+N (RFB)
// and WebPortBase+N (noVNC's page and its WebSocket), on 127.0.0.1 only.
const (
	VNCPortBase = 5900
	WebPortBase = 6080
)

// VNCRequest is the body of POST /v1/desktop/vnc: serve the display over
// VNC with this password (6 to 8 characters: VNC authentication uses 8),
// which replaces any set before; sessions already in keep going.
type VNCRequest struct {
	Display  string `json:"display,omitempty"` // default DefaultDisplay
	Password string `json:"password"`
}

// VNCState is the reply of POST /v1/desktop/vnc: the guest ports serving
// the display. WebPort is 0 where the guest has no noVNC to serve.
type VNCState struct {
	Port    int `json:"port"`
	WebPort int `json:"web_port,omitempty"`
}

// StartVNC serves the display over VNC with a new password.
func (c *Client) StartVNC(ctx context.Context, req VNCRequest) (VNCState, error) {
	var st VNCState
	err := c.doJSON(ctx, http.MethodPost, "/v1/desktop/vnc", nil, req, &st)
	return st, err
}

// BrowserRequest is the body of POST /v1/desktop/browser: open URL in the
// desktop's browser, starting it if it is not running.
type BrowserRequest struct {
	Display string `json:"display,omitempty"` // default DefaultDisplay
	URL     string `json:"url"`
}

// BrowserState is the reply of POST /v1/desktop/browser.
type BrowserState struct {
	// Started: the browser was not running and has been started with the
	// URL; it shows the page once it is up. Otherwise the URL was opened
	// in a new tab of the running browser.
	Started bool `json:"started"`
	// DevToolsPort is the guest port of the Chrome DevTools protocol
	// (127.0.0.1 only; forward it for CDP tools).
	DevToolsPort int `json:"devtools_port"`
	PID          int `json:"pid,omitempty"`
}

// OpenURL opens a URL in the desktop's browser.
func (c *Client) OpenURL(ctx context.Context, req BrowserRequest) (BrowserState, error) {
	var st BrowserState
	err := c.doJSON(ctx, http.MethodPost, "/v1/desktop/browser", nil, req, &st)
	return st, err
}

// CheckBrowserURL accepts what POST /v1/desktop/browser opens: absolute
// http, https, file, data and about URLs of at most 8 KiB.
func CheckBrowserURL(s string) error {
	if len(s) > 8<<10 {
		return fmt.Errorf("a URL of %d bytes: at most 8 KiB", len(s))
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("url %q: %v", s, err)
	}
	switch u.Scheme {
	case "http", "https", "file", "data", "about":
		return nil
	}
	return fmt.Errorf("url %q: want an absolute http, https, file, data or about URL", s)
}
