package api

import (
	"bufio"
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/sietch-vm/sietch/api/client/clienttest"
	"github.com/sietch-vm/sietch/api/model"
	"github.com/sietch-vm/sietch/sandbox"
)

// Each kind of bad request gets its own status and stable code, and none
// of them hurts the server.
func TestBadRequests(t *testing.T) {
	e := newEnv(t, nil)
	sb := e.create(model.CreateRequest{Image: "counter"})
	paused := e.create(model.CreateRequest{Image: "counter"})
	e.call("POST", "/v1/sandboxes/"+paused.ID+"/pause", nil, http.StatusOK, nil)
	huge := `{"image":"counter","labels":{"k":"` + strings.Repeat("x", 2<<20) + `"}}`
	tests := []struct {
		name, method, path string
		body               any
		auth               string // "" : the right token
		status             int
		code               string
	}{
		{"bad JSON", "POST", "/v1/sandboxes", `{"image":`, "", 400, model.CodeInvalidJSON},
		{"not an object", "POST", "/v1/sandboxes", `[1,2]`, "", 400, model.CodeInvalidJSON},
		{"wrong type", "POST", "/v1/sandboxes", `{"image":5}`, "", 400, model.CodeInvalidJSON},
		{"two objects", "POST", "/v1/sandboxes", `{"image":"counter"}{}`, "", 400, model.CodeInvalidJSON},
		{"empty body", "POST", "/v1/sandboxes", ``, "", 400, model.CodeInvalidJSON},
		{"unknown field", "POST", "/v1/sandboxes", `{"image":"counter","colour":"red"}`, "", 400, model.CodeUnknownField},
		{"unknown nested field", "POST", "/v1/sandboxes", `{"image":"counter","limits":{"gpus":1}}`, "", 400, model.CodeUnknownField},
		{"neither image nor snapshot", "POST", "/v1/sandboxes", `{}`, "", 400, model.CodeBadRequest},
		{"image and snapshot", "POST", "/v1/sandboxes", `{"image":"counter","snapshot":"snap-x"}`, "", 400, model.CodeBadRequest},
		{"bad limits", "POST", "/v1/sandboxes", `{"image":"counter","limits":{"cpus":-1}}`, "", 400, model.CodeBadRequest},
		{"bad on_timeout", "POST", "/v1/sandboxes", `{"image":"counter","limits":{"on_timeout":"explode"}}`, "", 400, model.CodeBadRequest},
		{"unknown image", "POST", "/v1/sandboxes", `{"image":"nope"}`, "", 404, model.CodeNotFound},
		{"unknown snapshot", "POST", "/v1/sandboxes", `{"snapshot":"snap-nope"}`, "", 404, model.CodeNotFound},
		{"huge body", "POST", "/v1/sandboxes", huge, "", 413, model.CodeBodyTooLarge},
		{"missing sandbox", "GET", "/v1/sandboxes/sb-nope", nil, "", 404, model.CodeNotFound},
		{"delete missing sandbox", "DELETE", "/v1/sandboxes/sb-nope", nil, "", 404, model.CodeNotFound},
		{"pause missing sandbox", "POST", "/v1/sandboxes/sb-nope/pause", nil, "", 404, model.CodeNotFound},
		{"exec missing sandbox", "POST", "/v1/sandboxes/sb-nope/exec", `{"cmd":"true"}`, "", 404, model.CodeNotFound},
		{"resume a running sandbox", "POST", "/v1/sandboxes/" + sb.ID + "/resume", nil, "", 409, model.CodeWrongState},
		{"pause a paused sandbox", "POST", "/v1/sandboxes/" + paused.ID + "/pause", nil, "", 409, model.CodeWrongState},
		{"exec in a paused sandbox", "POST", "/v1/sandboxes/" + paused.ID + "/exec", `{"cmd":"true"}`, "", 409, model.CodeWrongState},
		{"diff without a full snapshot", "POST", "/v1/sandboxes/" + sb.ID + "/snapshots", `{"kind":"diff"}`, "", 409, model.CodeWrongState},
		{"bad snapshot kind", "POST", "/v1/sandboxes/" + sb.ID + "/snapshots", `{"kind":"half"}`, "", 400, model.CodeBadRequest},
		{"fork of none", "POST", "/v1/sandboxes/" + sb.ID + "/fork", `{"count":0}`, "", 400, model.CodeBadRequest},
		{"fork too many", "POST", "/v1/sandboxes/" + sb.ID + "/fork", `{"count":1000}`, "", 400, model.CodeBadRequest},
		{"fork of a foreign snapshot", "POST", "/v1/sandboxes/" + sb.ID + "/fork", `{"count":1,"snapshot":"snap-x"}`, "", 404, model.CodeNotFound},
		{"exec without cmd", "POST", "/v1/sandboxes/" + sb.ID + "/exec", `{}`, "", 400, model.CodeBadRequest},
		{"exec with bad stdin", "POST", "/v1/sandboxes/" + sb.ID + "/exec", `{"cmd":"cat","stdin":"!!"}`, "", 400, model.CodeBadRequest},
		{"upload without path", "PUT", "/v1/sandboxes/" + sb.ID + "/files", "x", "", 400, model.CodeBadRequest},
		{"upload with bad mode", "PUT", "/v1/sandboxes/" + sb.ID + "/files?path=/x&mode=999", "x", "", 400, model.CodeBadRequest},
		{"download without path", "GET", "/v1/sandboxes/" + sb.ID + "/files", nil, "", 400, model.CodeBadRequest},
		{"guest port 0", "POST", "/v1/sandboxes/" + sb.ID + "/ports", `{"guest_port":0}`, "", 400, model.CodeBadRequest},
		{"host address not an IP", "POST", "/v1/sandboxes/" + sb.ID + "/ports", `{"guest_port":80,"host_addr":"example.com"}`, "", 400, model.CodeBadRequest},
		{"remove a port not forwarded", "DELETE", "/v1/sandboxes/" + sb.ID + "/ports/1", nil, "", 404, model.CodeNotFound},
		{"remove port not a number", "DELETE", "/v1/sandboxes/" + sb.ID + "/ports/http", nil, "", 400, model.CodeBadRequest},
		{"console follow not a bool", "GET", "/v1/sandboxes/" + sb.ID + "/console?follow=maybe", nil, "", 400, model.CodeBadRequest},
		{"no token", "GET", "/v1/sandboxes", nil, "-", 401, model.CodeUnauthorized},
		{"wrong token", "GET", "/v1/sandboxes", nil, "Bearer 0123456789abcdef0123456789abcdef", 401, model.CodeUnauthorized},
		{"not bearer", "GET", "/v1/sandboxes", nil, "Basic dXNlcjpwYXNz", 401, model.CodeUnauthorized},
		{"wrong method", "PATCH", "/v1/sandboxes", nil, "", 405, model.CodeMethodNotAllowed},
		{"wrong method on a sandbox", "PUT", "/v1/sandboxes/" + sb.ID, nil, "", 405, model.CodeMethodNotAllowed},
		{"unknown route", "GET", "/v2/everything", nil, "", 404, model.CodeNotFound},
	}
	for _, tt := range tests {
		auth := "Bearer " + e.token
		switch tt.auth {
		case "":
		case "-":
			auth = ""
		default:
			auth = tt.auth
		}
		st, b := e.doAuth(tt.method, tt.path, tt.body, auth)
		if st != tt.status {
			t.Errorf("%s: %s %s: status %d, want %d: %.300s", tt.name, tt.method, tt.path, st, tt.status, b)
			continue
		}
		if got := apiError(t, b); got.Code != tt.code || got.Message == "" {
			t.Errorf("%s: error %+v, want code %s with a message", tt.name, got, tt.code)
		}
	}
	// Still serving, and nothing was created.
	var list struct{ Sandboxes []model.Sandbox }
	e.call("GET", "/v1/sandboxes", nil, http.StatusOK, &list)
	if len(list.Sandboxes) != 2 {
		t.Errorf("%d sandboxes after the bad requests, want the 2 made", len(list.Sandboxes))
	}
	e.call("DELETE", "/v1/sandboxes/"+sb.ID, nil, http.StatusNoContent, nil)
	e.call("DELETE", "/v1/sandboxes/"+paused.ID, nil, http.StatusNoContent, nil)
}

