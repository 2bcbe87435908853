package desktop

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jezek/xgb"
	"github.com/jezek/xgb/xproto"

	"github.com/sietch-vm/sietch/guest-init/agent/desktop/desktoptest"
	"github.com/sietch-vm/sietch/guest-init/agent/desktop/rfb"
)

// serveVNC serves d over RFB with password on a loopback port.
func serveVNC(t *testing.T, d *Display, password string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	srv := &rfb.Server{Screen: d, Password: func() string { return password }, Poll: 20 * time.Millisecond}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go srv.Serve(c)
		}
	}()
	return ln.Addr().String()
}

// A real VNC client (Debian's vncsnapshot, which speaks RFB 3.3 and asks
// for Tight first) gets a frame of the screen's size showing what is on
// it, with the per-desktop password.
func TestVNCSnapshot(t *testing.T) {
	bin, err := exec.LookPath("vncsnapshot")
	if err != nil {
		t.Skip("needs vncsnapshot (apt-get install vncsnapshot; make deps installs it)")
	}
	display := desktoptest.Xvfb(t, 320, 200)
	d, err := Open(display)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	newClient(t, display, image.Rect(0, 0, 160, 200), 0xff8000)
	addr := serveVNC(t, d, "pw-1234")
	_, port, _ := net.SplitHostPort(addr)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "passwd"), rfb.PasswdFile("pw-1234"), 0o600)
	out := filepath.Join(dir, "shot.jpg")
	// DISPLAY# is the port minus 5900 (vncsnapshot takes a negative one).
	var n int
	fmt.Sscan(port, &n)
	cmd := exec.Command(bin, "-quiet", "-passwd", filepath.Join(dir, "passwd"), fmt.Sprintf("127.0.0.1:%d", n-5900), out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("vncsnapshot: %v\n%s", err, b)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := jpeg.Decode(f)
	if err != nil {
		t.Fatalf("vncsnapshot wrote no JPEG: %v", err)
	}
	if b := img.Bounds(); b.Dx() != 320 || b.Dy() != 200 {
		t.Fatalf("frame is %v; want 320x200", b)
	}
	near := func(c color.Color, r, g, b int) bool {
		cr, cg, cb, _ := c.RGBA()
		d := func(x uint32, y int) bool { return max(int(x>>8)-y, y-int(x>>8)) < 24 }
		return d(cr, r) && d(cg, g) && d(cb, b)
	}
	if c := img.At(80, 100); !near(c, 0xff, 0x80, 0) {
		t.Errorf("left half is %v; want orange", c)
	}
	if c := img.At(240, 100); !near(c, 0, 0, 0) {
		t.Errorf("right half is %v; want the black root", c)
	}
	// The wrong password gets nothing.
	os.WriteFile(filepath.Join(dir, "passwd"), rfb.PasswdFile("wrong"), 0o600)
	os.Remove(out)
	exec.Command(bin, "-quiet", "-passwd", filepath.Join(dir, "passwd"), fmt.Sprintf("127.0.0.1:%d", n-5900), out).Run()
	if _, err := os.Stat(out); err == nil {
		t.Errorf("vncsnapshot with the wrong password wrote a frame")
	}
}

// Pointer and key events from a VNC client reach X windows as a person's
// input would: motion, a button held across motion, keys with shift held
// by the client, and a character no key has, bound only while held.
func TestVNCInput(t *testing.T) {
	display := desktoptest.Xvfb(t, 320, 200)
	d, err := Open(display)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	c := newClient(t, display, image.Rect(0, 0, 320, 200), 0x202020)
	vc := dialVNC(t, serveVNC(t, d, "pw"), "pw")
	vc.pointer(50, 60, 1) // press left at 50,60
	vc.pointer(70, 80, 1)
	vc.pointer(70, 80, 0)
	ev := c.wait(t, func(ev xgb.Event) bool { _, ok := ev.(xproto.ButtonPressEvent); return ok }).(xproto.ButtonPressEvent)
	if ev.Detail != 1 || ev.EventX != 50 || ev.EventY != 60 {
		t.Errorf("press of button %d at %d,%d; want 1 at 50,60", ev.Detail, ev.EventX, ev.EventY)
	}
	vc.sync(t)
	if x, y, err := d.Cursor(); err != nil || x != 70 || y != 80 {
		t.Errorf("pointer at %d,%d (%v); want 70,80", x, y, err)
	}
	// Shift held by the client, then 'A'; then ☺, which no key has.
	vc.key(symShiftL, true)
	vc.key('A', true)
	vc.key('A', false)
	vc.key(symShiftL, false)
	smiley := uint32(runeKeysym('☺'))
	vc.key(smiley, true)
	vc.key(smiley, false)
	vc.sync(t)
	isPress := func(ev xgb.Event) bool { _, ok := ev.(xproto.KeyPressEvent); return ok }
	var a xproto.KeyPressEvent
	for {
		a = c.wait(t, isPress).(xproto.KeyPressEvent)
		if sym, _ := d.symAt(a.Detail, false); sym != symShiftL {
			break
		}
	}
	if sym, _ := d.symAt(a.Detail, a.State&xproto.ModMaskShift != 0); sym != 'A' {
		t.Errorf("shift+A from VNC read as keysym %#x; want 'A'", sym)
	}
	// ☺ arrives as a press of a keycode that was spare (bound to nothing).
	if ev := c.wait(t, isPress).(xproto.KeyPressEvent); func() bool { sym, _ := d.symAt(ev.Detail, false); return sym != 0 }() {
		t.Errorf("☺ pressed keycode %d, which the keymap already used", ev.Detail)
	}
	d.mu.Lock()
	d.readKeymap()
	_, _, bound := d.keycodeOf(xproto.Keysym(smiley))
	held := len(d.held)
	d.mu.Unlock()
	if bound || held != 0 {
		t.Errorf("after ☺ was released: still bound %v, %d keys held", bound, held)
	}
}

// vncClient is just enough RFB to send input and wait for the server to
// have read it.
type vncClient struct {
	conn net.Conn
	r    *bufio.Reader
}

func dialVNC(t *testing.T, addr, password string) *vncClient {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := rfb.Login(conn, password, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(conn)
	return &vncClient{conn: conn, r: r}
}

func (c *vncClient) pointer(x, y int, mask byte) {
	b := []byte{5, mask, 0, 0, 0, 0}
	binary.BigEndian.PutUint16(b[2:], uint16(x))
	binary.BigEndian.PutUint16(b[4:], uint16(y))
	c.conn.Write(b)
}

func (c *vncClient) key(sym uint32, down bool) {
	b := []byte{4, 0, 0, 0, 0, 0, 0, 0}
	if down {
		b[1] = 1
	}
	binary.BigEndian.PutUint32(b[4:], sym)
	c.conn.Write(b)
}

// sync asks for a 1x1 update and reads it: everything sent before has
// been read and applied by then.
func (c *vncClient) sync(t *testing.T) {
	t.Helper()
	c.conn.Write([]byte{3, 0, 0, 0, 0, 0, 0, 1, 0, 1})
	var b [16 + 4]byte
	if _, err := io.ReadFull(c.r, b[:4+12+4]); err != nil {
		t.Fatalf("update: %v", err)
	}
	if !strings.HasPrefix(string(b[:1]), "\x00") {
		t.Fatalf("not an update: %v", b[:4])
	}
}
