package desktop

import (
	"bytes"
	"image"
	"image/color"
	"strings"
	"testing"
	"time"

	"github.com/jezek/xgb"
	"github.com/jezek/xgb/xproto"

	"github.com/sietch-vm/sietch/guest-init/agent/desktop/desktoptest"
)

// client is a test X client: one window of a known colour that records
// the input events it receives.
type client struct {
	conn   *xgb.Conn
	win    xproto.Window
	events chan xgb.Event
}

func newClient(t *testing.T, display string, r image.Rectangle, rgb uint32) *client {
	t.Helper()
	conn, err := xgb.NewConnDisplay(display)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	scr := xproto.Setup(conn).DefaultScreen(conn)
	win, _ := xproto.NewWindowId(conn)
	mask := uint32(xproto.EventMaskExposure | xproto.EventMaskButtonPress | xproto.EventMaskKeyPress | xproto.EventMaskPointerMotion | xproto.EventMaskStructureNotify)
	err = xproto.CreateWindowChecked(conn, scr.RootDepth, win, scr.Root, int16(r.Min.X), int16(r.Min.Y), uint16(r.Dx()), uint16(r.Dy()), 0,
		xproto.WindowClassInputOutput, scr.RootVisual, xproto.CwBackPixel|xproto.CwOverrideRedirect|xproto.CwEventMask, []uint32{rgb, 1, mask}).Check()
	if err != nil {
		t.Fatal(err)
	}
	xproto.MapWindow(conn, win)
	c := &client{conn: conn, win: win, events: make(chan xgb.Event, 1024)}
	go func() {
		for {
			ev, err := conn.WaitForEvent()
			if ev == nil && err == nil {
				close(c.events)
				return
			}
			if ev != nil {
				c.events <- ev
			}
		}
	}()
	c.wait(t, func(ev xgb.Event) bool { _, ok := ev.(xproto.ExposeEvent); return ok })
	// Keyboard focus on the window, so typed keys reach it.
	xproto.SetInputFocusChecked(conn, xproto.InputFocusPointerRoot, win, xproto.TimeCurrentTime).Check()
	return c
}

// wait returns the first event ok accepts, failing after 10 s.
func (c *client) wait(t *testing.T, ok func(xgb.Event) bool) xgb.Event {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev := <-c.events:
			if ok(ev) {
				return ev
			}
		case <-timeout:
			t.Fatal("no such X event within 10 s")
		}
	}
}

// A screenshot shows a window's colour where it is, and a region is that
// part of the screen; points and regions outside the screen are refused.
func TestScreenshot(t *testing.T) {
	display := desktoptest.Xvfb(t, 320, 200)
	d, err := Open(display)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if w, h := d.Size(); w != 320 || h != 200 {
		t.Fatalf("size %dx%d; want 320x200", w, h)
	}
	newClient(t, display, image.Rect(40, 30, 140, 90), 0xff8000)
	img, err := d.Screenshot(image.Rectangle{})
	if err != nil {
		t.Fatal(err)
	}
	orange := color.RGBA{0xff, 0x80, 0x00, 0xff}
	if got := img.RGBAAt(50, 40); got != orange {
		t.Errorf("pixel inside the window: %v; want %v", got, orange)
	}
	if got := img.RGBAAt(10, 10); got != (color.RGBA{0, 0, 0, 0xff}) {
		t.Errorf("pixel outside the window: %v; want the black root", got)
	}
	// The shared memory path is taken with a local server, and the
	// socket path gives the same picture.
	if !d.Shared() {
		t.Errorf("screenshots of a local Xvfb do not go through shared memory")
	}
	mem := d.mem
	d.mem = nil
	viaSocket, err := d.Screenshot(image.Rect(30, 20, 160, 100))
	d.mem = mem
	if err != nil {
		t.Fatal(err)
	}
	viaShm, err := d.Screenshot(image.Rect(30, 20, 160, 100))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(viaSocket.Pix, viaShm.Pix) {
		t.Errorf("a region read through shared memory differs from the same read over the socket")
	}
	part, err := d.Screenshot(image.Rect(130, 80, 150, 100))
	if err != nil {
		t.Fatal(err)
	}
	if b := part.Bounds(); b.Dx() != 20 || b.Dy() != 20 || part.RGBAAt(5, 5) != orange || part.RGBAAt(15, 15) == orange {
		t.Errorf("region (130,80)-(150,100): %v, %v at (5,5), %v at (15,15)", b, part.RGBAAt(5, 5), part.RGBAAt(15, 15))
	}
	if _, err := d.Screenshot(image.Rect(300, 180, 330, 210)); err == nil || !strings.Contains(err.Error(), "not inside") {
		t.Errorf("region past the screen: %v", err)
	}
	if err := d.Click(320, 10, ButtonLeft, 1); err == nil {
		t.Errorf("a click at x=320 on a 320-wide screen was accepted")
	}
	if _, err := Open("localhost:0"); err == nil {
		t.Errorf("a TCP display was accepted")
	}
}

