package agent

import (
	"net/url"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/sietch-vm/sietch/wire/agentproto"
)

func TestResolvePath(t *testing.T) {
	tests := []struct {
		root, path, rel string
		status          int
	}{
		{"/", "/", ".", 0},
		{"/", "/etc/passwd", "etc/passwd", 0},
		{"/", "//etc//./passwd/", "etc/passwd", 0},
		{"/srv/r", "/srv/r", ".", 0},
		{"/srv/r", "/srv/r/", ".", 0},
		{"/srv/r", "/srv/r/a/b", "a/b", 0},
		{"/srv/r", "/srv/r/a/./b", "a/b", 0},
		{"/srv/r", "/srv/rx/a", "", 403},
		{"/srv/r", "/srv", "", 403},
		{"/srv/r", "/etc/passwd", "", 403},
		{"/srv/r", "/srv/r/../r/a", "", 403},
		{"/", "/a/../b", "", 403},
		{"/", "/..", "", 403},
		{"/", "a/b", "", 400},
		{"/", "", "", 400},
		{"/", "/a\x00b", "", 400},
		{"/", "/" + strings.Repeat("a", maxPathLen), "", 400},
		{"/", "/a/..b/c..", "a/..b/c..", 0},
	}
	for _, tt := range tests {
		rel, e := resolvePath(tt.root, tt.path)
		status := 0
		if e != nil {
			status = e.Status
		}
		if rel != tt.rel || status != tt.status {
			t.Errorf("resolvePath(%q, %q) = %q, %v; want %q, %d", tt.root, tt.path, rel, e, tt.rel, tt.status)
		}
	}
}

func TestParseSignal(t *testing.T) {
	tests := []struct {
		in   string
		want syscall.Signal
	}{
		{"SIGTERM", syscall.SIGTERM},
		{"TERM", syscall.SIGTERM},
		{"term", syscall.SIGTERM},
		{"sigkill", syscall.SIGKILL},
		{"9", syscall.SIGKILL},
		{"SIGWINCH", syscall.SIGWINCH},
		{"", 0},
		{"0", 0},
		{"65", 0},
		{"SIGNOPE", 0},
		{"SIG", 0},
	}
	for _, tt := range tests {
		got, e := parseSignal(tt.in)
		if got != tt.want || (e == nil) != (tt.want != 0) {
			t.Errorf("parseSignal(%q) = %v, %v; want %v", tt.in, got, e, tt.want)
		}
	}
}

func TestMergeEnv(t *testing.T) {
	got := mergeEnv([]string{"A=1", "B=2", "A=3", "C"}, map[string]string{"B": "x", "Z": "z", "D": "d"})
	want := []string{"A=3", "B=x", "C", "D=d", "Z=z"}
	if !slices.Equal(got, want) {
		t.Fatalf("mergeEnv = %q; want %q", got, want)
	}
}

func TestDecodeExecRequest(t *testing.T) {
	tests := []struct {
		body string
		ok   bool
	}{
		{`{"cmd":"ls","args":["-l"],"env":{"A":"b"},"cwd":"/","user":"0","stdin":true,"tty":{"rows":24,"cols":80},"timeout_ms":1000,"id":"x-1.y_2"}`, true},
		{`{"cmd":"ls"}`, true},
		{` {"cmd":"ls"} `, true},
		{`{"cmd":""}`, false},
		{`{"cmd":"ls","id":""}`, true}, // empty id: the agent picks one
		{`{"cmd":"ls","id":"` + strings.Repeat("a", 65) + `"}`, false},
		{`{"cmd":"ls","tty":{"rows":24}}`, false},
		{`{"cmd":"ls","timeout_ms":1e20}`, false},
		{`{"cmd":"ls","Cmd":"x"}`, true}, // encoding/json matches keys case-insensitively
		{`[]`, false},
		{`null`, false},
		{`{"cmd":"ls"}x`, false},
	}
	for _, tt := range tests {
		_, e := decodeExecRequest(strings.NewReader(tt.body))
		if (e == nil) != tt.ok {
			t.Errorf("decodeExecRequest(%.60s) = %v; want ok=%v", tt.body, e, tt.ok)
		}
	}
}

