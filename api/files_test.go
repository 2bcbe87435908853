package api

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sietch-vm/sietch/api/client"
	"github.com/sietch-vm/sietch/api/model"
	"github.com/sietch-vm/sietch/sandbox"
	"github.com/sietch-vm/sietch/wire/agentproto"
)

// Bad requests to the files routes are refused by sietchd itself, with a
// reason, before anything reaches the guest (the counter guest has no
// agent: a request that got through would be a 503).
func TestFilesBadRequests(t *testing.T) {
	e := newEnv(t, nil)
	sb := e.create(model.CreateRequest{Image: "counter"})
	f := "/v1/sandboxes/" + sb.ID + "/files"
	for _, tt := range []struct {
		name, method, path string
		body               any
		status             int
		code               string
	}{
		{"list without path", "GET", f + "/list", nil, 400, model.CodeBadRequest},
		{"list relative path", "GET", f + "/list?path=etc", nil, 400, model.CodeBadRequest},
		{"list unknown parameter", "GET", f + "/list?path=/&all=1", nil, 400, model.CodeBadRequest},
		{"stat path twice", "GET", f + "/stat?path=/a&path=/b", nil, 400, model.CodeBadRequest},
		{"stat NUL", "GET", f + "/stat?path=/a%00b", nil, 400, model.CodeBadRequest},
		{"remove recursive not a bool", "DELETE", f + "?path=/a&recursive=yes-please", nil, 400, model.CodeBadRequest},
		{"remove without path", "DELETE", f, nil, 400, model.CodeBadRequest},
		{"mkdir empty body", "POST", f + "/mkdir", ``, 400, model.CodeInvalidJSON},
		{"mkdir unknown field", "POST", f + "/mkdir", `{"path":"/a","owner":"root"}`, 400, model.CodeUnknownField},
		{"mkdir bad mode", "POST", f + "/mkdir", `{"path":"/a","mode":"rwx"}`, 400, model.CodeBadRequest},
		{"mkdir relative", "POST", f + "/mkdir", `{"path":"a"}`, 400, model.CodeBadRequest},
		{"rename without to", "POST", f + "/rename", `{"from":"/a"}`, 400, model.CodeBadRequest},
		{"rename long path", "POST", f + "/rename", `{"from":"/a","to":"/` + strings.Repeat("x", 5000) + `"}`, 400, model.CodeBadRequest},
		{"tar without path", "GET", f + "/tar", nil, 400, model.CodeBadRequest},
		{"tar upload with recursive", "PUT", f + "/tar?path=/a&recursive=true", "x", 400, model.CodeBadRequest},
		{"watch recursive not a bool", "GET", f + "/watch?path=/&recursive=2", nil, 400, model.CodeBadRequest},
		{"watch wrong method", "POST", f + "/watch?path=/", nil, 405, model.CodeMethodNotAllowed},
		{"list in a missing sandbox", "GET", "/v1/sandboxes/sb-nope/files/list?path=/", nil, 404, model.CodeNotFound},
		{"list without an agent", "GET", f + "/list?path=/", nil, 503, model.CodeAgentUnavailable},
		{"watch without an agent", "GET", f + "/watch?path=/", nil, 503, model.CodeAgentUnavailable},
		{"tar upload without an agent", "PUT", f + "/tar?path=/x", "x", 503, model.CodeAgentUnavailable},
	} {
		st, b := e.do(tt.method, tt.path, tt.body)
		if got := apiError(t, b); st != tt.status || got.Code != tt.code || got.Message == "" {
			t.Errorf("%s: %s %s: %d %+v; want %d %s with a message", tt.name, tt.method, tt.path, st, got, tt.status, tt.code)
		}
	}
	e.call("DELETE", "/v1/sandboxes/"+sb.ID, nil, http.StatusNoContent, nil)
}

