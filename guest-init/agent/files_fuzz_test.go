package agent

import (
	"strings"
	"testing"
)

// FuzzDecodeRename: any body is a rename of two paths inside the root or
// a 4xx with a reason.
func FuzzDecodeRename(f *testing.F) {
	for _, s := range []string{
		`{"from":"/srv/r/a","to":"/srv/r/b"}`, `{"from":"/srv/r/a","to":"/srv/r/../b"}`, `{"from":"/etc/passwd","to":"/srv/r/p"}`,
		`{"from":"a","to":"b"}`, `{"from":"/srv/r/a\u0000","to":"/srv/r/b"}`, `{"from":"/srv/r"}`, `{"x":1}`, `{`, `null`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		p, e := decodeRename(strings.NewReader(string(body)), "/srv/r")
		if e != nil {
			if e.Status < 400 || e.Status > 499 || e.Message == "" {
				t.Fatalf("error %+v is not a 4xx with a reason", e)
			}
			return
		}
		for _, rel := range []string{p.From.Rel, p.To.Rel} {
			if rel == "" || strings.HasPrefix(rel, "/") || rel == ".." || strings.HasPrefix(rel, "../") || strings.Contains(rel, "/../") || strings.HasSuffix(rel, "/..") || strings.ContainsRune(rel, 0) {
				t.Fatalf("rename %+v resolved to %q, which may leave the root", p, rel)
			}
		}
	})
}
