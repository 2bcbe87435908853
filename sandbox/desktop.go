package sandbox

import (
	"context"
	"crypto/rand"
	"fmt"
	"image"
	"io"
	"strings"

	"github.com/sietch-vm/sietch/wire/agentproto"
)

// DesktopAction is one input action on a sandbox's X display: Type is
// move, click, drag, scroll, type or key (docs/AGENT.md, "Desktop").
type DesktopAction struct {
	Type          string
	X, Y, X2, Y2  int
	Button, Count int
	DY            int
	Text, Keys    string
}

// DesktopState is a display's screen size and pointer.
type DesktopState struct {
	Width, Height    int
	CursorX, CursorY int
}

func desktopStateOf(s agentproto.DesktopState) DesktopState {
	return DesktopState{Width: s.Width, Height: s.Height, CursorX: s.CursorX, CursorY: s.CursorY}
}

// Desktop reads a sandbox's display ("": the default, :1).
func (m *Manager) Desktop(ctx context.Context, id, display string) (DesktopState, error) {
	sb, ac, err := m.runningAgent(ctx, id, "read the desktop")
	if err != nil {
		return DesktopState{}, err
	}
	st, err := ac.Desktop(ctx, display)
	if err := m.agentDone(sb, err); err != nil {
		return DesktopState{}, err
	}
	return desktopStateOf(st), nil
}

// Screenshot writes a PNG of the sandbox's display (region r, or the
// whole screen when r is empty) to w.
func (m *Manager) Screenshot(ctx context.Context, id, display string, r image.Rectangle, scale float64, w io.Writer) error {
	sb, ac, err := m.runningAgent(ctx, id, "take a screenshot")
	if err != nil {
		return err
	}
	return m.agentDone(sb, ac.Screenshot(ctx, display, r, scale, w))
}

// DesktopInput applies input actions in order on the sandbox's display
// and returns its state once they are done.
func (m *Manager) DesktopInput(ctx context.Context, id, display string, actions []DesktopAction) (DesktopState, error) {
	in := agentproto.DesktopInput{Display: display, Actions: make([]agentproto.DesktopAction, len(actions))}
	for i, a := range actions {
		in.Actions[i] = agentproto.DesktopAction{Type: a.Type, X: a.X, Y: a.Y, X2: a.X2, Y2: a.Y2, Button: a.Button, Count: a.Count, DY: a.DY, Text: a.Text, Keys: a.Keys}
	}
	sb, ac, err := m.runningAgent(ctx, id, "send input")
	if err != nil {
		return DesktopState{}, err
	}
	st, err := ac.DesktopInput(ctx, in)
	if err := m.agentDone(sb, err); err != nil {
		return DesktopState{}, err
	}
	return desktopStateOf(st), nil
}

// DesktopStart brings a desktop sandbox's display up: Xvfb on :1 at
// 1280×800×24 (-noreset: the screen stays as clients left it when the
// last one goes), then the window manager where the image has one
// (Openbox, whose --startup command runs once it manages the screen),
// then a marker file. It is the start command of a template built from
// the desktop image; the agent does screenshots, input and VNC over its
// own X connection.
const DesktopStart = `Xvfb :1 -screen 0 1280x800x24 -nolisten tcp -noreset -br >/run/sietch-xvfb.log 2>&1 &
while [ ! -e /tmp/.X11-unix/X1 ]; do sleep 1; done
if command -v openbox >/dev/null; then
  DISPLAY=:1 openbox --startup 'touch /run/sietch-desktop.ready' >/run/sietch-wm.log 2>&1 &
else
  touch /run/sietch-desktop.ready
fi
wait`

// DesktopConfig is the desktop image's config: its start command and the
// ready check that waits for the X server.
func DesktopConfig() *ImageConfig {
	return &ImageConfig{
		Env:      []string{"DISPLAY=:1"},
		Cmd:      []string{"sh", "-c", DesktopStart},
		ReadyCmd: "test -e /run/sietch-desktop.ready",
		Display:  ":1",
	}
}

