package api

import (
	"bytes"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/sietch-vm/sietch/internal/unixmode"
)

// FuzzFilesQuery: any query of a files route is a plausible absolute path
// (with recursive where the route takes it) or a 400 with a reason.
func FuzzFilesQuery(f *testing.F) {
	for _, s := range []string{
		"path=/root/a", "path=/root&recursive=true", "path=relative", "path=/a&path=/b", "path=%2Fa%00b", "recursive=1",
		"path=/a&bogus=1", "path=/a;b", "path=/a&recursive=maybe", "", "%zz",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		for _, allowed := range [][]string{{"path"}, {"path", "recursive"}} {
			q, e := parseFilesQuery(raw, allowed...)
			if e != nil {
				if e.Status != 400 || e.Code != "bad_request" || e.Message == "" {
					t.Fatalf("parseFilesQuery(%q): %+v; want a 400 bad_request with a reason", raw, e)
				}
				continue
			}
			if !strings.HasPrefix(q.Path, "/") || len(q.Path) > maxPathLen || strings.ContainsRune(q.Path, 0) {
				t.Fatalf("parseFilesQuery(%q) accepted path %q", raw, q.Path)
			}
			if q.Recursive && len(allowed) == 1 {
				t.Fatalf("parseFilesQuery(%q) took recursive on a route without it", raw)
			}
		}
	})
}

// FuzzFilesBody: any body of mkdir or rename is a checked request or a 4xx
// with a stable code and a reason.
func FuzzFilesBody(f *testing.F) {
	for _, s := range []string{
		`{"path":"/a/b","parents":true,"mode":"0750"}`, `{"path":"/a","mode":"9"}`, `{"from":"/a","to":"/b"}`, `{"from":"a","to":"/b"}`,
		`{"path":""}`, `{"path":"/a\u0000"}`, `{}`, `{`, `null`, `[]`, `{"x":1}`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		check := func(what string, status int, code, msg string) {
			if status < 400 || status > 499 || code == "" || msg == "" {
				t.Fatalf("%s %q: %d %s %q; want a 4xx with a code and a reason", what, b, status, code, msg)
			}
		}
		req, mode, e := decodeMkdir(httptest.NewRecorder(), httptest.NewRequest("POST", "/", bytes.NewReader(b)))
		if e != nil {
			check("mkdir", e.Status, e.Code, e.Message)
		} else {
			if !strings.HasPrefix(req.Path, "/") || strings.ContainsRune(req.Path, 0) || len(req.Path) > maxPathLen {
				t.Fatalf("mkdir %q: accepted path %q", b, req.Path)
			}
			if mode&^(os.ModePerm|os.ModeSetuid|os.ModeSetgid|os.ModeSticky) != 0 {
				t.Fatalf("mkdir %q: mode %v has bits chmod does not take", b, mode)
			}
			if back, err := unixmode.Parse(unixmode.Format(mode)); req.Mode != "" && (err != nil || back != mode) {
				t.Fatalf("mkdir %q: mode %v does not survive its own format: %v %v", b, mode, back, err)
			}
		}
		rn, e := decodeRename(httptest.NewRecorder(), httptest.NewRequest("POST", "/", bytes.NewReader(b)))
		if e != nil {
			check("rename", e.Status, e.Code, e.Message)
			return
		}
		for _, p := range []string{rn.From, rn.To} {
			if !strings.HasPrefix(p, "/") || strings.ContainsRune(p, 0) || len(p) > maxPathLen {
				t.Fatalf("rename %q: accepted path %q", b, p)
			}
		}
	})
}
