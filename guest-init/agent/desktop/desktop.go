// Package desktop is the guest agent's hold on an X display: one X
// connection, kept open, through which it takes screenshots (GetImage on
// the root window, encoded as PNG) and injects input (the XTEST
// extension: pointer motion, buttons, keys, text with any Unicode
// character). Where every guest process start and system call is costly,
// as on hosts that emulate guest kernel mode, an action is a few X
// requests on a socket that is already open, not a program (xdotool,
// import) started per action.
package desktop

import (
	"errors"
	"fmt"
	"image"
	"io"
	"log"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/jezek/xgb"
	"github.com/jezek/xgb/shm"
	"github.com/jezek/xgb/xproto"
	"github.com/jezek/xgb/xtest"
	"golang.org/x/sys/unix"
)

// Display is one X display, held open. Its methods may be called from
// several goroutines; actions are applied one at a time, in order.
type Display struct {
	name string
	mu   sync.Mutex
	conn *xgb.Conn
	root xproto.Window
	w, h int
	// The keyboard mapping, read once and after each change.
	minKey, maxKey xproto.Keycode
	perKey         int
	syms           []xproto.Keysym
	// A shared memory segment of the screen's size that the X server
	// writes screenshots into (MIT-SHM), when it can: the pixels then do
	// not cross the X socket, which on hosts that emulate guest kernel
	// mode costs seconds for a 4 MB screen. nil: screenshots use GetImage.
	seg shm.Seg
	mem []byte
	// The keymap changed (MappingNotify): read it again before using it.
	stale atomic.Bool
	// The buttons PointerEvent last left pressed, and the keysyms
	// KeyEvent bound to spare keycodes while they are held.
	buttons uint8
	held    map[xproto.Keysym]xproto.Keycode
}

func init() {
	// xgb logs to stderr (a missing ~/.Xauthority, a closed connection);
	// the agent reports errors itself.
	xgb.Logger = log.New(io.Discard, "", 0)
}

// ErrNoDisplay means the X server does not answer: it is not running (yet).
var ErrNoDisplay = errors.New("no X display")

// Open connects to display (":1") and checks that it has the XTEST
// extension and a TrueColor root of 24 or 32 bits (what Xvfb and Xvnc
// give).
func Open(display string) (*Display, error) {
	if !validName(display) {
		return nil, fmt.Errorf("display %q: want :N or :N.S, such as :1", display)
	}
	conn, err := xgb.NewConnDisplay(display)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %v (is the X server running?)", ErrNoDisplay, display, err)
	}
	d := &Display{name: display, conn: conn}
	if err := xtest.Init(conn); err != nil {
		conn.Close()
		return nil, fmt.Errorf("display %s has no XTEST extension, which input needs: %w", display, err)
	}
	setup := xproto.Setup(conn)
	scr := setup.DefaultScreen(conn)
	if scr.RootDepth != 24 && scr.RootDepth != 32 {
		conn.Close()
		return nil, fmt.Errorf("display %s: root depth %d; screenshots need 24 or 32 bits (start the X server with -screen 0 WxHx24)", display, scr.RootDepth)
	}
	d.root, d.w, d.h = scr.Root, int(scr.WidthInPixels), int(scr.HeightInPixels)
	d.minKey, d.maxKey = setup.MinKeycode, setup.MaxKeycode
	if err := d.readKeymap(); err != nil {
		conn.Close()
		return nil, err
	}
	d.attachShm()
	go d.drain()
	return d, nil
}

// drain reads what the server sends unasked until the connection ends:
// events every client gets (MappingNotify when anyone changes the
// keymap, this agent included) and errors of requests sent without
// waiting (PointerEvent, KeyEvent). Unread, they would fill xgb's queue
// and stall the connection.
func (d *Display) drain() {
	for {
		ev, err := d.conn.WaitForEvent()
		if ev == nil && err == nil {
			return // closed
		}
		if _, ok := ev.(xproto.MappingNotifyEvent); ok {
			d.stale.Store(true)
		}
	}
}

// freshKeymap reads the keymap again if it changed; the caller holds d.mu.
func (d *Display) freshKeymap() error {
	if d.stale.Swap(false) {
		return d.readKeymap()
	}
	return nil
}

// attachShm sets up the MIT-SHM segment, or leaves screenshots to
// GetImage when the server cannot share memory with us (another host,
// another user, no extension).
func (d *Display) attachShm() {
	if err := shm.Init(d.conn); err != nil {
		return
	}
	size := d.w * d.h * 4
	id, err := unix.SysvShmGet(unix.IPC_PRIVATE, size, unix.IPC_CREAT|0o600)
	if err != nil {
		return
	}
	// Removed now, freed when the last of us and the server detaches.
	defer unix.SysvShmCtl(id, unix.IPC_RMID, nil)
	mem, err := unix.SysvShmAttach(id, 0, 0)
	if err != nil {
		return
	}
	seg, err := shm.NewSegId(d.conn)
	if err == nil {
		err = shm.AttachChecked(d.conn, seg, uint32(id), false).Check()
	}
	if err != nil {
		unix.SysvShmDetach(mem)
		return
	}
	d.seg, d.mem = seg, mem
}

