package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/sietch-vm/sietch/guest-init/agent/agenttest"
	"github.com/sietch-vm/sietch/internal/httpjson"
	"github.com/sietch-vm/sietch/wire/agentproto"
)

// raw sends one request as curl through socat would and returns the
// status, the Allow header and the decoded JSON error body.
func raw(t *testing.T, env *testEnv, method, path, body string, hdr map[string]string) (int, string, Error) {
	t.Helper()
	dial := agentproto.DialUDS(env.sock, agentproto.Port)
	hc := &http.Client{Transport: &http.Transport{
		DialContext:       func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) },
		DisableKeepAlives: true,
	}}
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(testCtx(t), method, "http://agent"+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var envl httpjson.Envelope
	if resp.StatusCode >= 400 && resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		if err := json.Unmarshal(b, &envl); err != nil || envl.Error == nil || envl.Error.Code == "" || envl.Error.Message == "" {
			t.Errorf("%s %s: %d body %q is not the JSON error envelope with code and message", method, path, resp.StatusCode, b)
		}
	}
	if envl.Error == nil {
		return resp.StatusCode, resp.Header.Get("Allow"), Error{}
	}
	return resp.StatusCode, resp.Header.Get("Allow"), *envl.Error
}

// Every kind of bad request gets a 4xx with a JSON reason, and the agent
// keeps serving.
func TestMalformedRequests(t *testing.T) {
	env := startAgent(t, Config{})
	big := `{"cmd":"true","args":["` + strings.Repeat("a", 100<<10) + `"]}`
	tests := []struct {
		name, method, path, body string
		hdr                      map[string]string
		status                   int
		code                     string
	}{
		{"bad JSON", "POST", "/v1/exec", `{"cmd":`, nil, 400, "invalid_json"},
		{"not JSON", "POST", "/v1/exec", `cmd=true`, nil, 400, "invalid_json"},
		{"empty body", "POST", "/v1/exec", ``, nil, 400, "invalid_json"},
		{"unknown field", "POST", "/v1/exec", `{"cmd":"true","bogus":1}`, nil, 400, "unknown_field"},
		{"wrong type", "POST", "/v1/exec", `{"cmd":5}`, nil, 400, "invalid_json"},
		{"trailing data", "POST", "/v1/exec", `{"cmd":"true"} {}`, nil, 400, "invalid_json"},
		{"missing cmd", "POST", "/v1/exec", `{"args":["x"]}`, nil, 400, "bad_request"},
		{"NUL in arg", "POST", "/v1/exec", `{"cmd":"true","args":["a\u0000b"]}`, nil, 400, "bad_request"},
		{"bad env name", "POST", "/v1/exec", `{"cmd":"true","env":{"A=B":"c"}}`, nil, 400, "bad_request"},
		{"negative timeout", "POST", "/v1/exec", `{"cmd":"true","timeout_ms":-1}`, nil, 400, "bad_request"},
		{"huge body", "POST", "/v1/exec", big, nil, 413, "body_too_large"},
		{"wrong method", "PUT", "/v1/exec", ``, nil, 405, "method_not_allowed"},
		{"wrong method health", "DELETE", "/v1/health", ``, nil, 405, "method_not_allowed"},
		{"unknown endpoint", "GET", "/v2/nothing", ``, nil, 404, "not_found"},
		{"signal unknown exec", "POST", "/v1/exec/nope/signal", `{"signal":"SIGTERM"}`, nil, 404, "not_found"},
		{"signal bad name", "POST", "/v1/exec/nope/signal", `{"signal":"SIGNOPE"}`, nil, 400, "bad_request"},
		{"signal number too big", "POST", "/v1/exec/nope/signal", `{"signal":"99"}`, nil, 400, "bad_request"},
		{"resize zero", "POST", "/v1/exec/nope/resize", `{"rows":0,"cols":80}`, nil, 400, "bad_request"},
		{"resize overflow", "POST", "/v1/exec/nope/resize", `{"rows":70000,"cols":80}`, nil, 400, "invalid_json"},
		{"stdin unknown exec", "POST", "/v1/exec/nope/stdin", `x`, nil, 404, "not_found"},
		{"unknown query", "GET", "/v1/stat?path=/x&bogus=1", ``, nil, 400, "bad_request"},
		{"repeated query", "GET", "/v1/stat?path=/x&path=/y", ``, nil, 400, "bad_request"},
		{"bad escape", "GET", "/v1/stat?path=%zz", ``, nil, 400, "bad_request"},
		{"bad mode", "POST", "/v1/mkdir?path=" + env.root + "/m&mode=999", ``, nil, 400, "bad_request"},
		{"mode too big", "POST", "/v1/mkdir?path=" + env.root + "/m&mode=77777", ``, nil, 400, "bad_request"},
		{"bad bool", "POST", "/v1/mkdir?path=" + env.root + "/m&parents=maybe", ``, nil, 400, "bad_request"},
		{"NUL path", "GET", "/v1/stat?path=%2Fa%00b", ``, nil, 400, "bad_request"},
		{"upload to root", "PUT", "/v1/files?path=" + env.root, `x`, nil, 400, "bad_request"},
		{"port not upgraded", "POST", "/v1/ports/80/connect", ``, nil, 400, "bad_request"},
		{"port zero", "POST", "/v1/ports/0/connect", ``, map[string]string{"Connection": "Upgrade", "Upgrade": "tcp"}, 400, "bad_request"},
		{"port too big", "POST", "/v1/ports/70000/connect", ``, map[string]string{"Connection": "Upgrade", "Upgrade": "tcp"}, 400, "bad_request"},
		{"port not a number", "POST", "/v1/ports/http/connect", ``, map[string]string{"Connection": "Upgrade", "Upgrade": "tcp"}, 400, "bad_request"},
		{"shutdown unsupported", "POST", "/v1/shutdown", `{"poweroff":true}`, nil, 501, "not_implemented"},
		{"shutdown bad body", "POST", "/v1/shutdown", `{"poweroff":"yes"}`, nil, 400, "invalid_json"},
		{"huge header", "GET", "/v1/health", ``, map[string]string{"X-Big": strings.Repeat("b", 64<<10)}, 431, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, allow, e := raw(t, env, tt.method, tt.path, tt.body, tt.hdr)
			if status != tt.status || e.Code != tt.code {
				t.Fatalf("got %d %q (%s); want %d %q", status, e.Code, e.Message, tt.status, tt.code)
			}
			if status == 405 && allow == "" {
				t.Fatal("405 without an Allow header")
			}
		})
	}
	if h, err := env.c.Health(testCtx(t)); err != nil || h.Status != "ok" {
		t.Fatalf("agent unhealthy after bad requests: %+v %v", h, err)
	}
}

