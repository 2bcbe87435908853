package rfb

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/color"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeScreen is an in-memory screen that records input.
type fakeScreen struct {
	mu     sync.Mutex
	img    *image.RGBA
	events []string
}

func newFakeScreen(w, h int, c color.RGBA) *fakeScreen {
	s := &fakeScreen{img: image.NewRGBA(image.Rect(0, 0, w, h))}
	s.fill(s.img.Bounds(), c)
	return s
}

func (s *fakeScreen) fill(r image.Rectangle, c color.RGBA) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			s.img.SetRGBA(x, y, c)
		}
	}
}

func (s *fakeScreen) Size() (int, int) { return s.img.Bounds().Dx(), s.img.Bounds().Dy() }

func (s *fakeScreen) ScreenshotInto(out *image.RGBA, r image.Rectangle) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for y := 0; y < r.Dy(); y++ {
		copy(out.Pix[y*out.Stride:(y+1)*out.Stride], s.img.Pix[s.img.PixOffset(r.Min.X, r.Min.Y+y):s.img.PixOffset(r.Max.X, r.Min.Y+y)])
	}
	return nil
}

func (s *fakeScreen) PointerEvent(x, y int, buttons uint8) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, fmt.Sprintf("pointer %d,%d %08b", x, y, buttons))
	return nil
}

func (s *fakeScreen) KeyEvent(sym uint32, down bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, fmt.Sprintf("key %#x %v", sym, down))
	return nil
}

func (s *fakeScreen) seen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.events...)
}

// serve starts a server for screen with password and returns its address
// and the errors its sessions end with.
func serve(t *testing.T, screen Screen, password string) (string, chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	srv := &Server{Screen: screen, Password: func() string { return password }, Name: "test desktop",
		Poll: 5 * time.Millisecond, FailDelay: time.Millisecond}
	errs := make(chan error, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { errs <- srv.Serve(c) }()
		}
	}()
	return ln.Addr().String(), errs
}

// client is a minimal RFB client for the tests.
type client struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
	w, h int
	name string
	pf   PixelFormat
	// The session's zlib stream: compressed bytes are appended to zin.
	zin bytes.Buffer
	zr  io.Reader
	// Bytes of the rectangles' data as they came on the wire.
	wire int
}

// dial connects with protocol 3.minor and password; it returns the
// client and the server's failure reason, if it refused.
func dial(t *testing.T, addr string, minor int, password string) (*client, string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	c := &client{t: t, conn: conn, r: bufio.NewReader(conn)}
	var v [12]byte
	c.read(v[:])
	if string(v[:]) != "RFB 003.008\n" {
		t.Fatalf("server version %q", v[:])
	}
	fmt.Fprintf(conn, "RFB 003.%03d\n", minor)
	if minor == 3 {
		switch typ := c.u32(); typ {
		case 0:
			return nil, c.reason()
		case securityVNC:
		default:
			t.Fatalf("3.3 security type %d", typ)
		}
	} else {
		n := c.u8()
		if n == 0 {
			return nil, c.reason()
		}
		types := make([]byte, n)
		c.read(types)
		if string(types) != string([]byte{securityVNC}) {
			t.Fatalf("security types %v; want [2]", types)
		}
		conn.Write([]byte{securityVNC})
	}
	var challenge [16]byte
	c.read(challenge[:])
	resp := EncryptChallenge(password, challenge)
	conn.Write(resp[:])
	if res := c.u32(); res != 0 {
		if minor >= 8 {
			return nil, c.reason()
		}
		return nil, "failed"
	}
	conn.Write([]byte{1}) // shared
	var init [24]byte
	c.read(init[:])
	c.w, c.h = int(binary.BigEndian.Uint16(init[0:])), int(binary.BigEndian.Uint16(init[2:]))
	pf, err := parseFormat(init[4:20])
	if err != nil {
		t.Fatalf("server's pixel format: %v", err)
	}
	c.pf = pf
	name := make([]byte, binary.BigEndian.Uint32(init[20:]))
	c.read(name)
	c.name = string(name)
	return c, ""
}

func (c *client) read(b []byte) {
	c.t.Helper()
	if _, err := io.ReadFull(c.r, b); err != nil {
		c.t.Fatalf("read from the server: %v", err)
	}
}

func (c *client) u8() byte {
	var b [1]byte
	c.read(b[:])
	return b[0]
}

