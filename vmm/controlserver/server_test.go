package controlserver

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/sietch-vm/sietch/internal/httpjson"
	"github.com/sietch-vm/sietch/wire/control"
)

// fakeVM follows the control protocol's states without a machine; its
// snapshots write nothing.
type fakeVM struct {
	mu    sync.Mutex
	state string
}

func (v *fakeVM) State() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.state
}

func (v *fakeVM) Info() control.Info { return control.Info{State: v.State()} }

func (v *fakeVM) set(s string) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.state = s
	return nil
}

func (v *fakeVM) Pause() error                  { return v.set(control.StatePaused) }
func (v *fakeVM) Resume() error                 { return v.set(control.StateRunning) }
func (v *fakeVM) Stop(string)                   { v.set(control.StateStopped) }
func (v *fakeVM) Snapshot(dir string) error     { return nil }
func (v *fakeVM) SnapshotDiff(dir string) error { return control.ErrNoDiffBase }

// The state rules and the errors the VM reports map to the protocol's
// codes, whatever VM serves them.
func TestStatesAndCodes(t *testing.T) {
	vm := &fakeVM{state: control.StateCreated}
	h := New(vm, "vm-1")
	do := func(method, path, body string) (int, *control.Error) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, "http://vmm"+path, strings.NewReader(body)))
		if rec.Code < 400 {
			return rec.Code, nil
		}
		var eb httpjson.Envelope
		json.Unmarshal(rec.Body.Bytes(), &eb)
		return rec.Code, eb.Error
	}
	for _, tc := range []struct {
		state, method, path, body string
		status                    int
		code                      string
	}{
		{control.StateCreated, "PUT", "/pause", "", 409, control.CodeNotStarted},
		{control.StateRunning, "PUT", "/resume", "", 409, control.CodeNotPaused},
		{control.StateRunning, "PUT", "/pause", "", 204, ""},
		{control.StatePaused, "PUT", "/pause", "", 409, control.CodeAlreadyPaused},
		{control.StatePaused, "PUT", "/resume", "", 204, ""},
		{control.StateRunning, "PUT", "/snapshot", `{"dir":"/s","kind":"diff"}`, 409, control.CodeNoDiffBase},
		{control.StateRunning, "PUT", "/snapshot", `{"dir":"rel"}`, 400, control.CodeInvalidArgument},
		{control.StateRunning, "PUT", "/snapshot", `{"dir":"/s","colour":1}`, 400, httpjson.CodeUnknownField},
		{control.StateRunning, "PUT", "/stop", "", 204, ""},
		{control.StateStopped, "PUT", "/stop", "", 409, control.CodeStopped},
		{control.StateRunning, "GET", "/nope", "", 404, httpjson.CodeNotFound},
		{control.StateRunning, "POST", "/info", "", 405, httpjson.CodeMethodNotAllowed},
	} {
		vm.set(tc.state)
		status, e := do(tc.method, tc.path, tc.body)
		if status != tc.status || (tc.code != "" && (e == nil || e.Code != tc.code || e.Message == "")) {
			t.Errorf("%s %s %s in %s: %d %+v; want %d %s", tc.method, tc.path, tc.body, tc.state, status, e, tc.status, tc.code)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "http://vmm/info", nil))
	var info control.Info
	if json.Unmarshal(rec.Body.Bytes(), &info); info.ID != "vm-1" {
		t.Errorf("info %s: want the id", rec.Body)
	}
}

func TestListenRefusesLiveSocket(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "vmm.sock")
	ln, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode = %v, %v; want 0600", fi.Mode(), err)
	}
	if _, err := Listen(sock); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Errorf("second listener on a live socket: %v, want a refusal", err)
	}
	// A vmm that died leaves its socket file behind: the next one takes it.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	ln2, err := Listen(sock)
	if err != nil {
		t.Fatalf("listen on a stale socket: %v", err)
	}
	ln2.Close()

	file := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(file, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(file); err == nil {
		t.Error("Listen took over a regular file")
	}
	if b, _ := os.ReadFile(file); string(b) != "keep me" {
		t.Error("Listen damaged a regular file")
	}
}

// Any request gets a well-formed answer: no panic, and every error is a
// JSON body with a code.
func FuzzControlRequest(f *testing.F) {
	f.Add("GET", "/info", "")
	f.Add("PUT", "/pause", "")
	f.Add("PUT", "/resume", "{}")
	f.Add("PUT", "/snapshot", `{"dir": "/dev/null/s", "kind": "full"}`)
	f.Add("PUT", "/snapshot", `{"dir": "/tmp/s", "kind": "full", "x": 1}`)
	f.Add("PUT", "/snapshot", `{"dir": "\u0000"}`)
	f.Add("PUT", "/snapshot", `{"dir": "/a"}{"dir": "/b"}`)
	f.Add("POST", "/info", "x")
	f.Add("PATCH", "/vm", `{"state": "Paused"}`)
	f.Add("GET", "/../info", "")
	f.Add("PUT", "/stop", "")
	h := New(&fakeVM{state: control.StateRunning}, "")
	f.Fuzz(func(t *testing.T, method, path, body string) {
		req, err := http.NewRequest(method, "http://vmm"+path, strings.NewReader(body))
		if err != nil {
			return // not a request a client could send
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code < 400 {
			return
		}
		var eb httpjson.Envelope
		if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil || eb.Error == nil || eb.Error.Code == "" || eb.Error.Message == "" {
			t.Fatalf("%q %q: status %d with body %q, want a JSON error with a code", method, path, rec.Code, rec.Body)
		}
	})
}