// Over a host limit, creates are refused with the limit named.
func TestHostLimits(t *testing.T) {
	e := newEnv(t, func(c *sandbox.Config) {
		c.Host = sandbox.HostLimits{Sandboxes: 2, MemoryMiB: 1024}
		c.Max = sandbox.Limits{CPUs: 2}
	})
	a := e.create(model.CreateRequest{Image: "counter"})
	b := e.create(model.CreateRequest{Image: "counter"})
	st, body := e.do("POST", "/v1/sandboxes", model.CreateRequest{Image: "counter"})
	if got := apiError(t, body); st != 429 || got.Code != model.CodeLimit || !strings.Contains(got.Message, "limit_exceeded: 2 sandboxes running, the host limit is 2") {
		t.Errorf("third sandbox: %d %+v", st, got)
	}
	st, body = e.do("POST", "/v1/sandboxes/"+a.ID+"/fork", model.ForkRequest{Count: 1})
	if got := apiError(t, body); st != 429 || got.Code != model.CodeLimit {
		t.Errorf("fork over the limit: %d %+v", st, got)
	}
	e.call("DELETE", "/v1/sandboxes/"+b.ID, nil, http.StatusNoContent, nil)
	st, body = e.do("POST", "/v1/sandboxes", model.CreateRequest{Image: "counter", Limits: model.Limits{MemoryMiB: 2048}})
	if got := apiError(t, body); st != 429 || !strings.Contains(got.Message, "host limit is 1024 MiB") {
		t.Errorf("memory over the host limit: %d %+v", st, got)
	}
	st, body = e.do("POST", "/v1/sandboxes", model.CreateRequest{Image: "counter", Limits: model.Limits{CPUs: 4}})
	if got := apiError(t, body); st != 429 || !strings.Contains(got.Message, "cpus 4 asked, the per-sandbox limit is 2") {
		t.Errorf("cpus over the per-sandbox limit: %d %+v", st, got)
	}
	e.call("DELETE", "/v1/sandboxes/"+a.ID, nil, http.StatusNoContent, nil)
}

