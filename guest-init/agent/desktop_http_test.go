package agent

import (
	"bytes"
	"errors"
	"image"
	"image/color"
	"image/png"
	"net/http"
	"testing"

	"github.com/sietch-vm/sietch/guest-init/agent/desktop/desktoptest"
	"github.com/sietch-vm/sietch/wire/agentproto"
)

// The desktop endpoints on a real X server: the screen's size, a PNG of
// it or of a region, input actions applied in order, and refusals.
func TestDesktopEndpoints(t *testing.T) {
	display := desktoptest.Xvfb(t, 320, 200)
	env := startAgent(t, Config{})
	ctx := testCtx(t)
	st, err := env.c.Desktop(ctx, display)
	if err != nil {
		t.Fatal(err)
	}
	if st.Width != 320 || st.Height != 200 {
		t.Errorf("desktop %+v; want 320x200", st)
	}
	var b bytes.Buffer
	if err := env.c.Screenshot(ctx, display, image.Rect(10, 20, 50, 40), 1, &b); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&b)
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	if got := img.Bounds(); got.Dx() != 40 || got.Dy() != 20 {
		t.Errorf("region screenshot %v; want 40x20", got)
	}
	// Scaled: half of each side.
	b.Reset()
	if err := env.c.Screenshot(ctx, display, image.Rectangle{}, 0.5, &b); err != nil {
		t.Fatal(err)
	}
	if half, err := png.Decode(&b); err != nil || half.Bounds().Dx() != 160 || half.Bounds().Dy() != 100 {
		t.Errorf("screenshot at scale 0.5 of 320x200: %v %v; want 160x100", half.Bounds(), err)
	}
	if r, g, bl, _ := img.At(5, 5).RGBA(); r|g|bl != 0 {
		t.Errorf("pixel %v; want Xvfb's black root", img.At(5, 5))
	}
	st, err = env.c.DesktopInput(ctx, agentproto.DesktopInput{Display: display, Actions: []agentproto.DesktopAction{
		{Type: agentproto.ActionClick, X: 30, Y: 40},
		{Type: agentproto.ActionType, Text: "hello"},
		{Type: agentproto.ActionKey, Keys: "ctrl+a"},
		{Type: agentproto.ActionScroll, DY: 2},
		{Type: agentproto.ActionMove, X: 300, Y: 150},
	}})
	if err != nil || st.CursorX != 300 || st.CursorY != 150 {
		t.Errorf("input: %+v, %v; want the cursor at (300, 150) after the actions", st, err)
	}
	var ae *agentproto.Error
	for name, in := range map[string]agentproto.DesktopInput{
		"outside the screen": {Display: display, Actions: []agentproto.DesktopAction{{Type: agentproto.ActionClick, X: 320, Y: 0}}},
		"unknown type":       {Display: display, Actions: []agentproto.DesktopAction{{Type: "teleport"}}},
		"no actions":         {Display: display},
		"bad key":            {Display: display, Actions: []agentproto.DesktopAction{{Type: agentproto.ActionKey, Keys: "hyper+q"}}},
		"bad display":        {Display: "example.com:0", Actions: []agentproto.DesktopAction{{Type: agentproto.ActionMove}}},
	} {
		if _, err := env.c.DesktopInput(ctx, in); !errors.As(err, &ae) || ae.Status != http.StatusBadRequest {
			t.Errorf("%s: %v; want 400", name, err)
		}
	}
	if err := env.c.Screenshot(ctx, display, image.Rect(300, 190, 340, 210), 1, &b); !errors.As(err, &ae) || ae.Status != http.StatusBadRequest {
		t.Errorf("region past the screen: %v; want 400", err)
	}
	if _, err := env.c.Desktop(ctx, ":199"); !errors.As(err, &ae) || ae.Status != http.StatusConflict {
		t.Errorf("a display with no X server: %v; want 409", err)
	}
}

// shrink averages the pixels each output pixel covers.
func TestShrink(t *testing.T) {
	src := image.NewRGBA(image.Rect(0, 0, 4, 2))
	for x := range 4 {
		for y := range 2 {
			v := uint8(0)
			if (x+y)%2 == 0 {
				v = 200
			}
			src.SetRGBA(x, y, color.RGBA{v, v, 100, 0xff})
		}
	}
	got := shrink(src, 0.5)
	if got.Rect != image.Rect(0, 0, 2, 1) {
		t.Fatalf("shrunk to %v; want 2x1", got.Rect)
	}
	for x := range 2 {
		if c := got.RGBAAt(x, 0); c != (color.RGBA{100, 100, 100, 0xff}) {
			t.Errorf("pixel %d is %v; want the mean of a checkerboard, 100", x, c)
		}
	}
	if one := shrink(src, 0.05); one.Rect != image.Rect(0, 0, 1, 1) {
		t.Errorf("a tiny scale gives %v; want at least one pixel", one.Rect)
	}
}
