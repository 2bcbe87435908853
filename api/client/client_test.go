package client_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sietch-vm/sietch/api/client"
	"github.com/sietch-vm/sietch/api/client/clienttest"
	"github.com/sietch-vm/sietch/api/model"
)

func newClient(t *testing.T) (*client.Client, *clienttest.Server) {
	t.Helper()
	srv := clienttest.NewServer()
	t.Cleanup(srv.Close)
	c, err := client.New(srv.URL, clienttest.Token)
	if err != nil {
		t.Fatal(err)
	}
	return c, srv
}

// testCtx bounds a test so a broken stream fails it instead of hanging.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestNewAddress(t *testing.T) {
	for _, tc := range []struct {
		addr string
		ok   bool
	}{
		{"unix:///var/lib/sietch/sietchd.sock", true},
		{"/var/lib/sietch/sietchd.sock", true},
		{"http://127.0.0.1:8080", true},
		{"https://sietch.example:443", true},
		{"unix://relative.sock", false},
		{"relative.sock", false},
		{"", false},
		{"http://", false},
		{"tcp://127.0.0.1:80", true},
		{"ftp://127.0.0.1:80", false},
	} {
		_, err := client.New(tc.addr, "t")
		if (err == nil) != tc.ok {
			t.Errorf("New(%q) err = %v, want ok=%v", tc.addr, err, tc.ok)
		}
	}
}

