package agent

import (
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sietch-vm/sietch/guest-init/agent/desktop/desktoptest"
	"github.com/sietch-vm/sietch/wire/agentproto"
)

// POST /v1/desktop/browser starts the browser with the URL when none
// runs (a stand-in chromium here that records its arguments), refuses a
// second start while it comes up, and opens later URLs through the
// DevTools protocol's /json/new once the port answers.
func TestBrowserEndpoint(t *testing.T) {
	display := desktoptest.Xvfb(t, 320, 200)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close() // nothing answers there until the DevTools stand-in below
	bin := t.TempDir()
	args := filepath.Join(t.TempDir(), "args")
	env := startAgent(t, Config{DevToolsPort: port, Env: []string{"PATH=" + bin + ":/usr/bin:/bin"}})
	ctx := testCtx(t)
	var ae *agentproto.Error
	open := func(u string) (agentproto.BrowserState, error) {
		return env.c.OpenURL(ctx, agentproto.BrowserRequest{Display: display, URL: u})
	}
	if _, err := open("http://example.test/"); !errors.As(err, &ae) || ae.Status != http.StatusConflict || !strings.Contains(ae.Message, "no browser") {
		t.Fatalf("with no browser installed: %v; want 409 naming what is missing", err)
	}
	for _, u := range []string{"", "example.test", "javascript:alert(1)", "http://x/" + strings.Repeat("a", 9000)} {
		if _, err := open(u); !errors.As(err, &ae) || ae.Status != http.StatusBadRequest {
			t.Errorf("url %.40q: %v; want 400", u, err)
		}
	}
	os.WriteFile(filepath.Join(bin, "chromium"), []byte("#!/bin/sh\necho \"DISPLAY=$DISPLAY $*\" > "+args+"\nexec sleep 60\n"), 0o755)
	st, err := open("http://example.test/a")
	if err != nil || !st.Started || st.PID == 0 || st.DevToolsPort != port {
		t.Fatalf("first open: %+v %v; want the browser started", st, err)
	}
	var got []byte
	for range 100 {
		if got, _ = os.ReadFile(args); len(got) > 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, want := range []string{"DISPLAY=" + display + " ", "--remote-debugging-port=" + itoa(port), "--window-size=320,200", " http://example.test/a\n"} {
		if !strings.Contains(string(got), want) {
			t.Errorf("browser started as %q; want %q in it", got, want)
		}
	}
	if _, err := open("http://example.test/b"); !errors.As(err, &ae) || ae.Status != http.StatusConflict || !strings.Contains(ae.Message, "try again") {
		t.Errorf("open while the browser starts: %v; want 409 and when to retry", err)
	}
	// The DevTools port answers: a new tab.
	var mu sync.Mutex
	var tabs []string
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPut || r.URL.Path != "/json/new" {
			http.Error(w, "no", http.StatusMethodNotAllowed)
			return
		}
		mu.Lock()
		tabs = append(tabs, r.URL.Query().Encode())
		mu.Unlock()
		w.Write([]byte(`{"id":"T1"}`))
	})}
	ln, err = net.Listen("tcp", "127.0.0.1:"+itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	st, err = open("https://example.test/b?q=1&r=2")
	if err != nil || st.Started {
		t.Fatalf("open with DevTools up: %+v %v; want a tab in the running browser", st, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(tabs) != 1 || !strings.Contains(tabs[0], "https%3A%2F%2Fexample.test%2Fb%3Fq%3D1%26r%3D2") {
		t.Errorf("DevTools got %q; want the whole URL, escaped", tabs)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
