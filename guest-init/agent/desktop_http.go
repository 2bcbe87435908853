package agent

import (
	"errors"
	"image"
	"image/png"
	"net/http"
	"sync"

	"github.com/sietch-vm/sietch/guest-init/agent/desktop"
	"github.com/sietch-vm/sietch/wire/agentproto"
)

// maxActions bounds one POST /v1/desktop/input.
const maxActions = 256

// Screenshot images and the PNG encoder's buffers are reused: a fresh 4 MB
// a screenshot costs page faults in a guest whose kernel is emulated.
var (
	shotPool   sync.Pool
	pngBuffers = &pngPool{}
)

// getShot is a w×h image from the pool, or a new one.
func getShot(w, h int) *image.RGBA {
	if img, ok := shotPool.Get().(*image.RGBA); ok && img.Rect.Dx() == w && img.Rect.Dy() == h {
		return img
	}
	return image.NewRGBA(image.Rect(0, 0, w, h))
}

// pngPool is a png.EncoderBufferPool.
type pngPool struct{ p sync.Pool }

func (p *pngPool) Get() *png.EncoderBuffer {
	b, _ := p.p.Get().(*png.EncoderBuffer)
	return b
}

func (p *pngPool) Put(b *png.EncoderBuffer) { p.p.Put(b) }

