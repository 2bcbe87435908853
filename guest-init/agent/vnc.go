package agent

import (
	"context"
	"errors"
	"fmt"
	"image"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/coder/websocket"

	"github.com/sietch-vm/sietch/guest-init/agent/desktop/rfb"
	"github.com/sietch-vm/sietch/wire/agentproto"
)

// DefaultNoVNC is where Debian's novnc package puts noVNC's page.
const DefaultNoVNC = "/usr/share/novnc"

// maxVNCSessions bounds the VNC sessions of one display.
const maxVNCSessions = 8

// vncServer serves one display over RFB on a guest loopback port, and
// noVNC's page with a WebSocket into the same server on another, from
// the agent's own X connection: no VNC server process runs in the guest.
// Nothing listens until POST /v1/desktop/vnc sets a password.
type vncServer struct {
	display  string
	password atomic.Pointer[string]
	srv      *rfb.Server
	ln, web  net.Listener
	webSrv   *http.Server

	mu    sync.Mutex
	conns map[net.Conn]bool
}

// handleVNC serves a display over VNC with a new password:
// POST /v1/desktop/vnc.
func (a *Agent) handleVNC(w http.ResponseWriter, r *http.Request) {
	var req agentproto.VNCRequest
	if e := decodeJSON(r.Body, maxJSONBody, &req); e != nil {
		writeError(w, e)
		return
	}
	if err := validVNCPassword(req.Password); err != nil {
		writeError(w, badRequest("%v", err))
		return
	}
	name := req.Display
	if name == "" {
		name = agentproto.DefaultDisplay
	}
	num, err := displayNumber(name)
	if err != nil {
		writeError(w, badRequest("%v", err))
		return
	}
	if _, e := a.display(name); e != nil { // the X server must be up
		writeError(w, e)
		return
	}
	s, e := a.vncServer(name, num)
	if e != nil {
		writeError(w, e)
		return
	}
	s.password.Store(&req.Password)
	st := agentproto.VNCState{Port: s.ln.Addr().(*net.TCPAddr).Port}
	if s.web != nil {
		st.WebPort = s.web.Addr().(*net.TCPAddr).Port
	}
	a.log.Info("agent: VNC password set", "display", name, "port", st.Port, "web_port", st.WebPort)
	writeJSON(w, http.StatusOK, st)
}

func validVNCPassword(p string) error {
	if len(p) < 6 || len(p) > 8 {
		return fmt.Errorf("a VNC password of %d characters: want 6 to 8 (VNC authentication uses 8)", len(p))
	}
	for _, c := range []byte(p) {
		if c < 0x21 || c > 0x7e {
			return errors.New("a VNC password must be printable ASCII without spaces")
		}
	}
	return nil
}

// displayNumber is N of ":N" or ":N.S".
func displayNumber(name string) (int, error) {
	rest, _ := strings.CutPrefix(name, ":")
	rest, _, _ = strings.Cut(rest, ".")
	n, err := strconv.Atoi(rest)
	if !strings.HasPrefix(name, ":") || err != nil || n < 0 || n > 99 {
		return 0, fmt.Errorf("display %q: want :N with N from 0 to 99, such as :1", name)
	}
	return n, nil
}

// vncServer returns the display's server, starting it on its ports.
func (a *Agent) vncServer(name string, num int) (*vncServer, *Error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil, apiErr(codeConflict, "the agent is shutting down")
	}
	if s := a.vnc[name]; s != nil {
		return s, nil
	}
	s := &vncServer{display: name, conns: map[net.Conn]bool{}}
	s.srv = &rfb.Server{Screen: agentScreen{a, name}, Name: "sietch " + name, Log: a.log,
		Password: func() string {
			if p := s.password.Load(); p != nil {
				return *p
			}
			return ""
		}}
	var err error
	if s.ln, err = net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(agentproto.VNCPortBase+num))); err != nil {
		return nil, apiErr(codeConflict, "serve VNC for %s: %v (is another VNC server running on it?)", name, err)
	}
	go s.accept(s.ln, func(c net.Conn) { s.srv.Serve(c) })
	dir := a.cfg.NoVNC
	if dir == "" {
		dir = DefaultNoVNC
	}
	if _, err := os.Stat(dir + "/vnc.html"); err == nil {
		if web, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(agentproto.WebPortBase+num))); err == nil {
			s.web = web
			s.webSrv = &http.Server{Handler: s.webHandler(dir)}
			go s.webSrv.Serve(web)
		} else {
			a.log.Warn("agent: noVNC not served", "display", name, "err", err)
		}
	}
	if a.vnc == nil {
		a.vnc = map[string]*vncServer{}
	}
	a.vnc[name] = s
	return s, nil
}

// accept serves each connection of ln with serve, at most
// maxVNCSessions at a time.
func (s *vncServer) accept(ln net.Listener, serve func(net.Conn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		if !s.track(c) {
			c.Close()
			continue
		}
		go func() {
			defer s.untrack(c)
			serve(c)
		}()
	}
}