func TestUnixSocket(t *testing.T) {
	srv := clienttest.NewServer()
	defer srv.Close()
	sock := filepath.Join(t.TempDir(), "sietchd.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv.Config.Handler}
	go hs.Serve(l)
	defer hs.Close()
	for _, addr := range []string{sock, "unix://" + sock} {
		c, err := client.New(addr, clienttest.Token)
		if err != nil {
			t.Fatal(err)
		}
		h, err := c.Health(testCtx(t))
		if err != nil || h.Status != "ok" {
			t.Fatalf("Health over %s = %+v, %v", addr, h, err)
		}
		if _, err := c.List(testCtx(t)); err != nil {
			t.Fatalf("List over %s: %v", addr, err)
		}
	}
}

func TestAuthHeaderSent(t *testing.T) {
	c, srv := newClient(t)
	ctx := testCtx(t)
	if _, err := c.List(ctx); err != nil {
		t.Fatal(err)
	}
	if got := srv.Auths(); len(got) != 1 || got[0] != "Bearer "+clienttest.Token {
		t.Fatalf("Authorization headers = %q, want one %q", got, "Bearer "+clienttest.Token)
	}
	bad, _ := client.New(srv.URL, "wrong")
	_, err := bad.List(ctx)
	var e *client.Error
	if !errors.As(err, &e) || e.Status != 401 || e.Code != model.CodeUnauthorized {
		t.Fatalf("List with a wrong token: %v, want 401 unauthorized", err)
	}
	// Health needs no token.
	none, _ := client.New(srv.URL, "")
	if _, err := none.Health(ctx); err != nil {
		t.Fatalf("Health without a token: %v", err)
	}
}

func TestLifecycle(t *testing.T) {
	c, _ := newClient(t)
	ctx := testCtx(t)
	sb, err := c.Create(ctx, model.CreateRequest{Image: "default", Limits: model.Limits{CPUs: 2}, Labels: map[string]string{"team": "a"}})
	if err != nil || sb.ID == "" || sb.State != model.StateRunning || sb.Limits.CPUs != 2 || sb.Labels["team"] != "a" {
		t.Fatalf("Create = %+v, %v", sb, err)
	}
	if got, err := c.Get(ctx, sb.ID); err != nil || got.ID != sb.ID {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	if got, err := c.Pause(ctx, sb.ID); err != nil || got.State != model.StatePaused {
		t.Fatalf("Pause = %+v, %v", got, err)
	}
	if got, err := c.Resume(ctx, sb.ID); err != nil || got.State != model.StateRunning {
		t.Fatalf("Resume = %+v, %v", got, err)
	}
	snap, err := c.Snapshot(ctx, sb.ID, model.SnapshotRequest{})
	if err != nil || snap.SandboxID != sb.ID || snap.Kind != "full" {
		t.Fatalf("Snapshot = %+v, %v", snap, err)
	}
	diff, err := c.Snapshot(ctx, sb.ID, model.SnapshotRequest{Kind: "diff"})
	if err != nil || diff.Base != snap.ID {
		t.Fatalf("diff Snapshot = %+v, %v", diff, err)
	}
	if snaps, err := c.Snapshots(ctx, sb.ID); err != nil || len(snaps) != 2 {
		t.Fatalf("Snapshots = %+v, %v", snaps, err)
	}
	forks, err := c.Fork(ctx, sb.ID, model.ForkRequest{Snapshot: snap.ID, Count: 3})
	if err != nil || len(forks) != 3 || forks[0].Snapshot != snap.ID {
		t.Fatalf("Fork = %+v, %v", forks, err)
	}
	restored, err := c.Create(ctx, model.CreateRequest{Snapshot: snap.ID})
	if err != nil || restored.Snapshot != snap.ID {
		t.Fatalf("Create from snapshot = %+v, %v", restored, err)
	}
	list, err := c.List(ctx)
	if err != nil || len(list) != 5 {
		t.Fatalf("List = %d sandboxes, %v; want 5", len(list), err)
	}
	if err := c.Delete(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, sb.ID); !isCode(err, model.CodeNotFound) {
		t.Fatalf("Get after Delete: %v, want not_found", err)
	}
}

func TestServiceRoutes(t *testing.T) {
	c, srv := newClient(t)
	ctx := testCtx(t)
	srv.AddSandbox(model.StatePaused, false)
	imgs, err := c.Images(ctx)
	if err != nil || len(imgs) != 1 || imgs[0].Name != "default" {
		t.Fatalf("Images = %+v, %v", imgs, err)
	}
	m, err := c.Metrics(ctx)
	if err != nil || !strings.Contains(m, `sietch_sandboxes{state="paused"} 1`) {
		t.Fatalf("Metrics = %q, %v", m, err)
	}
	doc, err := c.OpenAPI(ctx)
	if err != nil || !bytes.HasPrefix(doc, []byte("openapi: 3")) {
		t.Fatalf("OpenAPI = %q, %v", doc, err)
	}
}

func TestPorts(t *testing.T) {
	c, srv := newClient(t)
	ctx := testCtx(t)
	id := srv.AddSandbox(model.StateRunning, true)
	p, err := c.ForwardPort(ctx, id, model.PortRequest{GuestPort: 8080, HostPort: 18080})
	if err != nil || p != (model.Port{GuestPort: 8080, HostAddr: "127.0.0.1", HostPort: 18080}) {
		t.Fatalf("ForwardPort = %+v, %v", p, err)
	}
	if ports, err := c.Ports(ctx, id); err != nil || len(ports) != 1 || ports[0] != p {
		t.Fatalf("Ports = %+v, %v", ports, err)
	}
	if err := c.ClosePort(ctx, id, 18080); err != nil {
		t.Fatal(err)
	}
	if err := c.ClosePort(ctx, id, 18080); !isCode(err, model.CodeNotFound) {
		t.Fatalf("second ClosePort: %v, want not_found", err)
	}
}

// orderLog records writes to stdout and stderr in the order they happen.
type orderLog struct {
	mu     sync.Mutex
	events []string
	first  chan struct{} // closed at the first write
	once   sync.Once
}

func (l *orderLog) writer(name string) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		l.mu.Lock()
		l.events = append(l.events, name+":"+string(p))
		l.mu.Unlock()
		l.once.Do(func() { close(l.first) })
		return len(p), nil
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestExecStreamsInOrder(t *testing.T) {
	c, srv := newClient(t)
	ctx := testCtx(t)
	id := srv.AddSandbox(model.StateRunning, true)
	log := &orderLog{first: make(chan struct{})}
	srv.Exec = func(req model.ExecRequest, out *clienttest.ExecOutput) model.ExecExit {
		out.Stdout([]byte("one\n"))
		// The command goes on only once the client has written the first
		// chunk: Exec must deliver output as it arrives, not at the end.
		select {
		case <-log.first:
		case <-ctx.Done():
			return model.ExecExit{Code: 99}
		}
		out.Stderr([]byte("two\n"))
		out.Stdout([]byte("three\n"))
		return model.ExecExit{Code: 7}
	}
	exit, err := c.Exec(ctx, id, model.ExecRequest{Cmd: "sh"}, log.writer("out"), log.writer("err"))
	if err != nil {
		t.Fatal(err)
	}
	if exit.Code != 7 {
		t.Errorf("exit = %+v, want code 7", exit)
	}
	want := []string{"out:one\n", "err:two\n", "out:three\n"}
	if strings.Join(log.events, "|") != strings.Join(want, "|") {
		t.Errorf("events = %q, want %q", log.events, want)
	}
}

func TestExecSignalAndErrors(t *testing.T) {
	c, srv := newClient(t)
	ctx := testCtx(t)
	id := srv.AddSandbox(model.StateRunning, true)
	exit, err := c.Exec(ctx, id, model.ExecRequest{Cmd: "kill"}, nil, nil)
	if err != nil || exit.Signal != "SIGKILL" {
		t.Fatalf("Exec kill = %+v, %v", exit, err)
	}
	noAgent := srv.AddSandbox(model.StateRunning, false)
	_, err = c.Exec(ctx, noAgent, model.ExecRequest{Cmd: "echo"}, nil, nil)
	var e *client.Error
	if !errors.As(err, &e) || e.Code != model.CodeAgentUnavailable || !e.Retry || e.Status != 503 {
		t.Fatalf("Exec without agent: %v, want 503 agent_unavailable with retry", err)
	}
	// A stream that ends without the exit event is an error, not exit 0.
	cut := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		io.WriteString(w, `{"stdout":"aGkK"}`+"\n")
	}))
	defer cut.Close()
	cc, _ := client.New(cut.URL, "t")
	var out bytes.Buffer
	_, err = cc.Exec(ctx, "x", model.ExecRequest{Cmd: "true"}, &out, nil)
	if err == nil || !strings.Contains(err.Error(), "ended before the exit status") || out.String() != "hi\n" {
		t.Fatalf("cut stream: out %q, err %v", out.String(), err)
	}
}

