package httpjson

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

type limits struct {
	CPUs int `json:"cpus,omitempty"`
}

type inner struct {
	Name string
}

type embedded struct {
	Kind string `json:"kind"`
}

type request struct {
	embedded
	Image   string            `json:"image"`
	Limits  limits            `json:"limits"`
	Labels  map[string]string `json:"labels"`
	Items   []inner           `json:"items"`
	Mode    os.FileMode       `json:"mode"`
	When    time.Time         `json:"when"`
	Any     any               `json:"any"`
	Skipped string            `json:"-"`
	hidden  int
}

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		body    string
		emptyOK bool
		status  int
		code    string
		msg     string
	}{
		{body: `{"image":"a","limits":{"cpus":2},"labels":{"x":"y"},"items":[{"name":"n"}],"kind":"k","when":"2026-01-01T00:00:00Z","any":{"free":1}}`},
		{body: `{"IMAGE":"a","Limits":{"CPUS":1}}`}, // encoding/json folds case
		{body: ``, emptyOK: true},
		{body: "  \n", status: 400, code: CodeInvalidJSON, msg: "empty"},
		{body: `{"image":"a","colour":"red"}`, status: 400, code: CodeUnknownField, msg: `"colour"`},
		{body: `{"limits":{"cpus":1,"gpus":2}}`, status: 400, code: CodeUnknownField, msg: `"limits.gpus"`},
		{body: `{"items":[{"name":"a"},{"nme":"b"}]}`, status: 400, code: CodeUnknownField, msg: `"items[1].nme"`},
		{body: `{"Skipped":"x"}`, status: 400, code: CodeUnknownField, msg: `"Skipped"`},
		{body: `{"hidden":1}`, status: 400, code: CodeUnknownField, msg: `"hidden"`},
		{body: `{"image":1}`, status: 400, code: CodeInvalidJSON, msg: `field "image"`},
		{body: `{"image":"a"} {}`, status: 400, code: CodeInvalidJSON, msg: "after the JSON object"},
		{body: `{"image":`, status: 400, code: CodeInvalidJSON},
		{body: `[1]`, status: 400, code: CodeInvalidJSON},
		{body: `{"image":"` + strings.Repeat("a", 100) + `"}`, status: 413, code: CodeBodyTooLarge, msg: "64 bytes"},
	} {
		var r request
		e := Decode(strings.NewReader(tc.body), 64, &r, tc.emptyOK)
		if tc.status == 0 && len(tc.body) > 64 {
			e = Decode(strings.NewReader(tc.body), 1024, &r, tc.emptyOK)
		}
		switch {
		case tc.status == 0 && e != nil:
			t.Errorf("%s: %v", tc.body, e)
		case tc.status != 0 && (e == nil || e.Status != tc.status || e.Code != tc.code || !strings.Contains(e.Message, tc.msg)):
			t.Errorf("%s: got %v; want %d %s mentioning %q", tc.body, e, tc.status, tc.code, tc.msg)
		}
	}
}

func TestMuxAndEnvelope(t *testing.T) {
	m := NewMux()
	m.Handle("GET", "/v1/things/{id}", func(w http.ResponseWriter, r *http.Request) {
		Write(w, http.StatusOK, map[string]string{"id": r.PathValue("id")})
	})
	m.Handle("DELETE", "/v1/things/{id}", func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, &Error{Status: http.StatusServiceUnavailable, Code: "agent_unavailable", Message: "later", Retry: true})
	})
	srv := httptest.NewServer(m.Handler("GET /v1/openapi.yaml lists them"))
	defer srv.Close()
	do := func(method, path string) (*http.Response, *Error) {
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode < 400 {
			return resp, nil
		}
		return resp, ReadError(resp, 1<<16)
	}
	if resp, e := do("GET", "/v1/things/7"); e != nil || resp.StatusCode != 200 {
		t.Errorf("GET: %v %v", resp.Status, e)
	}
	if resp, e := do("PUT", "/v1/things/7"); e == nil || e.Code != CodeMethodNotAllowed || resp.Header.Get("Allow") != "DELETE, GET" {
		t.Errorf("PUT: %v, Allow %q", e, resp.Header.Get("Allow"))
	}
	if _, e := do("GET", "/v2/nothing"); e == nil || e.Status != 404 || e.Code != CodeNotFound || !strings.Contains(e.Message, "openapi.yaml") {
		t.Errorf("GET of no route: %v", e)
	}
	if _, e := do("DELETE", "/v1/things/7"); e == nil || !e.Retry || e.Code != "agent_unavailable" || e.Status != 503 {
		t.Errorf("an error with retry: %v", e)
	}
	if got := m.Routes(); len(got) != 2 || got[0] != (Route{"GET", "/v1/things/{id}"}) {
		t.Errorf("Routes: %v", got)
	}
	b, _ := json.Marshal(Envelope{&Error{Code: "x", Message: "y"}})
	if string(b) != `{"error":{"code":"x","message":"y"}}` {
		t.Errorf("envelope %s", b)
	}
}

// FuzzDecode: any body decodes or is refused with a 4xx; never a panic.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{`{"image":"a","limits":{"cpus":2}}`, `{"x":1}`, `{"items":[{"q":1}]}`, `[]`, `{`, ``, `null`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var r request
		if e := Decode(strings.NewReader(string(b)), 1<<16, &r, false); e != nil && (e.Status < 400 || e.Status > 499 || e.Message == "") {
			t.Fatalf("%q: %+v", b, e)
		}
	})
}
