package vmm

import (
	"github.com/sietch-vm/sietch/vmm/controlserver"

	"github.com/sietch-vm/sietch/internal/httpjson"

	"github.com/sietch-vm/sietch/wire/control"

	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// counterSlow prints a line about every 2 s here and runs ~20 s: long enough
// for a test to pause, resume and stop it before it powers off.
const counterSlow = "n=6000000000"

// serveControl serves m's control API on a fresh unix socket for the test.
func serveControl(t *testing.T, m *Machine) (sock string, c *control.Client) {
	t.Helper()
	sock = filepath.Join(t.TempDir(), "vmm.sock")
	ln, err := controlserver.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := controlserver.New(m, "test-vm")
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shut the control server down: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the socket file outlived the server: %v", err)
		}
	})
	return sock, control.NewClient(sock)
}

func wantCode(t *testing.T, err error, status int, code string) {
	t.Helper()
	var cerr *control.Error
	if !errors.As(err, &cerr) {
		t.Fatalf("error = %v, want a %d %s API error", err, status, code)
	}
	if cerr.Status != status || cerr.Code != code || cerr.Message == "" {
		t.Fatalf("error = %d %q %q, want %d %q with a message", cerr.Status, cerr.Code, cerr.Message, status, code)
	}
}

// The whole life of a VM driven through its control socket.
func TestControlLifecycle(t *testing.T) {
	console := &syncBuffer{}
	m := newGuest(t, "counter", counterSlow, 1, console)
	_, c := serveControl(t, m)
	ctx := t.Context()

	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State != control.StateCreated {
		t.Errorf("state before Run = %q, want %q", info.State, control.StateCreated)
	}
	wantCode(t, c.Pause(ctx), http.StatusConflict, control.CodeNotStarted)

	done := make(chan Exit, 1)
	go func() {
		e, err := m.Run(context.Background())
		if err != nil {
			t.Errorf("Run: %v", err)
		}
		done <- e
	}()
	waitFor(t, console, "counter: start")

	if info, err = c.Info(ctx); err != nil {
		t.Fatal(err)
	}
	if info.ID != "test-vm" || info.State != control.StateRunning || info.VCPUs != 1 || info.MemBytes != 64<<20 ||
		info.VMMPID != os.Getpid() || !strings.Contains(info.Cmdline, counterSlow) || info.Exit != "" {
		t.Errorf("info of the running VM = %+v", info)
	}
	if len(info.Devices) == 0 || info.Devices[0].Name != "serial0" || info.Devices[0].IOPort != 0x3f8 || info.Devices[0].IRQ != 4 {
		t.Errorf("devices = %+v, want serial0 at port 0x3f8, IRQ 4 first", info.Devices)
	}
	wantCode(t, c.Resume(ctx), http.StatusConflict, control.CodeNotPaused)

	if err := c.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	if info, err = c.Info(ctx); err != nil || info.State != control.StatePaused {
		t.Fatalf("info after pause = %+v, %v; want paused", info, err)
	}
	before := console.String()
	time.Sleep(3 * time.Second) // more than a line's worth of guest time
	if after := console.String(); after != before {
		t.Fatalf("paused guest kept printing: %q", strings.TrimPrefix(after, before))
	}
	wantCode(t, c.Pause(ctx), http.StatusConflict, control.CodeAlreadyPaused)

	if err := c.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	if info, err = c.Info(ctx); err != nil || info.State != control.StateRunning {
		t.Fatalf("info after resume = %+v, %v; want running", info, err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for console.String() == before {
		if time.Now().After(deadline) {
			t.Fatal("the resumed guest printed nothing for 60 s")
		}
		time.Sleep(10 * time.Millisecond)
	}

	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-done:
		if e.Kind != ExitStopped {
			t.Fatalf("exit = %v, want stopped; console:\n%s", e, console)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after PUT /stop")
	}
	if info, err = c.Info(ctx); err != nil || info.State != control.StateStopped || !strings.Contains(info.Exit, "control socket") {
		t.Errorf("info after stop = %+v, %v; want stopped by the control socket", info, err)
	}
	wantCode(t, c.Pause(ctx), http.StatusConflict, control.CodeStopped)
	wantCode(t, c.Stop(ctx), http.StatusConflict, control.CodeStopped)
}

// rawRequest sends one request over the unix socket and decodes an error body.
func rawRequest(t *testing.T, sock, method, path string, body io.Reader) (*http.Response, *control.Error) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	req, err := http.NewRequestWithContext(t.Context(), method, "http://vmm"+path, body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode < 400 {
		return resp, nil
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q, want application/json", method, path, ct)
	}
	var eb httpjson.Envelope
	if err := json.Unmarshal(b, &eb); err != nil || eb.Error == nil {
		t.Fatalf("%s %s: %s with a body that is no JSON error: %q", method, path, resp.Status, b)
	}
	return resp, eb.Error
}

func TestControlBadRequests(t *testing.T) {
	m := newGuest(t, "counter", "", 1, &syncBuffer{})
	sock, _ := serveControl(t, m)
	big := `{"dir": "/tmp/x", "kind": "full"}` + strings.Repeat(" ", control.MaxBody)
	tests := []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"diff snapshot before any snapshot", "PUT", "/snapshot", `{"dir": "/tmp/snap", "kind": "diff"}`, 409, control.CodeNoDiffBase},
		{"snapshot into a directory that cannot exist", "PUT", "/snapshot", `{"dir": "/dev/null/snap"}`, 500, httpjson.CodeInternal},
		{"bad JSON", "PUT", "/snapshot", `{"dir": `, 400, httpjson.CodeInvalidJSON},
		{"not an object", "PUT", "/snapshot", `["/tmp/snap"]`, 400, httpjson.CodeInvalidJSON},
		{"wrong type", "PUT", "/snapshot", `{"dir": 7}`, 400, httpjson.CodeInvalidJSON},
		{"empty body", "PUT", "/snapshot", ``, 400, httpjson.CodeInvalidJSON},
		{"trailing data", "PUT", "/snapshot", `{"dir": "/tmp/snap"} {}`, 400, httpjson.CodeInvalidJSON},
		{"unknown field", "PUT", "/snapshot", `{"dir": "/tmp/snap", "mem_file": "/x"}`, 400, httpjson.CodeUnknownField},
		{"no dir", "PUT", "/snapshot", `{"kind": "full"}`, 400, control.CodeInvalidArgument},
		{"relative dir", "PUT", "/snapshot", `{"dir": "snap"}`, 400, control.CodeInvalidArgument},
		{"bad kind", "PUT", "/snapshot", `{"dir": "/tmp/snap", "kind": "half"}`, 400, control.CodeInvalidArgument},
		{"oversized body", "PUT", "/snapshot", big, 413, httpjson.CodeBodyTooLarge},
		{"wrong method on snapshot", "GET", "/snapshot", ``, 405, httpjson.CodeMethodNotAllowed},
		{"wrong method on pause", "POST", "/pause", ``, 405, httpjson.CodeMethodNotAllowed},
		{"wrong method on info", "DELETE", "/info", ``, 405, httpjson.CodeMethodNotAllowed},
		{"no such endpoint", "GET", "/machine-config", ``, 404, httpjson.CodeNotFound},
		{"pause before the VM runs", "PUT", "/pause", ``, 409, control.CodeNotStarted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, cerr := rawRequest(t, sock, tt.method, tt.path, strings.NewReader(tt.body))
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d (error %+v)", resp.StatusCode, tt.status, cerr)
			}
			if cerr == nil || cerr.Code != tt.code || cerr.Message == "" {
				t.Fatalf("error %+v, want code %q with a message", cerr, tt.code)
			}
			if tt.status == 405 && resp.Header.Get("Allow") == "" {
				t.Error("405 without an Allow header")
			}
		})
	}
}
