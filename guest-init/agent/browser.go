package agent

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/sietch-vm/sietch/wire/agentproto"
)

// DevToolsPort is the guest port (127.0.0.1) of the desktop browser's
// Chrome DevTools protocol.
const DevToolsPort = 9222

// browserNames are the browsers POST /v1/desktop/browser starts, first
// found in PATH first.
var browserNames = []string{"chromium", "chromium-browser", "google-chrome"}

// browserDir is the browser's profile.
const browserDir = "/tmp/sietch-browser"

// handleBrowser opens a URL in the desktop's browser: POST
// /v1/desktop/browser. A running browser (its DevTools port answers)
// opens it in a new tab; otherwise the browser is started as a detached
// process with the URL, and the reply comes at once: on hosts that
// emulate guest kernel mode its first window takes minutes.
func (a *Agent) handleBrowser(w http.ResponseWriter, r *http.Request) {
	var req agentproto.BrowserRequest
	if e := decodeJSON(r.Body, maxJSONBody, &req); e != nil {
		writeError(w, e)
		return
	}
	if err := agentproto.CheckBrowserURL(req.URL); err != nil {
		writeError(w, badRequest("%v", err))
		return
	}
	name := req.Display
	if name == "" {
		name = agentproto.DefaultDisplay
	}
	d, e := a.display(name)
	if e != nil {
		writeError(w, e)
		return
	}
	if err := devToolsOpen(r.Context(), a.devToolsPort(), req.URL); err == nil {
		writeJSON(w, http.StatusOK, agentproto.BrowserState{DevToolsPort: a.devToolsPort()})
		return
	}
	a.browserMu.Lock()
	defer a.browserMu.Unlock()
	if p := a.browser; p != nil && !isClosed(p.exited) {
		writeError(w, apiErr(codeConflict, "the browser (pid %d) was started %s ago and does not answer on its DevTools port yet; try again once it is up",
			p.pid, time.Since(p.started).Round(time.Second)))
		return
	}
	bin := ""
	for _, n := range browserNames {
		if _, e := lookPath(n, a.pathEnv(), "/"); e == nil {
			bin = n
			break
		}
	}
	if bin == "" {
		writeError(w, apiErr(codeConflict, "no browser in this sandbox (looked for %v in PATH); build its image with `sietch image build --desktop`", browserNames))
		return
	}
	width, height := d.Size()
	p, e := a.detach(agentproto.ExecRequest{Cmd: bin, Args: browserArgs(width, height, a.devToolsPort(), req.URL),
		Env: map[string]string{"DISPLAY": name}, Log: "/tmp/sietch-browser.log"})
	if e != nil {
		writeError(w, e)
		return
	}
	a.browser = p
	writeJSON(w, http.StatusOK, agentproto.BrowserState{Started: true, DevToolsPort: a.devToolsPort(), PID: p.pid})
}

// browserArgs start Chromium on the whole screen with its DevTools port
// on 127.0.0.1. --no-sandbox: the agent runs it as root, where Chromium's
// own sandbox will not start; the VM is the sandbox.
func browserArgs(w, h, port int, u string) []string {
	return []string{"--no-sandbox", "--no-first-run", "--no-default-browser-check", "--disable-gpu",
		"--disable-dev-shm-usage", "--password-store=basic", "--user-data-dir=" + browserDir,
		"--remote-debugging-address=127.0.0.1", "--remote-debugging-port=" + strconv.Itoa(port),
		"--window-position=0,0", fmt.Sprintf("--window-size=%d,%d", w, h), "--start-maximized", u}
}

// devToolsOpen opens u in a new tab of the browser whose DevTools HTTP
// endpoint is on port (PUT /json/new).
func devToolsOpen(ctx context.Context, port int, u string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, fmt.Sprintf("http://127.0.0.1:%d/json/new?%s", port, url.QueryEscape(u)), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("DevTools /json/new: %s", resp.Status)
	}
	return nil
}

func (a *Agent) devToolsPort() int {
	if a.cfg.DevToolsPort != 0 {
		return a.cfg.DevToolsPort
	}
	return DevToolsPort
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// pathEnv is the PATH execs get.
func (a *Agent) pathEnv() string {
	p, _ := getenv(a.baseEnv(), "PATH")
	return p
}
