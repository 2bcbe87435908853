package api

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/png"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/jezek/xgb"
	"github.com/jezek/xgb/xproto"

	"github.com/sietch-vm/sietch/api/model"
	"github.com/sietch-vm/sietch/guest-init/agent/desktop/desktoptest"
	"github.com/sietch-vm/sietch/guest-init/agent/desktop/rfb"
	"github.com/sietch-vm/sietch/sandbox"
	"github.com/sietch-vm/sietch/wire/agentproto"
)

// Screenshots and input through sietchd, its sandbox's agent (here a host
// process) and a real X server: the screen's size and a PNG of a region,
// actions applied in order, and the refusals a client can cause.
func TestDesktopThroughSietchd(t *testing.T) {
	display := desktoptest.Xvfb(t, 400, 300)
	_, sock := startAgent(t)
	e := newEnv(t, func(c *sandbox.Config) {
		c.AgentDial = func(string) func(context.Context) (net.Conn, error) { return agentproto.DialUDS(sock, agentproto.Port) }
	})
	id := e.create(model.CreateRequest{Image: "counter"}).ID
	base := "/v1/sandboxes/" + id

	var st model.DesktopState
	e.call("GET", base+"/desktop?display="+display, nil, http.StatusOK, &st)
	if st.Width != 400 || st.Height != 300 {
		t.Errorf("desktop %+v; want 400x300", st)
	}
	code, body := e.do("GET", base+"/screenshot?display="+display+"&x=380&y=0&w=20&h=10", nil)
	if code != http.StatusOK {
		t.Fatalf("screenshot: %d %s", code, body)
	}
	img, err := png.Decode(bytes.NewReader(body))
	if err != nil || img.Bounds() != image.Rect(0, 0, 20, 10) {
		t.Fatalf("screenshot of a 20x10 region: %v, %v", img.Bounds(), err)
	}
	// Typed text shows where it is typed: a window that draws a cell per
	// key, screenshots of its first cells before and after.
	typingWindow(t, display, 400, 300)
	cells := func() string {
		code, body := e.do("GET", base+"/screenshot?display="+display+"&x=20&y=20&w=40&h=16", nil)
		if code != http.StatusOK {
			t.Fatalf("screenshot: %d %s", code, body)
		}
		img, err := png.Decode(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		out := ""
		for c := range 4 {
			if r, _, _, _ := img.At(10*c+4, 8).RGBA(); r > 0x8000 {
				out += "#"
			} else {
				out += "."
			}
		}
		return out
	}
	if got := cells(); got != "...." {
		t.Fatalf("before typing the cells read %q; want ....", got)
	}
	e.call("POST", base+"/input", model.DesktopInput{Display: display, Actions: []model.DesktopAction{{Type: "type", Text: "héy"}}}, http.StatusOK, nil)
	got := cells()
	for deadline := time.Now().Add(5 * time.Second); got != "###." && time.Now().Before(deadline); got = cells() {
		time.Sleep(20 * time.Millisecond)
	}
	if got != "###." {
		t.Errorf("after typing three characters the cells read %q; want ###. (three drawn where the text goes)", got)
	}
	// Scaled: half of each side.
	code, body = e.do("GET", base+"/screenshot?display="+display+"&scale=0.5", nil)
	if img, err := png.Decode(bytes.NewReader(body)); code != http.StatusOK || err != nil || img.Bounds() != image.Rect(0, 0, 200, 150) {
		t.Errorf("screenshot at scale 0.5: %d %v", code, err)
	}

	e.call("POST", base+"/input", model.DesktopInput{Display: display, Actions: []model.DesktopAction{
		{Type: "click", X: 10, Y: 20, Button: 1, Count: 2},
		{Type: "type", Text: "ünïcode"},
		{Type: "drag", X: 10, Y: 20, X2: 390, Y2: 290},
	}}, http.StatusOK, &st)
	if st.CursorX != 390 || st.CursorY != 290 {
		t.Errorf("after a drag to (390, 290) the cursor is at (%d, %d)", st.CursorX, st.CursorY)
	}
	for _, tc := range []struct {
		method, path string
		body         any
		status       int
	}{
		{"GET", base + "/screenshot?display=" + display + "&x=390&y=0&w=20&h=10", nil, http.StatusBadRequest}, // past the right edge
		{"GET", base + "/screenshot?display=" + display + "&x=1", nil, http.StatusBadRequest},                 // half a region
		{"GET", base + "/screenshot?display=" + display + "&x=-1&y=0&w=1&h=1", nil, http.StatusBadRequest},
		{"GET", base + "/screenshot?display=" + display + "&scale=2", nil, http.StatusBadRequest},
		{"GET", base + "/screenshot?display=" + display + "&scale=NaN", nil, http.StatusBadRequest},
		{"POST", base + "/input", model.DesktopInput{Display: display}, http.StatusBadRequest},
		{"POST", base + "/input", model.DesktopInput{Display: display, Actions: []model.DesktopAction{{Type: "click", X: 400, Y: 0}}}, http.StatusBadRequest},
		{"POST", base + "/input", model.DesktopInput{Display: display, Actions: []model.DesktopAction{{Type: "key", Keys: "ctrl+nope"}}}, http.StatusBadRequest},
		{"POST", base + "/input", `{"actions": [{"type": "click", "x": "ten"}]}`, http.StatusBadRequest},
		{"GET", base + "/desktop?display=:199", nil, http.StatusConflict}, // no X server there
		{"GET", "/v1/sandboxes/sb-nope/screenshot", nil, http.StatusNotFound},
	} {
		if code, body := e.do(tc.method, tc.path, tc.body); code != tc.status {
			t.Errorf("%s %s: %d %s; want %d", tc.method, tc.path, code, body, tc.status)
		}
	}

	// VNC: a password per call and a host port forwarded to the agent's
	// VNC server, where a client gets in with it and not with the last.
	var v1, v2 model.VNC
	e.call("POST", base+"/vnc", model.VNCRequest{Display: display}, http.StatusOK, &v1)
	e.call("POST", base+"/vnc", model.VNCRequest{Display: display}, http.StatusOK, &v2)
	if len(v1.Password) != 8 || v1.Password == v2.Password || v1.HostPort == 0 || v2.HostPort != v1.HostPort || v1.HostAddr != "127.0.0.1" {
		t.Fatalf("two VNC calls: %+v, %+v; want 8-character passwords, new each time, on one forwarded port", v1, v2)
	}
	login := func(password string) (rfb.ServerInit, error) {
		conn, err := net.Dial("tcp", net.JoinHostPort(v2.HostAddr, strconv.Itoa(v2.HostPort)))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return rfb.Login(conn, password, 10*time.Second)
	}
	if si, err := login(v2.Password); err != nil || si.Width != 400 || si.Height != 300 {
		t.Errorf("VNC through sietchd's forward: %+v %v; want a 400x300 screen", si, err)
	}
	var refused *rfb.RefusedError
	if _, err := login(v1.Password); !errors.As(err, &refused) {
		t.Errorf("VNC with the replaced password: %v; want refused", err)
	}
	for _, tc := range []struct {
		path   string
		body   any
		status int
	}{
		{base + "/vnc", model.VNCRequest{Display: ":98"}, http.StatusConflict},
		{base + "/vnc", model.VNCRequest{Display: display, HostAddr: "localhost"}, http.StatusBadRequest},
		{base + "/vnc", `{"display": ":1", "password": "mine"}`, http.StatusBadRequest}, // passwords are made, not given
		{base + "/browser", model.BrowserRequest{Display: display, URL: "javascript:alert(1)"}, http.StatusBadRequest},
		{base + "/browser", model.BrowserRequest{Display: display}, http.StatusBadRequest},
		{base + "/browser", model.BrowserRequest{Display: ":199", URL: "https://example.test/"}, http.StatusConflict},
		{"/v1/sandboxes/sb-nope/vnc", nil, http.StatusNotFound},
	} {
		if code, body := e.do("POST", tc.path, tc.body); code != tc.status {
			t.Errorf("POST %s %v: %d %s; want %d", tc.path, tc.body, code, body, tc.status)
		}
	}
	e.call("DELETE", base, nil, http.StatusNoContent, nil)
}

// typingWindow maps a black window over the screen that draws a white
// 8x16 cell for each key pressed in it, left to right from (20, 20): a
// stand-in for a text field, to see typed text on the screen.
func typingWindow(t *testing.T, display string, w, h int) {
	t.Helper()
	conn, err := xgb.NewConnDisplay(display)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	scr := xproto.Setup(conn).DefaultScreen(conn)
	win, _ := xproto.NewWindowId(conn)
	gc, _ := xproto.NewGcontextId(conn)
	mask := uint32(xproto.EventMaskExposure | xproto.EventMaskKeyPress)
	if err := xproto.CreateWindowChecked(conn, scr.RootDepth, win, scr.Root, 0, 0, uint16(w), uint16(h), 0,
		xproto.WindowClassInputOutput, scr.RootVisual, xproto.CwBackPixel|xproto.CwOverrideRedirect|xproto.CwEventMask, []uint32{0, 1, mask}).Check(); err != nil {
		t.Fatal(err)
	}
	xproto.CreateGC(conn, gc, xproto.Drawable(win), xproto.GcForeground, []uint32{0xffffff})
	xproto.MapWindow(conn, win)
	exposed := make(chan struct{})
	go func() {
		n := 0
		for {
			ev, err := conn.WaitForEvent()
			if ev == nil && err == nil {
				return
			}
			switch ev := ev.(type) {
			case xproto.ExposeEvent:
				if exposed != nil {
					xproto.SetInputFocus(conn, xproto.InputFocusPointerRoot, win, xproto.TimeCurrentTime)
					xproto.GetInputFocus(conn).Reply() // applied before anyone types
					close(exposed)
					exposed = nil
				}
			case xproto.KeyPressEvent:
				_ = ev
				xproto.PolyFillRectangle(conn, xproto.Drawable(win), gc, []xproto.Rectangle{{X: int16(20 + 10*n), Y: 20, Width: 8, Height: 16}})
				xproto.GetInputFocus(conn).Reply() // drawn before the next event
				n++
			}
		}
	}()
	select {
	case <-exposed:
	case <-time.After(10 * time.Second):
		t.Fatal("the typing window was not exposed within 10 s")
	}
}