func (c *client) u32() uint32 {
	var b [4]byte
	c.read(b[:])
	return binary.BigEndian.Uint32(b[:])
}

func (c *client) reason() string {
	b := make([]byte, c.u32())
	c.read(b)
	return string(b)
}

func (c *client) request(incremental bool, r image.Rectangle) {
	b := []byte{msgUpdateRequest, boolByte(incremental), 0, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint16(b[2:], uint16(r.Min.X))
	binary.BigEndian.PutUint16(b[4:], uint16(r.Min.Y))
	binary.BigEndian.PutUint16(b[6:], uint16(r.Dx()))
	binary.BigEndian.PutUint16(b[8:], uint16(r.Dy()))
	c.conn.Write(b)
}

func (c *client) encodings(encs ...int32) {
	b := []byte{msgSetEncodings, 0, 0, byte(len(encs))}
	for _, e := range encs {
		b = binary.BigEndian.AppendUint32(b, uint32(e))
	}
	c.conn.Write(b)
}

func (c *client) setFormat(pf PixelFormat) {
	b := make([]byte, 20)
	b[0] = msgSetPixelFormat
	pf.marshal(b[4:])
	c.conn.Write(b)
	c.pf = pf
}

// rect is one rectangle of an update, decoded into colours.
type rect struct {
	r   image.Rectangle
	pix []color.RGBA
}

func (r rect) at(x, y int) color.RGBA { return r.pix[(y-r.r.Min.Y)*r.r.Dx()+x-r.r.Min.X] }

// update reads one FramebufferUpdate.
func (c *client) update() []rect {
	c.t.Helper()
	var hdr [12]byte
	c.read(hdr[:4])
	if hdr[0] != 0 {
		c.t.Fatalf("server message type %d; want a FramebufferUpdate (0)", hdr[0])
	}
	n := int(binary.BigEndian.Uint16(hdr[2:]))
	out := make([]rect, n)
	bpp := int(c.pf.BPP) / 8
	for i := range out {
		c.read(hdr[:])
		x, y := int(binary.BigEndian.Uint16(hdr[0:])), int(binary.BigEndian.Uint16(hdr[2:]))
		w, h := int(binary.BigEndian.Uint16(hdr[4:])), int(binary.BigEndian.Uint16(hdr[6:]))
		data := make([]byte, w*h*bpp)
		switch enc := int32(binary.BigEndian.Uint32(hdr[8:])); enc {
		case encodingRaw:
			c.read(data)
			c.wire += len(data)
		case encodingZlib:
			compressed := make([]byte, c.u32())
			c.read(compressed)
			c.wire += 4 + len(compressed)
			c.zin.Write(compressed)
			if c.zr == nil {
				zr, err := zlib.NewReader(&c.zin)
				if err != nil {
					c.t.Fatalf("zlib stream: %v", err)
				}
				c.zr = zr
			}
			if _, err := io.ReadFull(c.zr, data); err != nil {
				c.t.Fatalf("zlib rect %v: %v", image.Rect(x, y, x+w, y+h), err)
			}
		default:
			c.t.Fatalf("encoding %d; want Raw or Zlib", enc)
		}
		out[i] = rect{r: image.Rect(x, y, x+w, y+h), pix: make([]color.RGBA, w*h)}
		for j := range out[i].pix {
			out[i].pix[j] = c.pf.decode(data[j*bpp:])
		}
	}
	return out
}

// decode is the inverse of encode, to 8-bit channels.
func (pf PixelFormat) decode(b []byte) color.RGBA {
	var v uint32
	switch {
	case pf.BPP == 8:
		v = uint32(b[0])
	case pf.BPP == 16 && pf.BigEndian:
		v = uint32(binary.BigEndian.Uint16(b))
	case pf.BPP == 16:
		v = uint32(binary.LittleEndian.Uint16(b))
	case pf.BigEndian:
		v = binary.BigEndian.Uint32(b)
	default:
		v = binary.LittleEndian.Uint32(b)
	}
	ch := func(shift uint8, max uint16) uint8 { return uint8((v >> shift & uint32(max)) * 255 / uint32(max)) }
	return color.RGBA{ch(pf.RedShift, pf.RedMax), ch(pf.GreenShift, pf.GreenMax), ch(pf.BlueShift, pf.BlueMax), 0xff}
}

var (
	orange = color.RGBA{0xff, 0x80, 0x00, 0xff}
	blue   = color.RGBA{0x20, 0x40, 0xe0, 0xff}
)

func TestVersionsAndFullFrame(t *testing.T) {
	screen := newFakeScreen(320, 200, orange)
	screen.fill(image.Rect(10, 20, 30, 40), blue)
	addr, _ := serve(t, screen, "s3cret!!")
	for _, minor := range []int{3, 7, 8} {
		t.Run(fmt.Sprintf("3.%d", minor), func(t *testing.T) {
			c, reason := dial(t, addr, minor, "s3cret!!")
			if c == nil {
				t.Fatalf("refused: %q", reason)
			}
			if c.w != 320 || c.h != 200 || c.name != "test desktop" {
				t.Fatalf("ServerInit %dx%d %q", c.w, c.h, c.name)
			}
			c.request(false, image.Rect(0, 0, 320, 200))
			rs := c.update()
			if len(rs) != 1 || rs[0].r != image.Rect(0, 0, 320, 200) {
				t.Fatalf("a full update of %d rects, first %v", len(rs), rs[0].r)
			}
			for _, p := range []struct {
				x, y int
				want color.RGBA
			}{{0, 0, orange}, {10, 20, blue}, {29, 39, blue}, {30, 40, orange}, {319, 199, orange}} {
				if got := rs[0].at(p.x, p.y); got != p.want {
					t.Errorf("pixel %d,%d is %v; want %v", p.x, p.y, got, p.want)
				}
			}
		})
	}
}

func TestPasswords(t *testing.T) {
	screen := newFakeScreen(64, 64, orange)
	addr, errs := serve(t, screen, "right")
	if c, reason := dial(t, addr, 8, "wrong"); c != nil || reason != "wrong password" {
		t.Errorf("3.8 with a wrong password: %v %q; want refused, \"wrong password\"", c != nil, reason)
	}
	if err := <-errs; !errors.Is(err, ErrAuth) {
		t.Errorf("session ended with %v; want ErrAuth", err)
	}
	if c, _ := dial(t, addr, 3, "wrong"); c != nil {
		t.Error("3.3 with a wrong password got in")
	}
	<-errs
	// Only the first 8 bytes count, as in every VNC server.
	addr, _ = serve(t, screen, "12345678")
	if c, reason := dial(t, addr, 8, "123456789"); c == nil {
		t.Errorf("a password that matches in its first 8 bytes was refused: %q", reason)
	}
	// No password set: everyone is turned away, with what to do.
	addr, _ = serve(t, screen, "")
	for _, minor := range []int{3, 8} {
		if c, reason := dial(t, addr, minor, ""); c != nil || !strings.Contains(reason, "sietch vnc") {
			t.Errorf("3.%d with no password set: in=%v reason %q", minor, c != nil, reason)
		}
	}
}

func TestIncrementalSendsOnlyWhatChanged(t *testing.T) {
	screen := newFakeScreen(640, 480, orange)
	addr, _ := serve(t, screen, "pw")
	c, _ := dial(t, addr, 8, "pw")
	all := image.Rect(0, 0, 640, 480)
	c.request(false, all)
	c.update()
	// Nothing changed: the incremental request waits for a change.
	c.request(true, all)
	time.Sleep(50 * time.Millisecond)
	screen.fill(image.Rect(300, 200, 310, 210), blue)
	rs := c.update()
	if len(rs) != 1 || !image.Rect(300, 200, 310, 210).In(rs[0].r) || rs[0].r.Dx() > tile*2 || rs[0].r.Dy() > tile {
		t.Fatalf("after a 10x10 change the update has %d rects: %v", len(rs), rs)
	}
	if got := rs[0].at(305, 205); got != blue {
		t.Errorf("changed pixel is %v; want blue", got)
	}
	// Two separate changes on one row of tiles: two rects, not the row.
	c.request(true, all)
	screen.fill(image.Rect(0, 0, 1, 1), blue)
	screen.fill(image.Rect(639, 10, 640, 11), blue)
	rs = c.update()
	area := 0
	for _, r := range rs {
		area += r.r.Dx() * r.r.Dy()
	}
	if area > 2*tile*tile {
		t.Errorf("two 1-pixel changes sent as %v (%d pixels)", rs, area)
	}
	// An incremental request for a region sees only its changes.
	screen.fill(image.Rect(600, 400, 601, 401), blue)
	c.request(true, image.Rect(0, 0, 100, 100))
	screen.fill(image.Rect(50, 50, 51, 51), blue)
	rs = c.update()
	for _, r := range rs {
		if !r.r.In(image.Rect(0, 0, 100, 100)) {
			t.Errorf("update for region 0,0-100,100 has %v", r.r)
		}
	}
}

// A client that lists Zlib gets it, on one stream across updates, with
// the same pixels as Raw in far fewer bytes for a flat screen.
func TestZlib(t *testing.T) {
	screen := newFakeScreen(640, 480, orange)
	addr, _ := serve(t, screen, "pw")
	c, _ := dial(t, addr, 8, "pw")
	c.encodings(16, encodingZlib, encodingRaw) // ZRLE (not spoken here), Zlib, Raw
	all := image.Rect(0, 0, 640, 480)
	c.request(false, all)
	rs := c.update()
	if len(rs) != 1 || rs[0].at(10, 10) != orange || c.wire > 640*480*4/50 {
		t.Fatalf("a flat 640x480 screen took %d bytes (Raw: %d)", c.wire, 640*480*4)
	}
	screen.fill(image.Rect(100, 100, 120, 120), blue)
	c.request(true, all)
	rs = c.update()
	if len(rs) != 1 || rs[0].at(110, 110) != blue || rs[0].at(121, 121) != orange {
		t.Errorf("second Zlib update: %d rects, %v at the change", len(rs), rs[0].at(110, 110))
	}
	// Dropping Zlib from the list goes back to Raw.
	c.encodings(encodingRaw)
	c.request(false, image.Rect(0, 0, 4, 4))
	before := c.wire
	c.update()
	if c.wire-before != 4*4*4 {
		t.Errorf("after SetEncodings without Zlib a 4x4 update took %d bytes; want Raw's 64", c.wire-before)
	}
}

func TestPixelFormats(t *testing.T) {
	screen := newFakeScreen(32, 16, orange)
	screen.fill(image.Rect(0, 0, 16, 16), blue)
	addr, _ := serve(t, screen, "pw")
	for _, pf := range []PixelFormat{
		{BPP: 16, Depth: 16, BigEndian: true, TrueColr: true, RedMax: 31, GreenMax: 63, BlueMax: 31, RedShift: 11, GreenShift: 5},
		{BPP: 16, Depth: 15, TrueColr: true, RedMax: 31, GreenMax: 31, BlueMax: 31, RedShift: 10, GreenShift: 5},
		{BPP: 8, Depth: 8, TrueColr: true, RedMax: 7, GreenMax: 7, BlueMax: 3, RedShift: 0, GreenShift: 3, BlueShift: 6},
		{BPP: 32, Depth: 24, BigEndian: true, TrueColr: true, RedMax: 255, GreenMax: 255, BlueMax: 255, RedShift: 0, GreenShift: 8, BlueShift: 16},
	} {
		c, _ := dial(t, addr, 8, "pw")
		c.setFormat(pf)
		c.request(false, image.Rect(0, 0, 32, 16))
		rs := c.update()
		near := func(a, b color.RGBA) bool {
			d := func(x, y uint8) int { return max(int(x)-int(y), int(y)-int(x)) }
			tol := 256 / (int(min(pf.RedMax, pf.GreenMax, pf.BlueMax)) + 1)
			return d(a.R, b.R) <= tol && d(a.G, b.G) <= tol && d(a.B, b.B) <= tol
		}
		if got := rs[0].at(0, 0); !near(got, blue) {
			t.Errorf("%+v: left is %v; want about %v", pf, got, blue)
		}
		if got := rs[0].at(31, 15); !near(got, orange) {
			t.Errorf("%+v: right is %v; want about %v", pf, got, orange)
		}
	}
}

func TestInputReachesTheScreen(t *testing.T) {
	screen := newFakeScreen(100, 50, orange)
	addr, _ := serve(t, screen, "pw")
	c, _ := dial(t, addr, 8, "pw")
	c.conn.Write([]byte{msgPointerEvent, 0b101, 0, 10, 0, 20})
	c.conn.Write([]byte{msgPointerEvent, 0, 0x10, 0, 0x10, 0}) // past the screen: clamped
	c.conn.Write([]byte{msgKeyEvent, 1, 0, 0, 0, 0, 0xff, 0x0d})
	c.conn.Write([]byte{msgKeyEvent, 0, 0, 0, 0, 0, 0xff, 0x0d})
	cut := []byte{msgClientCutText, 0, 0, 0, 0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o'}
	c.conn.Write(cut)
	c.conn.Write([]byte{msgSetEncodings, 0, 0, 2, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x21})
	// A round trip: once the update comes, everything before it was read.
	c.request(false, image.Rect(0, 0, 1, 1))
	c.update()
	want := []string{"pointer 10,20 00000101", "pointer 99,49 00000000", "key 0xff0d true", "key 0xff0d false"}
	if got := screen.seen(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("screen saw %q; want %q", got, want)
	}
}

func TestHostileClients(t *testing.T) {
	screen := newFakeScreen(64, 64, orange)
	addr, errs := serve(t, screen, "pw")
	for _, tc := range []struct {
		name string
		msg  []byte
		want string
	}{
		{"unknown message", []byte{0x7f}, "message type 127"},
		{"huge cut text", []byte{msgClientCutText, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}, "ClientCutText"},
		{"too many encodings", []byte{msgSetEncodings, 0, 0xff, 0xff}, "SetEncodings"},
		{"24-bit pixels", []byte{msgSetPixelFormat, 0, 0, 0, 24, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0}, "24 bits per pixel"},
		{"colour map", []byte{msgSetPixelFormat, 0, 0, 0, 8, 8, 0, 0, 0, 7, 0, 7, 0, 3, 0, 3, 6, 0, 0, 0}, "colour-map"},
		{"shift past the pixel", []byte{msgSetPixelFormat, 0, 0, 0, 16, 16, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0}, "does not fit"},
	} {
		c, _ := dial(t, addr, 8, "pw")
		c.conn.Write(tc.msg)
		if err := <-errs; err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: session ended with %v; want %q", tc.name, err, tc.want)
		}
		// The server closed the connection.
		c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.r.ReadByte(); err == nil {
			t.Errorf("%s: the connection is still open", tc.name)
		}
	}
	// A client that goes away mid-handshake ends its session quietly.
	conn, _ := net.Dial("tcp", addr)
	conn.Write([]byte("RFB 003.008\n"))
	conn.Close()
	select {
	case <-errs:
	case <-time.After(10 * time.Second):
		t.Error("a client that left mid-handshake left its session hanging")
	}
}

// fuzzConn feeds fixed client bytes and swallows what the server writes.
type fuzzConn struct {
	net.Conn
	r io.Reader
}

func (c fuzzConn) Read(b []byte) (int, error)       { return c.r.Read(b) }
func (c fuzzConn) Write(b []byte) (int, error)      { return len(b), nil }
func (c fuzzConn) Close() error                     { return nil }
func (c fuzzConn) SetDeadline(time.Time) error      { return nil }
func (c fuzzConn) SetReadDeadline(time.Time) error  { return nil }
func (c fuzzConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzServe sends arbitrary bytes as a client's messages after the
// handshake: the session ends with an error or at the end of input, and
// never panics or hangs.
func FuzzServe(f *testing.F) {
	f.Add([]byte{msgUpdateRequest, 0, 0, 0, 0, 0, 0, 64, 0, 64})
	f.Add([]byte{msgPointerEvent, 0xff, 0xff, 0xff, 0xff, 0xff, msgKeyEvent, 1, 0, 0, 0, 0, 0x20, 0xac})
	f.Add([]byte{msgSetPixelFormat, 0, 0, 0, 8, 8, 0, 1, 0, 7, 0, 7, 0, 3, 0, 3, 6, 0, 0, 0, msgUpdateRequest, 1, 0, 10, 0, 10, 0xff, 0xff, 0xff, 0xff})
	screen := newFakeScreen(64, 48, orange)
	srv := &Server{Screen: screen, Password: func() string { return "pw" }, Poll: time.Microsecond, FailDelay: time.Microsecond}
	f.Fuzz(func(t *testing.T, msgs []byte) {
		r := bufio.NewReader(strings.NewReader(string(msgs)))
		// Past the handshake, whose random challenge a fixed input cannot
		// answer; the handshake's reads are covered by the tests above.
		c := &session{srv: srv, conn: fuzzConn{r: r}, r: r, pf: defaultFormat, minor: 8, w: 64, h: 48}
		c.serveMessages()
	})
}
