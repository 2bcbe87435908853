package agent

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

const portDialTimeout = 10 * time.Second

// handleConnect relays the connection to a guest TCP port:
// POST /v1/ports/{port}/connect with "Connection: Upgrade" and
// "Upgrade: tcp". After "101 Switching Protocols" the stream carries the
// port's bytes both ways; each side's end of writing is passed on.
func (a *Agent) handleConnect(w http.ResponseWriter, r *http.Request) {
	port, err := strconv.ParseUint(r.PathValue("port"), 10, 16)
	if err != nil || port == 0 {
		writeError(w, badRequest("port %q: want a TCP port 1 to 65535", r.PathValue("port")))
		return
	}
	if !headerHas(r.Header, "Connection", "upgrade") || !strings.EqualFold(r.Header.Get("Upgrade"), "tcp") {
		writeError(w, badRequest("send \"Connection: Upgrade\" and \"Upgrade: tcp\" to open a port relay"))
		return
	}
	// The agent's own servers (VNC, noVNC) take the stream themselves:
	// through the guest's TCP loopback, every byte would cross the guest
	// kernel twice more, which costs seconds where it is emulated.
	if serve := a.ownService(int(port)); serve != nil {
		conn, buffered, ok := a.switchToTCP(w)
		if !ok {
			return
		}
		defer a.dropRelay(conn)
		a.log.Debug("agent: port relay to the agent's own server", "port", port)
		serve(&bufferedConn{Conn: conn, r: buffered})
		return
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port)))
	var d net.Dialer
	d.Timeout = portDialTimeout
	tcp, err := d.DialContext(r.Context(), "tcp", addr)
	if err != nil {
		writeError(w, apiErr(codeBadGateway, "connect to %s in the guest: %v", addr, err))
		return
	}
	conn, buffered, ok := a.switchToTCP(w)
	if !ok {
		tcp.Close()
		return
	}
	defer a.dropRelay(conn)
	a.log.Debug("agent: port relay open", "port", port)
	relay(conn, buffered, tcp)
	a.log.Debug("agent: port relay closed", "port", port)
}

// switchToTCP takes the connection over from the HTTP server, tracks it
// as a relay (the caller drops it) and answers 101; false: it could not,
// and the client has been answered or the connection closed.
func (a *Agent) switchToTCP(w http.ResponseWriter) (net.Conn, *bufio.Reader, bool) {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		writeError(w, apiErr(codeInternal, "take over the connection: %v", err))
		return nil, nil, false
	}
	if !a.addRelay(conn) {
		conn.Close()
		return nil, nil, false
	}
	brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
	if err := brw.Flush(); err != nil {
		a.dropRelay(conn)
		conn.Close()
		return nil, nil, false
	}
	return conn, brw.Reader, true
}

func headerHas(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// relay copies client→tcp (starting with what the HTTP server already
// buffered) and tcp→client until both directions end, then closes both.
func relay(client net.Conn, buffered *bufio.Reader, tcp net.Conn) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		var src io.Reader = client
		if buffered.Buffered() > 0 {
			b, _ := buffered.Peek(buffered.Buffered())
			src = io.MultiReader(strings.NewReader(string(b)), client)
		}
		io.Copy(tcp, src)
		closeWrite(tcp)
	}()
	go func() {
		defer wg.Done()
		io.Copy(client, tcp)
		closeWrite(client)
	}()
	wg.Wait()
	client.Close()
	tcp.Close()
}

// closeWrite passes on the end of a direction; without half-close
// support the whole connection closes.
func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		if cw.CloseWrite() == nil {
			return
		}
	}
	c.Close()
}

func (a *Agent) addRelay(c net.Conn) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return false
	}
	a.relays[c] = true
	return true
}

func (a *Agent) dropRelay(c net.Conn) {
	a.mu.Lock()
	delete(a.relays, c)
	a.mu.Unlock()
}

// bufferedConn reads what the HTTP server buffered first.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(b []byte) (int, error) { return c.r.Read(b) }