// FuzzDecodeExecRequest: any body yields a checked request or a 4xx,
// never a panic.
func FuzzDecodeExecRequest(f *testing.F) {
	for _, s := range []string{
		`{"cmd":"sh","args":["-c","echo hi"],"env":{"A":"b"},"cwd":"/tmp","user":"nobody","stdin":true,"tty":{"rows":24,"cols":80},"timeout_ms":5000}`,
		`{"cmd":"true"}`, `{"cmd":5}`, `{"cmd":"x","env":{"=":""}}`, `{"cmd":"x","args":[null]}`, `{`, `null`, "\x00", `{"id":"../x","cmd":"a"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, e := decodeExecRequest(strings.NewReader(string(body)))
		if e != nil {
			if e.Status < 400 || e.Status > 499 || e.Message == "" {
				t.Fatalf("error %+v is not a 4xx with a reason", e)
			}
			return
		}
		if req.Cmd == "" || strings.ContainsRune(req.Cmd, 0) || req.TimeoutMS < 0 || (req.TTY != nil && (req.TTY.Rows == 0 || req.TTY.Cols == 0)) {
			t.Fatalf("accepted an invalid request: %+v", req)
		}
	})
}

// FuzzDecodeIdentity: any body is a valid identity or a 4xx with a reason;
// an accepted one holds nothing guest-init would trip on.
func FuzzDecodeIdentity(f *testing.F) {
	for _, s := range []string{
		`{"sandbox_id":"sb-1","hostname":"sb-1","time":"2026-12-07T03:00:00Z","entropy":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","env":{"A":"b"},"labels":{"k":"v"}}`,
		`{"hostname":"a/b"}`, `{"entropy":"AA=="}`, `{"env":{"A=B":"c"}}`, `{"time":"1970-01-01T00:00:00Z"}`, `{`, `null`, `{"x":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var id agentproto.Identity
		e := decodeJSON(strings.NewReader(string(body)), maxJSONBody, &id)
		if e == nil {
			e = validateIdentity(&id)
		}
		if e != nil {
			if e.Status < 400 || e.Status > 499 || e.Message == "" {
				t.Fatalf("error %+v is not a 4xx with a reason", e)
			}
			return
		}
		if len(id.Hostname) > maxHostname || strings.ContainsAny(id.Hostname, "\x00/ ") || (len(id.Entropy) > 0 && len(id.Entropy) < minEntropy) || len(id.Entropy) > maxEntropy {
			t.Fatalf("accepted an invalid identity: %+v", id)
		}
		for k := range id.Env {
			if k == "" || strings.ContainsAny(k, "=\x00") {
				t.Fatalf("accepted env name %q", k)
			}
		}
	})
}

// FuzzParseFileQuery: any query string yields a path inside the root or a
// 4xx, never a panic.
func FuzzParseFileQuery(f *testing.F) {
	for _, s := range []string{
		"path=/srv/r/a&mode=0644", "path=/srv/r/../etc", "path=/etc/passwd", "path=%2Fsrv%2Fr%2Fa%00", "path=/srv/r&recursive=true",
		"path=/srv/r/d&parents=1&mode=4755", "mode=8&path=/srv/r/x", "path=a;b", "path=/srv/r/a&path=/srv/r/b", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		p, e := parseFileQuery(q, "/srv/r")
		if e != nil {
			if e.Status < 400 || e.Status > 499 || e.Message == "" {
				t.Fatalf("error %+v is not a 4xx with a reason", e)
			}
			return
		}
		if p.Rel == "" || strings.HasPrefix(p.Rel, "/") || p.Rel == ".." || strings.HasPrefix(p.Rel, "../") || strings.Contains(p.Rel, "/../") || strings.HasSuffix(p.Rel, "/..") {
			t.Fatalf("path %q resolved to %q, which may leave the root", p.Path, p.Rel)
		}
		if p.HasMode && modeBits(p.Mode) != p.Mode {
			t.Fatalf("mode %v has bits chmod does not take", p.Mode)
		}
	})
}