// Every route but GET /v1/health wants the token.
func TestAuthOnEveryRoute(t *testing.T) {
	e := newEnv(t, nil)
	for _, r := range e.srv.Routes() {
		path := strings.NewReplacer("{id}", "sb-x", "{host_port}", "80").Replace(r.Path)
		for _, auth := range []string{"", "Bearer wrong-token-wrong-token"} {
			st, b := e.doAuth(r.Method, path, nil, auth)
			if r.Method == "GET" && r.Path == "/v1/health" {
				if st != http.StatusOK {
					t.Errorf("%s %s without a token: %d %s; want 200", r.Method, r.Path, st, b)
				}
				continue
			}
			if st != http.StatusUnauthorized || apiError(t, b).Code != model.CodeUnauthorized {
				t.Errorf("%s %s with auth %q: %d %s; want 401", r.Method, r.Path, auth, st, b)
			}
		}
	}
	var h model.Health
	e.call("GET", "/v1/health", nil, http.StatusOK, &h)
	if h.Status != "ok" || h.KVM == "" || h.Version == "" {
		t.Errorf("health: %+v", h)
	}
}

// The OpenAPI document lists exactly the routes the server registers.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	e := newEnv(t, nil)
	st, doc := e.do("GET", "/v1/openapi.yaml", nil)
	if st != http.StatusOK || !bytes.Equal(doc, openapiDoc) {
		t.Fatalf("GET /v1/openapi.yaml: %d, %d bytes", st, len(doc))
	}
	documented := openapiOperations(t, doc)
	var registered []string
	for _, r := range e.srv.Routes() {
		registered = append(registered, r.Method+" "+r.Path)
	}
	sort.Strings(registered)
	for _, r := range registered {
		if !documented[r] {
			t.Errorf("route %s is not in api/openapi.yaml", r)
		}
		delete(documented, r)
	}
	for op := range documented {
		t.Errorf("api/openapi.yaml documents %s, which the server does not register", op)
	}
}