// display returns the agent's connection to an X display, opened on first
// use and kept; a connection that failed is dropped so the next request
// opens a new one (the X server restarted).
func (a *Agent) display(name string) (*desktop.Display, *Error) {
	if name == "" {
		name = agentproto.DefaultDisplay
	}
	a.mu.Lock()
	d := a.displays[name]
	a.mu.Unlock()
	if d != nil {
		return d, nil
	}
	d, err := desktop.Open(name)
	if errors.Is(err, desktop.ErrNoDisplay) {
		return nil, apiErr(codeConflict, "%v; a desktop sandbox runs one on %s", err, agentproto.DefaultDisplay)
	}
	if err != nil {
		return nil, badRequest("%v", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if old := a.displays[name]; old != nil {
		d.Close()
		return old, nil
	}
	if a.displays == nil {
		a.displays = map[string]*desktop.Display{}
	}
	a.displays[name] = d
	return d, nil
}

// dropDisplay forgets a connection that failed.
func (a *Agent) dropDisplay(name string, d *desktop.Display) {
	if name == "" {
		name = agentproto.DefaultDisplay
	}
	a.mu.Lock()
	if a.displays[name] == d {
		delete(a.displays, name)
	}
	a.mu.Unlock()
	d.Close()
}

func desktopState(d *desktop.Display) (agentproto.DesktopState, error) {
	w, h := d.Size()
	x, y, err := d.Cursor()
	return agentproto.DesktopState{Width: w, Height: h, CursorX: x, CursorY: y}, err
}

// handleDesktop answers the screen size and pointer: GET /v1/desktop?display=.
func (a *Agent) handleDesktop(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("display")
	d, e := a.display(name)
	if e != nil {
		writeError(w, e)
		return
	}
	st, err := desktopState(d)
	if err != nil {
		a.dropDisplay(name, d)
		writeError(w, apiErr(codeConflict, "%v", err))
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// handleScreenshot answers a PNG of the screen or a region of it: GET
// /v1/desktop/screenshot?display=&x=&y=&w=&h=.
func (a *Agent) handleScreenshot(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	region, err := agentproto.ParseRegion(q)
	if err != nil {
		writeError(w, badRequest("%v", err))
		return
	}
	scale, err := agentproto.ParseScale(q)
	if err != nil {
		writeError(w, badRequest("%v", err))
		return
	}
	d, e := a.display(q.Get("display"))
	if e != nil {
		writeError(w, e)
		return
	}
	sw, sh := d.Size()
	area := region
	if area.Empty() {
		area = image.Rect(0, 0, sw, sh)
	}
	if !area.In(image.Rect(0, 0, sw, sh)) { // before allocating for it
		writeError(w, badRequest("region %v is not inside the %dx%d screen", area, sw, sh))
		return
	}
	img := getShot(area.Dx(), area.Dy())
	defer shotPool.Put(img)
	err = d.ScreenshotInto(img, area)
	if err != nil {
		if region != (image.Rectangle{}) {
			writeError(w, badRequest("%v", err))
			return
		}
		a.dropDisplay(q.Get("display"), d)
		writeError(w, apiErr(codeConflict, "%v", err))
		return
	}
	var out image.Image = img
	if scale < 1 {
		out = shrink(img, scale)
	}
	w.Header().Set("Content-Type", "image/png")
	// Fast, not small: the PNG crosses a local vsock, and encoding time
	// is guest CPU.
	enc := png.Encoder{CompressionLevel: png.BestSpeed, BufferPool: pngBuffers}
	if err := enc.Encode(w, out); err != nil {
		a.log.Warn("agent: screenshot cut short", "err", err)
	}
}

// shrink scales src down by f (0 < f < 1), each pixel the mean of the
// source pixels its area covers (box filter: text stays legible, no
// aliasing from skipped pixels).
func shrink(src *image.RGBA, f float64) *image.RGBA {
	sw, sh := src.Rect.Dx(), src.Rect.Dy()
	dw, dh := max(1, int(float64(sw)*f+0.5)), max(1, int(float64(sh)*f+0.5))
	dst := image.NewRGBA(image.Rect(0, 0, dw, dh))
	for y := range dh {
		y0, y1 := y*sh/dh, max((y+1)*sh/dh, y*sh/dh+1)
		for x := range dw {
			x0, x1 := x*sw/dw, max((x+1)*sw/dw, x*sw/dw+1)
			var r, g, b, n int
			for sy := y0; sy < y1; sy++ {
				row := src.Pix[sy*src.Stride:]
				for sx := x0; sx < x1; sx++ {
					r, g, b, n = r+int(row[4*sx]), g+int(row[4*sx+1]), b+int(row[4*sx+2]), n+1
				}
			}
			i := y*dst.Stride + 4*x
			dst.Pix[i], dst.Pix[i+1], dst.Pix[i+2], dst.Pix[i+3] = uint8(r/n), uint8(g/n), uint8(b/n), 0xff
		}
	}
	return dst
}

// handleInput applies input actions in order and answers when they are
// done: POST /v1/desktop/input. The first refused action stops the rest;
// the error names it.
func (a *Agent) handleInput(w http.ResponseWriter, r *http.Request) {
	var in agentproto.DesktopInput
	if e := decodeJSON(r.Body, maxJSONBody, &in); e != nil {
		writeError(w, e)
		return
	}
	if len(in.Actions) == 0 || len(in.Actions) > maxActions {
		writeError(w, badRequest("%d actions: send 1 to %d", len(in.Actions), maxActions))
		return
	}
	d, e := a.display(in.Display)
	if e != nil {
		writeError(w, e)
		return
	}
	for i, act := range in.Actions {
		var err error
		switch act.Type {
		case agentproto.ActionMove:
			err = d.Move(act.X, act.Y)
		case agentproto.ActionClick:
			err = d.Click(act.X, act.Y, max(act.Button, 1), max(act.Count, 1))
		case agentproto.ActionDrag:
			err = d.Drag(act.X, act.Y, act.X2, act.Y2)
		case agentproto.ActionScroll:
			err = d.Scroll(act.DY)
		case agentproto.ActionType:
			err = d.Type(act.Text)
		case agentproto.ActionKey:
			err = d.Key(act.Keys)
		default:
			writeError(w, badRequest("action %d: type %q; want move, click, drag, scroll, type or key", i+1, act.Type))
			return
		}
		if err != nil {
			writeError(w, badRequest("action %d (%s): %v", i+1, act.Type, err))
			return
		}
	}
	st, err := desktopState(d)
	if err != nil {
		a.dropDisplay(in.Display, d)
		writeError(w, apiErr(codeConflict, "%v", err))
		return
	}
	writeJSON(w, http.StatusOK, st)
}