func validName(s string) bool {
	rest, ok := strings.CutPrefix(s, ":")
	if !ok || rest == "" || len(rest) > 8 {
		return false
	}
	for _, r := range rest {
		if (r < '0' || r > '9') && r != '.' {
			return false
		}
	}
	return true
}

// Close ends the connection.
func (d *Display) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.conn.Close()
	if d.mem != nil {
		unix.SysvShmDetach(d.mem)
		d.mem = nil
	}
	return nil
}

// Shared says whether screenshots go through shared memory.
func (d *Display) Shared() bool { return d.mem != nil }

// Size is the screen's size in pixels.
func (d *Display) Size() (w, h int) { return d.w, d.h }

// Screenshot reads the screen's pixels in r (the whole screen when r is
// empty), which must lie inside the screen, into a new image.
func (d *Display) Screenshot(r image.Rectangle) (*image.RGBA, error) {
	if r.Empty() {
		r = image.Rect(0, 0, d.w, d.h)
	}
	img := image.NewRGBA(image.Rect(0, 0, r.Dx(), r.Dy()))
	return img, d.ScreenshotInto(img, r)
}

// ScreenshotInto reads the screen's pixels in r into dst, an image of r's
// size at the origin: a caller that takes many (the VNC server) reuses one
// image, where a fresh 4 MB each time costs guest page faults.
func (d *Display) ScreenshotInto(img *image.RGBA, r image.Rectangle) error {
	screen := image.Rect(0, 0, d.w, d.h)
	if !r.In(screen) || r.Empty() {
		return fmt.Errorf("region %v is not inside the %dx%d screen", r, d.w, d.h)
	}
	if img.Rect != image.Rect(0, 0, r.Dx(), r.Dy()) || img.Stride != 4*r.Dx() {
		return fmt.Errorf("screenshot into a %v image with stride %d: want %v packed", img.Rect, img.Stride, image.Rect(0, 0, r.Dx(), r.Dy()))
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.mem != nil {
		// The region's rows, packed (32 bits a pixel, rows padded to 32
		// bits: no padding), from the start of the segment.
		_, err := shm.GetImage(d.conn, xproto.Drawable(d.root), int16(r.Min.X), int16(r.Min.Y), uint16(r.Dx()), uint16(r.Dy()),
			0xffffffff, xproto.ImageFormatZPixmap, d.seg, 0).Reply()
		if err != nil {
			return fmt.Errorf("screenshot of %s (shared memory): %w", d.name, err)
		}
		toRGBA(img.Pix, d.mem[:4*r.Dx()*r.Dy()])
		return nil
	}
	// One GetImage reply holds at most what a reply's 32-bit length says;
	// bands of rows keep each well under it and under the server's limits.
	const bandBytes = 4 << 20
	rows := max(1, bandBytes/(4*r.Dx()))
	for y := 0; y < r.Dy(); y += rows {
		n := min(rows, r.Dy()-y)
		rep, err := xproto.GetImage(d.conn, xproto.ImageFormatZPixmap, xproto.Drawable(d.root),
			int16(r.Min.X), int16(r.Min.Y+y), uint16(r.Dx()), uint16(n), 0xffffffff).Reply()
		if err != nil {
			return fmt.Errorf("screenshot of %s: %w", d.name, err)
		}
		if len(rep.Data) < 4*r.Dx()*n {
			return fmt.Errorf("screenshot of %s: %d bytes for %dx%d pixels; the X server's format is not 32 bits per pixel", d.name, len(rep.Data), r.Dx(), n)
		}
		toRGBA(img.Pix[y*r.Dx()*4:], rep.Data[:4*r.Dx()*n])
	}
	return nil
}

// toRGBA converts ZPixmap pixels at depth 24/32 on a little-endian X
// server (B, G, R, pad) into RGBA.
func toRGBA(dst, src []byte) {
	for i := 0; i+3 < len(src); i += 4 {
		dst[i], dst[i+1], dst[i+2], dst[i+3] = src[i+2], src[i+1], src[i], 0xff
	}
}

// Cursor is where the pointer is.
func (d *Display) Cursor() (x, y int, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	rep, err := xproto.QueryPointer(d.conn, d.root).Reply()
	if err != nil {
		return 0, 0, fmt.Errorf("pointer of %s: %w", d.name, err)
	}
	return int(rep.RootX), int(rep.RootY), nil
}

// fake injects one XTEST event.
func (d *Display) fake(typ byte, detail byte, x, y int) error {
	return xtest.FakeInputChecked(d.conn, typ, detail, 0, d.root, int16(x), int16(y), 0).Check()
}

// sync waits until the server has handled everything sent so far.
func (d *Display) sync() error {
	_, err := xproto.GetInputFocus(d.conn).Reply()
	return err
}

func (d *Display) inScreen(x, y int) error {
	if x < 0 || y < 0 || x >= d.w || y >= d.h {
		return fmt.Errorf("point (%d, %d) is outside the %dx%d screen", x, y, d.w, d.h)
	}
	return nil
}