// Clicks, scrolls and typed text reach the window under the pointer and
// with the focus as the X events a person's input makes: text, shifted
// characters and one that no key has (bound to a spare keycode).
func TestInput(t *testing.T) {
	display := desktoptest.Xvfb(t, 320, 200)
	d, err := Open(display)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	c := newClient(t, display, image.Rect(0, 0, 320, 200), 0x202020)
	if err := d.Click(100, 60, ButtonRight, 2); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		ev := c.wait(t, func(ev xgb.Event) bool { _, ok := ev.(xproto.ButtonPressEvent); return ok }).(xproto.ButtonPressEvent)
		if ev.Detail != ButtonRight || ev.EventX != 100 || ev.EventY != 60 {
			t.Errorf("button press %d at (%d, %d); want 3 at (100, 60)", ev.Detail, ev.EventX, ev.EventY)
		}
	}
	if x, y, err := d.Cursor(); err != nil || x != 100 || y != 60 {
		t.Errorf("cursor at (%d, %d), %v; want (100, 60)", x, y, err)
	}
	if err := d.Scroll(-1); err != nil {
		t.Fatal(err)
	}
	if ev := c.wait(t, func(ev xgb.Event) bool { _, ok := ev.(xproto.ButtonPressEvent); return ok }).(xproto.ButtonPressEvent); ev.Detail != buttonScrollUp {
		t.Errorf("scroll up pressed button %d; want 4", ev.Detail)
	}
	// Typed text: read each KeyPress back through the keyboard mapping as
	// it stands now, with shift from the event's state.
	if err := d.Type("Hi, X!"); err != nil {
		t.Fatal(err)
	}
	var got []rune
	for len(got) < len("Hi, X!") {
		ev := c.wait(t, func(ev xgb.Event) bool { _, ok := ev.(xproto.KeyPressEvent); return ok }).(xproto.KeyPressEvent)
		code, ok := d.symAt(ev.Detail, ev.State&xproto.ModMaskShift != 0)
		if !ok || code == symShiftL {
			continue
		}
		got = append(got, rune(code))
	}
	if string(got) != "Hi, X!" {
		t.Errorf("typed %q; the window read %q", "Hi, X!", string(got))
	}
	// A character no key has: one key press arrives, and the spare
	// keycode is unbound again afterwards.
	if err := d.Type("é€"); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		c.wait(t, func(ev xgb.Event) bool { _, ok := ev.(xproto.KeyPressEvent); return ok })
	}
	if err := d.readKeymap(); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := d.keycodeOf(runeKeysym('€')); ok {
		t.Errorf("€ is still bound to a key after it was typed")
	}
	if err := d.Key("ctrl+shift+Tab"); err != nil {
		t.Fatal(err)
	}
	if err := d.Key("ctrl+nosuchkey"); err == nil || !strings.Contains(err.Error(), "unknown key name") {
		t.Errorf("ctrl+nosuchkey: %v", err)
	}
	if err := d.Type(strings.Repeat("a", MaxText+1)); err == nil {
		t.Errorf("text over the limit was typed")
	}
	if err := d.Click(10, 10, 4, 1); err == nil {
		t.Errorf("button 4 click accepted")
	}
}

// symAt is the keysym of code at the shift level, per the current mapping.
func (d *Display) symAt(code xproto.Keycode, shift bool) (xproto.Keysym, bool) {
	i := int(code-d.minKey)*d.perKey + map[bool]int{false: 0, true: 1}[shift]
	if i < 0 || i >= len(d.syms) {
		return 0, false
	}
	return d.syms[i], true
}