// Every files call of the Go SDK through the real server to an agent
// running as a host process: listing, stat, mkdir, rename, remove, trees
// as tar both ways (and a hostile one refused), and a watch.
func TestSDKFiles(t *testing.T) {
	root, sock := startAgent(t)
	e := newEnv(t, func(c *sandbox.Config) {
		c.AgentDial = func(string) func(context.Context) (net.Conn, error) { return agentproto.DialUDS(sock, agentproto.Port) }
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := client.New("unix://"+e.sock, e.token)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := c.Create(ctx, model.CreateRequest{Image: "counter"})
	if err != nil {
		t.Fatal(err)
	}
	id := sb.ID
	var ae *client.Error

	// Watch first, so every change below is seen.
	w, err := c.Watch(ctx, id, root, true)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	defer w.Close()

	fi, err := c.Mkdir(ctx, id, model.MkdirRequest{Path: root + "/proj/src", Parents: true, Mode: "0750"})
	if err != nil || fi.Type != "dir" || fi.Mode != "0750" || fi.Name != "src" {
		t.Fatalf("Mkdir: %+v %v", fi, err)
	}
	if _, err := c.Mkdir(ctx, id, model.MkdirRequest{Path: root + "/proj/src"}); !errors.As(err, &ae) || ae.Code != model.CodeConflict || ae.Status != 409 {
		t.Errorf("Mkdir of an existing directory: %v; want 409 conflict", err)
	}
	if err := c.Upload(ctx, id, root+"/proj/src/main.go", 0o644, strings.NewReader("package main\n")); err != nil {
		t.Fatal(err)
	}
	os.Symlink("src/main.go", root+"/proj/link")
	ents, err := c.ListFiles(ctx, id, root+"/proj")
	if err != nil {
		t.Fatalf("ListFiles: %v", err)
	}
	var names []string
	for _, fi := range ents {
		names = append(names, fi.Name+":"+fi.Type+":"+fi.Target)
	}
	if got := strings.Join(names, " "); got != "link:symlink:src/main.go src:dir:" {
		t.Errorf("ListFiles: %s", got)
	}
	if fi, err := c.Stat(ctx, id, root+"/proj/src/main.go"); err != nil || fi.Size != 13 || fi.Mode != "0644" || fi.Type != "file" || fi.ModTime.IsZero() {
		t.Errorf("Stat: %+v %v", fi, err)
	}
	if _, err := c.Stat(ctx, id, root+"/nope"); !errors.As(err, &ae) || ae.Code != model.CodeNotFound {
		t.Errorf("Stat of a missing file: %v; want not_found", err)
	}
	if _, err := c.ListFiles(ctx, id, root+"/proj/src/main.go"); !errors.As(err, &ae) || ae.Code != model.CodeBadRequest || !strings.Contains(ae.Message, "not a directory") {
		t.Errorf("ListFiles of a file: %v", err)
	}

	// Rename: a file moves; a directory is never replaced.
	if fi, err := c.Rename(ctx, id, root+"/proj/src/main.go", root+"/proj/src/app.go"); err != nil || fi.Name != "app.go" {
		t.Errorf("Rename: %+v %v", fi, err)
	}
	if _, err := c.Rename(ctx, id, root+"/proj/src/app.go", root+"/proj"); !errors.As(err, &ae) || ae.Code != model.CodeConflict {
		t.Errorf("Rename over a directory: %v; want conflict", err)
	}

	// A tree out and back in.
	var archive bytes.Buffer
	if err := c.DownloadTar(ctx, id, root+"/proj", &archive); err != nil {
		t.Fatalf("DownloadTar: %v", err)
	}
	res, err := c.UploadTar(ctx, id, root+"/copy", bytes.NewReader(archive.Bytes()))
	if err != nil || res != (model.TarResult{Files: 1, Dirs: 1, Symlinks: 1, Bytes: 13}) {
		t.Errorf("UploadTar: %+v %v", res, err)
	}
	if b, err := os.ReadFile(root + "/copy/src/app.go"); err != nil || string(b) != "package main\n" {
		t.Errorf("copied file: %q %v", b, err)
	}
	// A hostile archive: the entry is named, nothing leaves the root.
	outside := t.TempDir()
	var evil bytes.Buffer
	tw := tar.NewWriter(&evil)
	tw.WriteHeader(&tar.Header{Name: "esc", Typeflag: tar.TypeSymlink, Linkname: outside})
	tw.WriteHeader(&tar.Header{Name: "esc/pwned", Typeflag: tar.TypeReg, Size: 1, Mode: 0o644})
	tw.Write([]byte("x"))
	tw.Close()
	if _, err := c.UploadTar(ctx, id, root+"/evil", &evil); !errors.As(err, &ae) || ae.Status != 400 || !strings.Contains(ae.Message, `"esc/pwned"`) {
		t.Errorf("UploadTar of a hostile archive: %v; want 400 naming esc/pwned", err)
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Errorf("the hostile archive wrote outside: %v", ents)
	}
	// A refused directory is answered before the archive is sent.
	big := io.LimitReader(zeros{}, 256<<20)
	if _, err := c.UploadTar(ctx, id, root+"/proj/src/app.go", big); !errors.As(err, &ae) || ae.Code != model.CodeConflict {
		t.Errorf("UploadTar into a file: %v; want conflict", err)
	}

	// Remove: not a non-empty directory without recursive.
	if err := c.Remove(ctx, id, root+"/copy", false); !errors.As(err, &ae) || ae.Code != model.CodeConflict {
		t.Errorf("Remove of a non-empty directory: %v; want conflict", err)
	}
	if err := c.Remove(ctx, id, root+"/copy", true); err != nil {
		t.Errorf("Remove recursive: %v", err)
	}
	if _, err := os.Stat(root + "/copy"); !os.IsNotExist(err) {
		t.Errorf("copy still there: %v", err)
	}

	// The watch saw it all, in order, with absolute paths.
	seen := map[string]bool{}
	for _, want := range []string{"create /proj/src/main.go", "rename /proj/src/main.go", "create /proj/src/app.go", "create /copy/src/app.go", "remove /copy/src/app.go", "remove /copy"} {
		for !seen[want] {
			ev, err := w.Next()
			if err != nil {
				t.Fatalf("watch ended before %q: %v (seen %v)", want, err, keys(seen))
			}
			seen[ev.Type+" "+strings.TrimPrefix(ev.Path, root)] = true
		}
	}
	w.Close()
	if _, err := w.Next(); err == nil {
		t.Errorf("Next after Close: no error")
	}
	if err := c.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// The watch route streams NDJSON, its headers sent before any event.
func TestWatchRoute(t *testing.T) {
	root, sock := startAgent(t)
	e := newEnv(t, func(c *sandbox.Config) {
		c.AgentDial = func(string) func(context.Context) (net.Conn, error) { return agentproto.DialUDS(sock, agentproto.Port) }
	})
	sb := e.create(model.CreateRequest{Image: "counter"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://sietchd/v1/sandboxes/"+sb.ID+"/files/watch?path="+root, nil)
	req.Header.Set("Authorization", "Bearer "+e.token)
	resp, err := e.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("watch: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	os.WriteFile(filepath.Join(root, "hello"), nil, 0o644)
	line := make([]byte, 4096)
	n, err := resp.Body.Read(line)
	if err != nil || !strings.HasPrefix(string(line[:n]), `{"type":"create","path":"`+root+`/hello","time":`) || !strings.HasSuffix(string(line[:n]), "}\n") {
		t.Errorf("first event: %q %v", line[:n], err)
	}
	resp.Body.Close()
	e.call("DELETE", "/v1/sandboxes/"+sb.ID, nil, http.StatusNoContent, nil)
}
