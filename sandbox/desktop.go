package sandbox

import (
	"context"
	"image"
	"io"

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
func (m *Manager) Screenshot(ctx context.Context, id, display string, r image.Rectangle, w io.Writer) error {
	sb, ac, err := m.runningAgent(ctx, id, "take a screenshot")
	if err != nil {
		return err
	}
	return m.agentDone(sb, ac.Screenshot(ctx, display, r, w))
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
// last one goes), then a marker file once it accepts clients. It is the
// start command of a template built from the desktop image; the agent
// does screenshots and input over its own X connection.
const DesktopStart = `Xvfb :1 -screen 0 1280x800x24 -nolisten tcp -noreset -br >/run/sietch-xvfb.log 2>&1 &
while [ ! -e /tmp/.X11-unix/X1 ]; do sleep 1; done
touch /run/sietch-desktop.ready
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
