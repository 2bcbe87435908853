package agent

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sietch-vm/sietch/guest-init/agent/desktop/desktoptest"
	"github.com/sietch-vm/sietch/guest-init/agent/desktop/rfb"
	"github.com/sietch-vm/sietch/wire/agentproto"
)

// rfbLogin logs in with password and returns the screen size, or the
// server's reason for refusing.
func rfbLogin(conn net.Conn, password string) (w, h int, refused string, err error) {
	si, err := rfb.Login(conn, password, 10*time.Second)
	var re *rfb.RefusedError
	if errors.As(err, &re) {
		return 0, 0, re.Reason, nil
	}
	return si.Width, si.Height, "", err
}

// POST /v1/desktop/vnc serves the display over RFB and noVNC on guest
// loopback ports with the password it was given; a new identity (a
// restored or forked machine) forgets the password.
func TestVNCEndpoint(t *testing.T) {
	display := desktoptest.Xvfb(t, 320, 200)
	novnc := t.TempDir()
	os.WriteFile(filepath.Join(novnc, "vnc.html"), []byte("<title>noVNC</title>"), 0o644)
	env := startAgent(t, Config{NoVNC: novnc, Machine: &fakeMachine{}})
	ctx := testCtx(t)
	var ae *agentproto.Error
	for _, pw := range []string{"", "short", "much-too-long", "has space"} {
		if _, err := env.c.StartVNC(ctx, agentproto.VNCRequest{Display: display, Password: pw}); !errors.As(err, &ae) || ae.Status != http.StatusBadRequest {
			t.Errorf("password %q: %v; want 400", pw, err)
		}
	}
	if _, err := env.c.StartVNC(ctx, agentproto.VNCRequest{Display: ":98", Password: "secret1"}); !errors.As(err, &ae) || ae.Status != http.StatusConflict {
		t.Errorf("a display with no X server: %v; want 409", err)
	}
	st, err := env.c.StartVNC(ctx, agentproto.VNCRequest{Display: display, Password: "secret1"})
	if err != nil {
		t.Fatal(err)
	}
	var n int
	fmt.Sscanf(display, ":%d", &n)
	if st.Port != agentproto.VNCPortBase+n || st.WebPort != agentproto.WebPortBase+n {
		t.Errorf("ports %+v; want %d and %d for display %s", st, agentproto.VNCPortBase+n, agentproto.WebPortBase+n, display)
	}
	login := func(password string) (int, int, string) {
		t.Helper()
		conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", st.Port))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		w, h, refused, err := rfbLogin(conn, password)
		if err != nil {
			t.Fatal(err)
		}
		return w, h, refused
	}
	if w, h, refused := login("secret1"); w != 320 || h != 200 {
		t.Errorf("VNC login: %dx%d %q; want a 320x200 screen", w, h, refused)
	}
	// A new password replaces the old.
	if _, err := env.c.StartVNC(ctx, agentproto.VNCRequest{Display: display, Password: "secret2"}); err != nil {
		t.Fatal(err)
	}
	if _, _, refused := login("secret1"); refused != "wrong password" {
		t.Errorf("the old password after a new one: %q; want refused", refused)
	}
	// noVNC's page, and RFB over its WebSocket.
	base := fmt.Sprintf("http://127.0.0.1:%d", st.WebPort)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(base + "/?password=x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || !strings.Contains(loc, "vnc.html?") || !strings.Contains(loc, "autoconnect=1") || !strings.Contains(loc, "password=x") {
		t.Errorf("GET /: %s to %q; want a redirect to vnc.html with autoconnect and the query kept", resp.Status, loc)
	}
	resp, err = http.Get(base + "/vnc.html")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), "noVNC") {
		t.Errorf("GET /vnc.html: %s %q", resp.Status, page)
	}
	ws, _, err := websocket.Dial(ctx, "ws://127.0.0.1:"+fmt.Sprint(st.WebPort)+"/websockify", &websocket.DialOptions{Subprotocols: []string{"binary"}})
	if err != nil {
		t.Fatal(err)
	}
	wsConn := websocket.NetConn(ctx, ws, websocket.MessageBinary)
	if w, h, refused, err := rfbLogin(wsConn, "secret2"); err != nil || w != 320 || h != 200 {
		t.Errorf("VNC over noVNC's WebSocket: %dx%d %q %v", w, h, refused, err)
	}
	wsConn.Close()
	// Through the agent's port relay (what sietchd's forwards use), the
	// agent serves both itself, not through the guest's loopback.
	relayed, err := env.c.ConnectPort(ctx, st.Port)
	if err != nil {
		t.Fatal(err)
	}
	if w, h, refused, err := rfbLogin(relayed, "secret2"); err != nil || w != 320 || h != 200 {
		t.Errorf("VNC through the port relay: %dx%d %q %v", w, h, refused, err)
	}
	relayed.Close()
	relayedWeb, err := env.c.ConnectPort(ctx, st.WebPort)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(relayedWeb, "GET /vnc.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	relayedWeb.SetReadDeadline(time.Now().Add(10 * time.Second))
	page, _ = io.ReadAll(relayedWeb)
	relayedWeb.Close()
	if !strings.Contains(string(page), "200 OK") || !strings.Contains(string(page), "noVNC") {
		t.Errorf("noVNC's page through the port relay: %q", page)
	}
	// A new identity: no password opens the desktop until a new one is set.
	if _, err := env.c.SetIdentity(ctx, agentproto.Identity{SandboxID: "sb-fork", Hostname: "sb-fork"}); err != nil {
		t.Fatal(err)
	}
	if _, _, refused := login("secret2"); !strings.Contains(refused, "sietch vnc") {
		t.Errorf("the source's password after a new identity: %q; want refused with what to do", refused)
	}
}