func (s *vncServer) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.conns) >= maxVNCSessions {
		return false
	}
	s.conns[c] = true
	return true
}

func (s *vncServer) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	c.Close()
}

// endSessions closes every session.
func (s *vncServer) endSessions() {
	s.mu.Lock()
	conns := make([]net.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// close stops listening and ends every session.
func (s *vncServer) close() {
	s.ln.Close()
	if s.webSrv != nil {
		s.webSrv.Close()
	}
	s.endSessions()
}

// webHandler serves noVNC's files from dir ("/" opens its page and
// connects) and, at /websockify (noVNC's default path), RFB over a
// WebSocket of binary messages.
func (s *vncServer) webHandler(dir string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/websockify", func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"binary"}})
		if err != nil {
			return // Accept answered the client
		}
		ws.SetReadLimit(rfb.MaxCutText + 4096)
		c := websocket.NetConn(context.Background(), ws, websocket.MessageBinary)
		if !s.track(c) {
			ws.Close(websocket.StatusTryAgainLater, "too many VNC sessions")
			return
		}
		defer s.untrack(c)
		s.srv.Serve(c)
	})
	files := http.FileServer(http.Dir(dir))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" {
			q := r.URL.Query()
			q.Set("autoconnect", "1")
			if q.Get("resize") == "" {
				q.Set("resize", "scale")
			}
			http.Redirect(w, r, "/vnc.html?"+q.Encode(), http.StatusFound)
			return
		}
		files.ServeHTTP(w, r)
	})
	return mux
}

// ownService returns what serves guest port port when it is one of the
// agent's own VNC or noVNC listeners (nil otherwise), to serve a relayed
// stream in the agent instead of through the guest's loopback.
func (a *Agent) ownService(port int) func(net.Conn) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, s := range a.vnc {
		switch {
		case s.ln.Addr().(*net.TCPAddr).Port == port:
			return func(c net.Conn) { s.serveTracked(c, func(c net.Conn) { s.srv.Serve(c) }) }
		case s.web != nil && s.web.Addr().(*net.TCPAddr).Port == port:
			return func(c net.Conn) {
				// One connection's HTTP server (noVNC's page, then its
				// WebSocket upgrade on the same connection).
				srv := &http.Server{Handler: s.webSrv.Handler}
				ln := &oneConnListener{c: c, done: make(chan struct{})}
				srv.ConnState = func(_ net.Conn, st http.ConnState) {
					if st == http.StateClosed || st == http.StateHijacked {
						ln.finish()
					}
				}
				go srv.Serve(ln)
				<-ln.done // a hijacked WebSocket goes on in its handler
			}
		}
	}
	return nil
}

// serveTracked serves c with serve, counted against maxVNCSessions.
func (s *vncServer) serveTracked(c net.Conn, serve func(net.Conn)) {
	if !s.track(c) {
		c.Close()
		return
	}
	defer s.untrack(c)
	serve(c)
}

// oneConnListener is a listener that yields one connection, then blocks
// until closed; done closes when that connection is finished with.
type oneConnListener struct {
	mu     sync.Mutex
	c      net.Conn
	done   chan struct{}
	closed bool
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	c := l.c
	l.c = nil
	l.mu.Unlock()
	if c != nil {
		return c, nil
	}
	<-l.done
	return nil, net.ErrClosed
}

func (l *oneConnListener) finish() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.closed = true
		close(l.done)
	}
}

func (l *oneConnListener) Close() error { l.finish(); return nil }

func (l *oneConnListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// forgetVNCPasswords clears every display's VNC password and ends its
// sessions: a machine restored with a new identity must not take its
// source's password.
func (a *Agent) forgetVNCPasswords() {
	a.mu.Lock()
	servers := make([]*vncServer, 0, len(a.vnc))
	for _, s := range a.vnc {
		servers = append(servers, s)
	}
	a.mu.Unlock()
	for _, s := range servers {
		s.password.Store(nil)
		s.endSessions()
	}
}

// agentScreen is a display as the VNC server sees it: through the agent's
// connection, opened again if the X server restarted.
type agentScreen struct {
	a    *Agent
	name string
}

func (s agentScreen) Size() (int, int) {
	d, e := s.a.display(s.name)
	if e != nil {
		return 1, 1
	}
	return d.Size()
}

func (s agentScreen) ScreenshotInto(dst *image.RGBA, r image.Rectangle) error {
	d, e := s.a.display(s.name)
	if e != nil {
		return e
	}
	err := d.ScreenshotInto(dst, r)
	if err != nil {
		s.a.dropDisplay(s.name, d)
	}
	return err
}

func (s agentScreen) PointerEvent(x, y int, buttons uint8) error {
	d, e := s.a.display(s.name)
	if e != nil {
		return e
	}
	return d.PointerEvent(x, y, buttons)
}

func (s agentScreen) KeyEvent(sym uint32, down bool) error {
	d, e := s.a.display(s.name)
	if e != nil {
		return e
	}
	return d.KeyEvent(sym, down)
}
