package api

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"errors"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

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