// openapiOperations reads "METHOD /path" pairs from the document's paths
// object: paths are the keys indented 2 spaces under "paths:", operations
// the HTTP-method keys indented 4 under them.
func openapiOperations(t *testing.T, doc []byte) map[string]bool {
	ops := map[string]bool{}
	methods := map[string]bool{"get": true, "put": true, "post": true, "delete": true, "patch": true, "head": true, "options": true, "trace": true}
	sc := bufio.NewScanner(bytes.NewReader(doc))
	in, path := false, ""
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "paths:":
			in = true
		case in && line != "" && !strings.HasPrefix(line, " "):
			in = false
		case in && strings.HasPrefix(line, "  /") && strings.HasSuffix(line, ":"):
			path = strings.TrimSuffix(strings.TrimSpace(line), ":")
		case in && strings.HasPrefix(line, "    ") && !strings.HasPrefix(line, "     ") && strings.HasSuffix(line, ":"):
			if m := strings.TrimSuffix(strings.TrimSpace(line), ":"); methods[m] {
				ops[strings.ToUpper(m)+" "+path] = true
			}
		}
	}
	if len(ops) == 0 {
		t.Fatal("no operations found in the OpenAPI document")
	}
	return ops
}

func TestLoadToken(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "token")
	tok, err := LoadToken(p)
	if err != nil || len(tok) != 64 {
		t.Fatalf("LoadToken made %q, %v", tok, err)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v, %v; want 0600", fi.Mode(), err)
	}
	again, err := LoadToken(p)
	if err != nil || again != tok {
		t.Errorf("second LoadToken = %q, %v; want the same token", again, err)
	}
	os.Chmod(p, 0o644)
	if _, err := LoadToken(p); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("LoadToken of a world-readable file: %v; want a refusal saying chmod 600", err)
	}
}

func TestListenAddresses(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct{ addr, network string }{
		{"", "unix"}, {"unix://" + filepath.Join(dir, "u.sock"), "unix"}, {filepath.Join(dir, "p.sock"), "unix"}, {"tcp://127.0.0.1:0", "tcp"},
	} {
		ln, err := Listen(tt.addr, dir)
		if err != nil {
			t.Errorf("Listen(%q): %v", tt.addr, err)
			continue
		}
		if ln.Addr().Network() != tt.network {
			t.Errorf("Listen(%q) listens on %s", tt.addr, ln.Addr().Network())
		}
		if tt.addr == "" {
			if _, err := Listen("", dir); err == nil || !strings.Contains(err.Error(), "another sietchd") {
				t.Errorf("a second Listen on a served socket: %v", err)
			}
		}
		ln.Close()
	}
	for _, bad := range []string{"http://x", "tcp://nohost"} {
		if _, err := Listen(bad, dir); err == nil {
			t.Errorf("Listen(%q) accepted", bad)
		}
	}
}

// The SDK's in-memory test server serves exactly the real server's routes:
// code tested against the fake calls nothing the real one lacks.
func TestFakeServesTheRealRoutes(t *testing.T) {
	e := newEnv(t, nil)
	var real []string
	for _, r := range e.srv.Routes() {
		real = append(real, r.Method+" "+r.Path)
	}
	fake := clienttest.NewServer()
	defer fake.Close()
	got := fake.Routes()
	slices.Sort(real)
	slices.Sort(got)
	if !slices.Equal(real, got) {
		t.Errorf("the fake's routes differ from the real server's\nreal: %v\nfake: %v", real, got)
	}
}
