// Package rfb serves a screen over the Remote Framebuffer protocol (RFB,
// RFC 6143), the protocol of VNC, so that any VNC client or noVNC can
// watch and drive a sandbox's desktop. It is served by the guest agent from
// the X connection it already holds: no VNC server process runs in the
// guest, and none runs at all until someone asks to view the desktop.
//
// What is spoken: protocol versions 3.3, 3.7 and 3.8; VNC authentication
// only (a DES challenge keyed by a password of up to 8 characters, which
// sietchd makes per sandbox); true-colour pixel formats of 8, 16 or 32 bits
// in either byte order; the Raw and Zlib encodings. Frames are sent as the tiles
// that changed since the client's last update, found by comparing screen
// reads; an incremental request with nothing changed waits for a change.
// Pointer and key events are passed to the Screen as they come.
package rfb

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"crypto/cipher"
	"crypto/des"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"io"
	"log/slog"
	"math/bits"
	"net"
	"sync"
	"time"
)

// Screen is what a session shows and drives.
type Screen interface {
	// Size is the screen's size in pixels; it does not change.
	Size() (w, h int)
	// ScreenshotInto reads the pixels of r, which lies inside the screen,
	// into dst, an image of r's size at the origin.
	ScreenshotInto(dst *image.RGBA, r image.Rectangle) error
	// PointerEvent moves the pointer to (x, y) and sets the pressed buttons:
	// bit 0 is button 1 (left) … bit 7 button 8; 4 and 5 are the wheel.
	PointerEvent(x, y int, buttons uint8) error
	// KeyEvent presses (down) or releases the key of an X keysym.
	KeyEvent(keysym uint32, down bool) error
}

// Bounds on what a client may send.
const (
	// MaxCutText bounds a ClientCutText message; longer ones end the session.
	MaxCutText = 1 << 20
	// maxEncodings bounds a SetEncodings message.
	maxEncodings = 1024
	// tile is the side of the squares compared between updates.
	tile = 64
)

// Server serves sessions on one screen.
type Server struct {
	Screen Screen
	// Password returns the password clients must give (VNC authentication
	// uses its first 8 bytes); "" refuses every client.
	Password func() string
	// Name is the desktop's name shown by clients.
	Name string
	// Poll is how often an incremental update re-reads the screen while
	// nothing has changed (default 100 ms).
	Poll time.Duration
	// FailDelay is how long a failed authentication waits before its
	// answer, which slows guessing (default 1 s).
	FailDelay time.Duration
	Log       *slog.Logger
}

// ErrAuth is a client that gave the wrong password.
var ErrAuth = errors.New("rfb: authentication failed")