func TestFilesRoundTrip32MiB(t *testing.T) {
	c, srv := newClient(t)
	ctx := testCtx(t)
	id := srv.AddSandbox(model.StateRunning, true)
	data := make([]byte, 32<<20)
	rng := rand.NewChaCha8([32]byte{1, 2, 3})
	rng.Read(data)
	want := sha256.Sum256(data)
	// A plain io.Reader (not *bytes.Reader) makes the upload chunked, as a
	// pipe or stdin would.
	if err := c.Upload(ctx, id, "/root/blob", 0o750, io.MultiReader(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	mode, err := c.Download(ctx, id, "/root/blob", h)
	if err != nil {
		t.Fatal(err)
	}
	if got := h.Sum(nil); !bytes.Equal(got, want[:]) {
		t.Errorf("downloaded sha256 %x, uploaded %x", got, want)
	}
	if mode != 0o750 {
		t.Errorf("mode = %o, want 750", mode)
	}
	if _, err := c.Download(ctx, id, "/nope", io.Discard); !isCode(err, model.CodeNotFound) {
		t.Errorf("Download of a missing file: %v, want not_found", err)
	}
}

func TestErrorDecoding(t *testing.T) {
	for _, tc := range []struct {
		status int
		body   string
		code   string
		retry  bool
	}{
		{400, `{"error":{"code":"bad_request","message":"m"}}`, model.CodeBadRequest, false},
		{400, `{"error":{"code":"invalid_json","message":"m"}}`, model.CodeInvalidJSON, false},
		{400, `{"error":{"code":"unknown_field","message":"m"}}`, model.CodeUnknownField, false},
		{401, `{"error":{"code":"unauthorized","message":"m"}}`, model.CodeUnauthorized, false},
		{404, `{"error":{"code":"not_found","message":"m"}}`, model.CodeNotFound, false},
		{405, `{"error":{"code":"method_not_allowed","message":"m"}}`, model.CodeMethodNotAllowed, false},
		{409, `{"error":{"code":"wrong_state","message":"m"}}`, model.CodeWrongState, false},
		{429, `{"error":{"code":"limit_exceeded","message":"m"}}`, model.CodeLimit, false},
		{503, `{"error":{"code":"agent_unavailable","message":"m","retry":true}}`, model.CodeAgentUnavailable, true},
		{413, `{"error":{"code":"body_too_large","message":"m"}}`, model.CodeBodyTooLarge, false},
		{500, `{"error":{"code":"internal","message":"m"}}`, model.CodeInternal, false},
		// Not our JSON (a proxy, a panic page): the code follows the status.
		{404, "404 page not found\n", model.CodeNotFound, false},
		{502, "<html>bad gateway</html>", model.CodeInternal, false},
		{503, "", model.CodeAgentUnavailable, true},
	} {
		t.Run(tc.code+"/"+tc.body, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			}))
			defer srv.Close()
			c, _ := client.New(srv.URL, "t")
			_, err := c.Get(testCtx(t), "sb-1")
			var e *client.Error
			if !errors.As(err, &e) {
				t.Fatalf("err %v (%T) is not a *client.Error", err, err)
			}
			if e.Status != tc.status || e.Code != tc.code || e.Retry != tc.retry || e.Message == "" {
				t.Errorf("got %+v, want status %d code %s retry %v", e, tc.status, tc.code, tc.retry)
			}
		})
	}
}