// Garbage instead of HTTP on a stream does not hurt the agent.
func TestGarbageStream(t *testing.T) {
	env := startAgent(t, Config{})
	for _, junk := range []string{"\x00\x01\x02\r\n\r\n", "GET / HTTP/9.9\r\n\r\n", strings.Repeat("A", 1<<20)} {
		c, err := agentproto.DialUDS(env.sock, agentproto.Port)(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		go io.WriteString(c, junk)
		io.Copy(io.Discard, io.LimitReader(c, 1<<16))
		c.Close()
	}
	if _, err := env.c.Health(testCtx(t)); err != nil {
		t.Fatalf("agentproto.Health after garbage: %v", err)
	}
}

func TestHealth(t *testing.T) {
	env := startAgent(t, Config{})
	h, err := env.c.Health(testCtx(t))
	if err != nil {
		t.Fatalf("Health: %v", err)
	}
	if h.Status != "ok" || h.UptimeS <= 0 || h.MemTotal == 0 || h.MemAvailable == 0 || h.MemAvailable > h.MemTotal ||
		h.DiskTotal == 0 || h.DiskFree > h.DiskTotal || h.CPUs < 1 || h.Load1 < 0 {
		t.Fatalf("implausible health: %+v", h)
	}
}

func TestShutdown(t *testing.T) {
	called := make(chan bool, 1)
	env := startAgent(t, Config{Shutdown: func(poweroff bool) error { called <- poweroff; return nil }})
	if err := env.c.Shutdown(testCtx(t), true); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if !<-called {
		t.Fatal("Config.Shutdown got poweroff=false")
	}
}

// The port relay carries bytes both ways and passes on half-closes: the
// echo server sees EOF only when the client closes its write side, then
// sends a trailer and closes.
func TestPortRelay(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				n, _ := io.Copy(c, c)
				fmt.Fprintf(c, "bye after %d", n)
			}()
		}
	}()
	env := startAgent(t, Config{})
	ctx := testCtx(t)
	port := ln.Addr().(*net.TCPAddr).Port
	for i := 0; i < 3; i++ {
		c, err := env.c.ConnectPort(ctx, port)
		if err != nil {
			t.Fatalf("ConnectPort: %v", err)
		}
		br := bufio.NewReader(c)
		io.WriteString(c, "hello\n")
		if line, err := br.ReadString('\n'); err != nil || line != "hello\n" {
			t.Fatalf("echo: %q %v", line, err)
		}
		payload := strings.Repeat("x", 1<<20)
		go func() {
			io.WriteString(c, payload)
			c.(interface{ CloseWrite() error }).CloseWrite()
		}()
		rest, err := io.ReadAll(br)
		if err != nil || string(rest) != payload+fmt.Sprintf("bye after %d", len(payload)+6) {
			t.Fatalf("after half-close: %d bytes, %v", len(rest), err)
		}
		c.Close()
	}

	// A port nobody listens on: 502 with a reason.
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := closed.Addr().(*net.TCPAddr).Port
	closed.Close()
	_, err = env.c.ConnectPort(ctx, dead)
	var e *Error
	if !errors.As(err, &e) || e.Status != http.StatusBadGateway || !strings.Contains(e.Message, "refused") {
		t.Fatalf("ConnectPort to a closed port: %v; want 502 naming the refusal", err)
	}
}

// agentproto.DialUDS names what went wrong in the handshake.
func TestDialUDSErrors(t *testing.T) {
	env := startAgent(t, Config{})
	_, err := agentproto.DialUDS(env.sock, 9999)(testCtx(t))
	if err == nil || !strings.Contains(err.Error(), "nothing listens on guest port 9999") {
		t.Fatalf("dial refused port: %v", err)
	}
	_, err = agentproto.DialUDS(env.sock+".missing", agentproto.Port)(testCtx(t))
	if err == nil || !strings.Contains(err.Error(), "is the VM running") {
		t.Fatalf("dial missing socket: %v", err)
	}
	// A device that answers something else.
	sock := t.TempDir() + "/odd.sock"
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		agenttest.ReadConnect(c)
		io.WriteString(c, "NOPE busy\n")
		c.Close()
	}()
	_, err = agentproto.DialUDS(sock, agentproto.Port)(testCtx(t))
	if err == nil || !strings.Contains(err.Error(), `"NOPE busy"`) {
		t.Fatalf("dial odd device: %v; want the reply named", err)
	}
}