// Serve speaks RFB on conn until the client leaves, sends something
// malformed or the screen fails; it closes conn. The error says why the
// session ended (nil: the client closed the connection).
func (s *Server) Serve(conn net.Conn) error {
	defer conn.Close()
	c := &session{srv: s, conn: conn, r: bufio.NewReader(conn), pf: defaultFormat}
	err := c.run()
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// PixelFormat is RFB's PIXEL_FORMAT.
type PixelFormat struct {
	BPP, Depth          uint8
	BigEndian, TrueColr bool
	RedMax, GreenMax    uint16
	BlueMax             uint16
	RedShift            uint8
	GreenShift          uint8
	BlueShift           uint8
}

// defaultFormat is what the server offers: 32 bits, little endian, XRGB.
var defaultFormat = PixelFormat{BPP: 32, Depth: 24, TrueColr: true, RedMax: 255, GreenMax: 255, BlueMax: 255, RedShift: 16, GreenShift: 8}

func (pf PixelFormat) marshal(b []byte) {
	b[0], b[1] = pf.BPP, pf.Depth
	b[2], b[3] = boolByte(pf.BigEndian), boolByte(pf.TrueColr)
	binary.BigEndian.PutUint16(b[4:], pf.RedMax)
	binary.BigEndian.PutUint16(b[6:], pf.GreenMax)
	binary.BigEndian.PutUint16(b[8:], pf.BlueMax)
	b[10], b[11], b[12] = pf.RedShift, pf.GreenShift, pf.BlueShift
	b[13], b[14], b[15] = 0, 0, 0
}

func parseFormat(b []byte) (PixelFormat, error) {
	pf := PixelFormat{BPP: b[0], Depth: b[1], BigEndian: b[2] != 0, TrueColr: b[3] != 0,
		RedMax: binary.BigEndian.Uint16(b[4:]), GreenMax: binary.BigEndian.Uint16(b[6:]), BlueMax: binary.BigEndian.Uint16(b[8:]),
		RedShift: b[10], GreenShift: b[11], BlueShift: b[12]}
	switch {
	case pf.BPP != 8 && pf.BPP != 16 && pf.BPP != 32:
		return pf, fmt.Errorf("%d bits per pixel: this server sends 8, 16 or 32", pf.BPP)
	case !pf.TrueColr:
		return pf, errors.New("a colour-map pixel format: this server sends true colour only")
	}
	for _, c := range []struct {
		max   uint16
		shift uint8
	}{{pf.RedMax, pf.RedShift}, {pf.GreenMax, pf.GreenShift}, {pf.BlueMax, pf.BlueShift}} {
		if c.max == 0 || int(c.shift)+bitLen(c.max) > int(pf.BPP) {
			return pf, fmt.Errorf("pixel format %+v: a colour's max %d at shift %d does not fit %d bits", pf, c.max, c.shift, pf.BPP)
		}
	}
	return pf, nil
}

func bitLen(v uint16) int {
	n := 0
	for ; v != 0; v >>= 1 {
		n++
	}
	return n
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// Client-to-server message types.
const (
	msgSetPixelFormat = 0
	msgSetEncodings   = 2
	msgUpdateRequest  = 3
	msgKeyEvent       = 4
	msgPointerEvent   = 5
	msgClientCutText  = 6
)

const (
	securityNone = 1
	securityVNC  = 2
	encodingRaw  = 0
	encodingZlib = 6
)

// session is one client.
type session struct {
	srv     *Server
	conn    net.Conn
	r       *bufio.Reader
	minor   int // protocol 3.minor
	w, h    int
	buttons uint8

	mu      sync.Mutex
	cond    *sync.Cond
	pf      PixelFormat
	zlib    bool           // the client accepts the Zlib encoding
	pending *updateRequest // the client's outstanding request, if any
	// The session's zlib stream (writer goroutine only).
	zw   *zlib.Writer
	zbuf bytes.Buffer
	done bool
	err  error
}

// updateRequest is a FramebufferUpdateRequest not answered yet.
type updateRequest struct {
	r           image.Rectangle
	incremental bool
}

func (c *session) logger() *slog.Logger {
	if c.srv.Log != nil {
		return c.srv.Log
	}
	return slog.New(slog.DiscardHandler)
}

func (c *session) run() error {
	if err := c.handshake(); err != nil {
		return err
	}
	return c.serveMessages()
}

// serveMessages runs a session past its handshake.
func (c *session) serveMessages() error {
	c.cond = sync.NewCond(&c.mu)
	// The writer answers update requests; this goroutine reads messages.
	wdone := make(chan error, 1)
	go func() { wdone <- c.writeLoop() }()
	err := c.readLoop()
	c.mu.Lock()
	c.done = true
	c.cond.Broadcast()
	c.mu.Unlock()
	c.conn.Close()
	if werr := <-wdone; err == nil || errors.Is(err, net.ErrClosed) {
		if werr != nil && !errors.Is(werr, net.ErrClosed) {
			err = werr
		}
	}
	return err
}

// handshake does version, security and initialisation (RFC 6143 §7.1, §7.3).
func (c *session) handshake() error {
	c.conn.SetDeadline(time.Now().Add(30 * time.Second))
	defer c.conn.SetDeadline(time.Time{})
	if _, err := io.WriteString(c.conn, "RFB 003.008\n"); err != nil {
		return err
	}
	var v [12]byte
	if _, err := io.ReadFull(c.r, v[:]); err != nil {
		return fmt.Errorf("rfb: read the client's version: %w", err)
	}
	var major, minor int
	if n, _ := fmt.Sscanf(string(v[:]), "RFB %03d.%03d\n", &major, &minor); n != 2 || major != 3 {
		return fmt.Errorf("rfb: client version %q: want RFB 003.00x", v[:])
	}
	// 3.3, 3.7 and 3.8 are the versions; others (3.5, 3.889 from some
	// clients) are treated as 3.3 as the RFC says.
	switch {
	case minor >= 8:
		c.minor = 8
	case minor == 7:
		c.minor = 7
	default:
		c.minor = 3
	}
	password := ""
	if c.srv.Password != nil {
		password = c.srv.Password()
	}
	if password == "" {
		return c.refuse("no VNC password is set for this desktop: run `sietch vnc ID` to get one")
	}
	if c.minor == 3 {
		// The server picks the security type.
		if err := c.write32(securityVNC); err != nil {
			return err
		}
	} else {
		if _, err := c.conn.Write([]byte{1, securityVNC}); err != nil {
			return err
		}
		t, err := c.r.ReadByte()
		if err != nil {
			return err
		}
		if t != securityVNC {
			return c.fail(fmt.Sprintf("security type %d: this server offers VNC authentication (2) only", t))
		}
	}
	if err := c.authenticate(password); err != nil {
		return err
	}
	// ClientInit: the shared flag, ignored (every session shares).
	if _, err := c.r.ReadByte(); err != nil {
		return err
	}
	c.w, c.h = c.srv.Screen.Size()
	name := c.srv.Name
	if name == "" {
		name = "sietch"
	}
	init := make([]byte, 24+len(name))
	binary.BigEndian.PutUint16(init[0:], uint16(c.w))
	binary.BigEndian.PutUint16(init[2:], uint16(c.h))
	c.pf.marshal(init[4:20])
	binary.BigEndian.PutUint32(init[20:], uint32(len(name)))
	copy(init[24:], name)
	_, err := c.conn.Write(init)
	return err
}

// authenticate does VNC authentication: the client encrypts a random
// challenge with DES keyed by the password (RFC 6143 §7.2.2).
func (c *session) authenticate(password string) error {
	var challenge [16]byte
	rand.Read(challenge[:])
	if _, err := c.conn.Write(challenge[:]); err != nil {
		return err
	}
	var resp [16]byte
	if _, err := io.ReadFull(c.r, resp[:]); err != nil {
		return fmt.Errorf("rfb: read the authentication response: %w", err)
	}
	want := EncryptChallenge(password, challenge)
	if subtle.ConstantTimeCompare(resp[:], want[:]) != 1 {
		delay := c.srv.FailDelay
		if delay == 0 {
			delay = time.Second
		}
		time.Sleep(delay)
		c.fail("wrong password")
		return ErrAuth
	}
	return c.write32(0)
}

// EncryptChallenge is the response to challenge for password: each half
// DES-encrypted (ECB) with the password's first 8 bytes, zero-padded and
// each byte's bits reversed, as VNC has always done.
func EncryptChallenge(password string, challenge [16]byte) [16]byte {
	block := vncCipher([]byte(password))
	var out [16]byte
	block.Encrypt(out[:8], challenge[:8])
	block.Encrypt(out[8:], challenge[8:])
	return out
}

// vncCipher is DES keyed by key's first 8 bytes (zero-padded), each
// byte's bits reversed: VNC's DES reads its keys that way.
func vncCipher(key []byte) cipher.Block {
	var k [8]byte
	copy(k[:], key)
	for i, b := range k {
		k[i] = bits.Reverse8(b)
	}
	block, _ := des.NewCipher(k[:]) // 8 bytes: never fails
	return block
}

// fail answers a failed security handshake with its reason (3.8 carries
// one; earlier versions only the failure).
func (c *session) fail(reason string) error {
	c.write32(1)
	if c.minor >= 8 {
		c.writeReason(reason)
	}
	return fmt.Errorf("rfb: %s", reason)
}

// refuse turns a client away before security: no types, then the reason
// (3.3: security type 0, then the reason).
func (c *session) refuse(reason string) error {
	if c.minor == 3 {
		c.write32(0)
	} else {
		c.conn.Write([]byte{0})
	}
	c.writeReason(reason)
	return fmt.Errorf("rfb: %s", reason)
}

func (c *session) writeReason(reason string) {
	b := make([]byte, 4+len(reason))
	binary.BigEndian.PutUint32(b, uint32(len(reason)))
	copy(b[4:], reason)
	c.conn.Write(b)
}

func (c *session) write32(v uint32) error {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	_, err := c.conn.Write(b[:])
	return err
}

// readLoop reads and applies client messages (RFC 6143 §7.5).
func (c *session) readLoop() error {
	var b [20]byte
	for {
		t, err := c.r.ReadByte()
		if err != nil {
			return err
		}
		switch t {
		case msgSetPixelFormat:
			if _, err := io.ReadFull(c.r, b[:19]); err != nil {
				return err
			}
			pf, err := parseFormat(b[3:19])
			if err != nil {
				return fmt.Errorf("rfb: SetPixelFormat: %w", err)
			}
			c.mu.Lock()
			c.pf = pf
			c.mu.Unlock()
		case msgSetEncodings:
			if _, err := io.ReadFull(c.r, b[:3]); err != nil {
				return err
			}
			n := int(binary.BigEndian.Uint16(b[1:]))
			if n > maxEncodings {
				return fmt.Errorf("rfb: SetEncodings with %d encodings, at most %d", n, maxEncodings)
			}
			// Raw is always allowed; Zlib is used when the client lists it.
			zl := false
			for range n {
				if _, err := io.ReadFull(c.r, b[:4]); err != nil {
					return err
				}
				if int32(binary.BigEndian.Uint32(b[:4])) == encodingZlib {
					zl = true
				}
			}
			c.mu.Lock()
			c.zlib = zl
			c.mu.Unlock()
		case msgUpdateRequest:
			if _, err := io.ReadFull(c.r, b[:9]); err != nil {
				return err
			}
			x, y := int(binary.BigEndian.Uint16(b[1:])), int(binary.BigEndian.Uint16(b[3:]))
			w, h := int(binary.BigEndian.Uint16(b[5:])), int(binary.BigEndian.Uint16(b[7:]))
			// A request reaching past the screen is clipped to it.
			r := image.Rect(x, y, x+w, y+h).Intersect(image.Rect(0, 0, c.w, c.h))
			c.mu.Lock()
			c.pending = &updateRequest{r: r, incremental: b[0] != 0}
			c.cond.Broadcast()
			c.mu.Unlock()
		case msgKeyEvent:
			if _, err := io.ReadFull(c.r, b[:7]); err != nil {
				return err
			}
			if err := c.srv.Screen.KeyEvent(binary.BigEndian.Uint32(b[3:]), b[0] != 0); err != nil {
				c.logger().Debug("rfb: key event not applied", "err", err)
			}
		case msgPointerEvent:
			if _, err := io.ReadFull(c.r, b[:5]); err != nil {
				return err
			}
			x := min(int(binary.BigEndian.Uint16(b[1:])), c.w-1)
			y := min(int(binary.BigEndian.Uint16(b[3:])), c.h-1)
			if err := c.srv.Screen.PointerEvent(x, y, b[0]); err != nil {
				c.logger().Debug("rfb: pointer event not applied", "err", err)
			}
		case msgClientCutText:
			if _, err := io.ReadFull(c.r, b[:7]); err != nil {
				return err
			}
			n := binary.BigEndian.Uint32(b[3:])
			if n > MaxCutText {
				return fmt.Errorf("rfb: ClientCutText of %d bytes, at most %d", n, MaxCutText)
			}
			// The clipboard is not shared: the text is read and dropped.
			if _, err := c.r.Discard(int(n)); err != nil {
				return err
			}
		default:
			// Unknown messages have unknown lengths: the stream cannot go on.
			return fmt.Errorf("rfb: message type %d is not one this server accepts (0, 2, 3, 4, 5, 6)", t)
		}
	}
}

// writeLoop answers update requests: a full request at once, an
// incremental one with the tiles that changed since what this client was
// last sent, waiting for a change when there is none.
func (c *session) writeLoop() error {
	poll := c.srv.Poll
	if poll <= 0 {
		poll = 100 * time.Millisecond
	}
	var shown *image.RGBA // what the client has, as far as it asked for it
	// The screen as last read, one buffer for the session: a fresh 4 MB
	// each poll costs page faults where guest kernel mode is emulated.
	screen := image.NewRGBA(image.Rect(0, 0, c.w, c.h))
	w := bufio.NewWriterSize(c.conn, 256<<10)
	for {
		c.mu.Lock()
		for c.pending == nil && !c.done {
			c.cond.Wait()
		}
		if c.done {
			c.mu.Unlock()
			return nil
		}
		req := *c.pending
		c.pending = nil
		c.mu.Unlock()

		for {
			if err := c.srv.Screen.ScreenshotInto(screen, screen.Rect); err != nil {
				return fmt.Errorf("rfb: read the screen: %w", err)
			}
			var rects []image.Rectangle
			if !req.incremental || shown == nil {
				if !req.r.Empty() {
					rects = []image.Rectangle{req.r}
				}
			} else {
				rects = changed(shown, screen, req.r)
			}
			if len(rects) > 0 || !req.incremental || shown == nil {
				if err := c.sendUpdate(w, screen, rects); err != nil {
					return err
				}
				if shown == nil {
					shown = image.NewRGBA(screen.Rect)
					copy(shown.Pix, screen.Pix)
				} else {
					for _, r := range rects {
						copyRect(shown, screen, r)
					}
				}
				break
			}
			// Nothing changed: wait, unless the client sent a new request
			// (a full one must be answered now) or left.
			c.mu.Lock()
			done, newer := c.done, c.pending != nil
			c.mu.Unlock()
			if done {
				return nil
			}
			if newer {
				break
			}
			time.Sleep(poll)
		}
	}
}

// changed lists the tiles of area that differ between a and b, each run
// of changed tiles in a row of tiles joined into one rectangle.
func changed(a, b *image.RGBA, area image.Rectangle) []image.Rectangle {
	var out []image.Rectangle
	for ty := area.Min.Y; ty < area.Max.Y; ty += tile {
		var run image.Rectangle
		for tx := area.Min.X; tx < area.Max.X; tx += tile {
			t := image.Rect(tx, ty, tx+tile, ty+tile).Intersect(area)
			if differ(a, b, t) {
				run = run.Union(t)
				continue
			}
			if !run.Empty() {
				out = append(out, run)
				run = image.Rectangle{}
			}
		}
		if !run.Empty() {
			out = append(out, run)
		}
	}
	return out
}

func differ(a, b *image.RGBA, r image.Rectangle) bool {
	for y := r.Min.Y; y < r.Max.Y; y++ {
		i, j := a.PixOffset(r.Min.X, y), a.PixOffset(r.Max.X, y)
		if string(a.Pix[i:j]) != string(b.Pix[i:j]) {
			return true
		}
	}
	return false
}

func copyRect(dst, src *image.RGBA, r image.Rectangle) {
	for y := r.Min.Y; y < r.Max.Y; y++ {
		i, j := dst.PixOffset(r.Min.X, y), dst.PixOffset(r.Max.X, y)
		copy(dst.Pix[i:j], src.Pix[i:j])
	}
}

// sendUpdate writes one FramebufferUpdate of rects in the client's pixel
// format: Zlib-encoded when the client accepts it (one zlib stream a
// session, flushed at each rectangle, as RFC 6143 §7.7.4 has it), which
// shrinks a screen of flat colours a hundredfold; Raw otherwise.
func (c *session) sendUpdate(w *bufio.Writer, screen *image.RGBA, rects []image.Rectangle) error {
	c.mu.Lock()
	pf, useZlib := c.pf, c.zlib
	c.mu.Unlock()
	var hdr [12]byte
	hdr[0] = 0 // FramebufferUpdate
	binary.BigEndian.PutUint16(hdr[2:], uint16(len(rects)))
	w.Write(hdr[:4])
	bpp := int(pf.BPP) / 8
	var row []byte
	for _, r := range rects {
		binary.BigEndian.PutUint16(hdr[0:], uint16(r.Min.X))
		binary.BigEndian.PutUint16(hdr[2:], uint16(r.Min.Y))
		binary.BigEndian.PutUint16(hdr[4:], uint16(r.Dx()))
		binary.BigEndian.PutUint16(hdr[6:], uint16(r.Dy()))
		enc := encodingRaw
		if useZlib {
			enc = encodingZlib
		}
		binary.BigEndian.PutUint32(hdr[8:], uint32(enc))
		w.Write(hdr[:12])
		if cap(row) < r.Dx()*bpp {
			row = make([]byte, r.Dx()*bpp)
		}
		row = row[:r.Dx()*bpp]
		var out io.Writer = w
		if useZlib {
			if c.zw == nil {
				c.zw, _ = zlib.NewWriterLevel(&c.zbuf, zlib.BestSpeed) // a valid level: never fails
			}
			out = c.zw
		}
		for y := r.Min.Y; y < r.Max.Y; y++ {
			pf.encode(row, screen.Pix[screen.PixOffset(r.Min.X, y):screen.PixOffset(r.Max.X, y)])
			if _, err := out.Write(row); err != nil {
				return err
			}
		}
		if useZlib {
			if err := c.zw.Flush(); err != nil {
				return err
			}
			var n [4]byte
			binary.BigEndian.PutUint32(n[:], uint32(c.zbuf.Len()))
			w.Write(n[:])
			if _, err := w.Write(c.zbuf.Bytes()); err != nil {
				return err
			}
			c.zbuf.Reset()
		}
	}
	return w.Flush()
}

// encode writes RGBA pixels src as pixels of format pf into dst.
func (pf PixelFormat) encode(dst, src []byte) {
	bpp := int(pf.BPP) / 8
	fast := pf.BPP == 32 && pf.RedMax == 255 && pf.GreenMax == 255 && pf.BlueMax == 255
	for i, j := 0, 0; i+3 < len(src); i, j = i+4, j+bpp {
		var v uint32
		if fast {
			v = uint32(src[i])<<pf.RedShift | uint32(src[i+1])<<pf.GreenShift | uint32(src[i+2])<<pf.BlueShift
		} else {
			v = scale(src[i], pf.RedMax)<<pf.RedShift | scale(src[i+1], pf.GreenMax)<<pf.GreenShift | scale(src[i+2], pf.BlueMax)<<pf.BlueShift
		}
		switch {
		case bpp == 1:
			dst[j] = byte(v)
		case bpp == 2 && pf.BigEndian:
			binary.BigEndian.PutUint16(dst[j:], uint16(v))
		case bpp == 2:
			binary.LittleEndian.PutUint16(dst[j:], uint16(v))
		case pf.BigEndian:
			binary.BigEndian.PutUint32(dst[j:], v)
		default:
			binary.LittleEndian.PutUint32(dst[j:], v)
		}
	}
}

// scale maps an 8-bit channel onto 0..max, rounding.
func scale(c byte, max uint16) uint32 {
	return (uint32(c)*uint32(max) + 127) / 255
}