// VNCSpec asks for a sandbox's desktop over VNC: its display ("": :1) and
// where on the host to listen (HostPort 0: any free port, or the forward
// already there).
type VNCSpec struct {
	Display  string
	HostAddr string
	HostPort int
}

// VNCInfo is how to reach a sandbox's desktop over VNC: a host port
// forwarded to the agent's VNC server, the password made for this call,
// and where noVNC's page is forwarded (WebPort 0: the image has no noVNC).
type VNCInfo struct {
	Display  string
	Password string
	HostAddr string
	HostPort int
	WebPort  int
}

// VNC makes a new VNC password for a sandbox's display (the one before
// stops working), has the agent serve the display with it, and forwards
// host ports to the VNC server and to noVNC's page. Forwards made by an
// earlier call are reused.
func (m *Manager) VNC(ctx context.Context, id string, spec VNCSpec) (VNCInfo, error) {
	if spec.Display == "" {
		spec.Display = agentproto.DefaultDisplay
	}
	if spec.HostAddr == "" {
		spec.HostAddr = "127.0.0.1"
	}
	sb, ac, err := m.runningAgent(ctx, id, "serve its desktop over VNC")
	if err != nil {
		return VNCInfo{}, err
	}
	// VNC authentication uses 8 characters: 40 random bits in base32.
	password := strings.ToLower(rand.Text()[:8])
	st, err := ac.StartVNC(ctx, agentproto.VNCRequest{Display: spec.Display, Password: password})
	if err := m.agentDone(sb, err); err != nil {
		return VNCInfo{}, err
	}
	info := VNCInfo{Display: spec.Display, Password: password, HostAddr: spec.HostAddr}
	vnc, err := m.forwardOnce(ctx, id, PortSpec{GuestPort: st.Port, HostAddr: spec.HostAddr, HostPort: spec.HostPort})
	if err != nil {
		return VNCInfo{}, err
	}
	info.HostPort = vnc.HostPort
	if st.WebPort != 0 {
		web, err := m.forwardOnce(ctx, id, PortSpec{GuestPort: st.WebPort, HostAddr: spec.HostAddr})
		if err != nil {
			return VNCInfo{}, err
		}
		info.WebPort = web.HostPort
	}
	m.log.Info("VNC password made", "sandbox", id, "display", spec.Display, "host_port", info.HostPort, "web_port", info.WebPort)
	return info, nil
}

// forwardOnce returns the sandbox's forward of spec's guest port on its
// host address (and host port, if it names one), making it if there is
// none.
func (m *Manager) forwardOnce(ctx context.Context, id string, spec PortSpec) (Port, error) {
	ports, err := m.Ports(id)
	if err != nil {
		return Port{}, err
	}
	for _, p := range ports {
		if p.GuestPort == spec.GuestPort && p.HostAddr == spec.HostAddr && (spec.HostPort == 0 || spec.HostPort == p.HostPort) {
			return p, nil
		}
	}
	return m.AddPort(ctx, id, spec)
}

// BrowserInfo is what OpenURL did: started the browser with the URL, or
// opened it in a new tab of the running one; DevToolsPort is the guest
// port of its DevTools protocol.
type BrowserInfo struct {
	Started      bool
	DevToolsPort int
	PID          int
}

// OpenURL opens a URL in the browser of a sandbox's desktop, starting the
// browser if it is not running.
func (m *Manager) OpenURL(ctx context.Context, id, display, rawURL string) (BrowserInfo, error) {
	if err := agentproto.CheckBrowserURL(rawURL); err != nil {
		return BrowserInfo{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	sb, ac, err := m.runningAgent(ctx, id, "open a URL")
	if err != nil {
		return BrowserInfo{}, err
	}
	st, err := ac.OpenURL(ctx, agentproto.BrowserRequest{Display: display, URL: rawURL})
	if err := m.agentDone(sb, err); err != nil {
		return BrowserInfo{}, err
	}
	return BrowserInfo{Started: st.Started, DevToolsPort: st.DevToolsPort, PID: st.PID}, nil
}