func TestConsoleFollowCancel(t *testing.T) {
	c, srv := newClient(t)
	id := srv.AddSandbox(model.StateRunning, false)
	ctx := testCtx(t)
	rc, err := c.Console(ctx, id, false)
	if err != nil {
		t.Fatal(err)
	}
	all, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || string(all) != srv.Console {
		t.Fatalf("Console = %q, %v", all, err)
	}

	fctx, cancel := context.WithCancel(ctx)
	rc, err = c.Console(fctx, id, true)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	// Read past the log into the followed part, then leave.
	buf := make([]byte, 0, 4096)
	for !bytes.Contains(buf, []byte("tick 2\n")) {
		n, err := rc.Read(buf[len(buf):cap(buf)])
		if err != nil {
			t.Fatalf("follow read: %v (after %q)", err, buf)
		}
		buf = buf[:len(buf)+n]
	}
	cancel()
	if _, err := io.Copy(io.Discard, rc); !errors.Is(err, context.Canceled) {
		t.Fatalf("read after cancel: %v, want context.Canceled", err)
	}
}

func isCode(err error, code string) bool {
	var e *client.Error
	return errors.As(err, &e) && e.Code == code
}

// Where finds sietchd as the CLI documents: the variables first, then the
// state directory (made absolute), then the defaults.
func TestWhere(t *testing.T) {
	env := func(kv ...string) func(string) string {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	if a, tf := client.Where(env()); a != client.DefaultAddr || tf != client.DefaultTokenFile {
		t.Errorf("no variables: %s %s", a, tf)
	}
	if a, tf := client.Where(env("SIETCH_STATE_DIR", "/s")); a != "/s/sietchd.sock" || tf != "/s/token" {
		t.Errorf("state dir: %s %s", a, tf)
	}
	if a, _ := client.Where(env("SIETCH_STATE_DIR", "rel")); !strings.HasPrefix(a, "/") || !strings.HasSuffix(a, "/rel/sietchd.sock") {
		t.Errorf("a relative state dir gives %s; want an absolute socket path", a)
	}
	if a, tf := client.Where(env("SIETCH_STATE_DIR", "/s", "SIETCH_ADDR", "tcp://h:1", "SIETCH_TOKEN_FILE", "/t")); a != "tcp://h:1" || tf != "/t" {
		t.Errorf("explicit variables: %s %s", a, tf)
	}
}
