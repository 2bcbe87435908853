package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sietch-vm/sietch/guest-init/agent/desktop"
)

// Limits on what a client may send.
const (
	maxHeaderBytes = 16 << 10 // request line and headers, query strings included
	maxJSONBody    = 64 << 10 // every JSON request body
	maxExecs       = 256      // running at once
)

// Config is what the agent needs from its host process.
type Config struct {
	Root       string                    // files API resolves every path inside this directory (os.Root); "/" in the guest
	Env        []string                  // base environment of every exec ("K=V"); guest-init passes PATH, HOME, compat vars
	Reaper     *Reaper                   // nil: wait for children with (*os.Process).Wait; PID 1 passes one
	Shutdown   func(poweroff bool) error // POST /v1/shutdown calls it after replying; nil: 501
	Machine    Machine                   // POST /v1/identity and /v1/clock set hostname, clock, entropy through it; nil: 501 for those
	LabelsFile string                    // where POST /v1/identity writes the labels; "": agentproto.LabelsFile
	// Layer is the root's writable layer (the overlayfs upper directory)
	// for GET /v1/layer; "": 501.
	Layer string
	// NoVNC is the directory of noVNC's page, served with the display's
	// VNC; "": DefaultNoVNC. Without a vnc.html there, no page is served.
	NoVNC string
	// DevToolsPort is where the desktop browser serves the DevTools
	// protocol; 0: DevToolsPort.
	DevToolsPort int
	Logger       *slog.Logger // nil: discard
}

// Agent serves the guest agent's HTTP API.
type Agent struct {
	cfg     Config
	root    string   // cleaned absolute Config.Root
	fsRoot  *os.Root // every files API path goes through it
	log     *slog.Logger
	started time.Time
	handler http.Handler
	srv     *http.Server

	mu         sync.Mutex
	execs      map[string]*process         // running, by id
	contexts   map[string]*codeContext     // code contexts, by id
	defaultMu  sync.Mutex                  // one start of the default context at a time
	identityMu sync.Mutex                  // one POST /v1/identity at a time
	extraEnv   []string                    // from POST /v1/identity: on top of Config.Env in every exec
	defaultCwd string                      // from POST /v1/identity: an exec's cwd when it names none
	defaultUsr string                      // from POST /v1/identity: an exec's user when it names none
	relays     map[net.Conn]bool           // hijacked port relays, closed by Close
	displays   map[string]*desktop.Display // X connections, by display, kept open
	vnc        map[string]*vncServer       // VNC servers, by display, once asked for
	browserMu  sync.Mutex                  // one start of the browser at a time
	browser    *process                    // the browser POST /v1/desktop/browser started
	watches    int                         // running GET /v1/watch streams
	closed     bool
}

// New checks cfg and opens its root.
func New(cfg Config) (*Agent, error) {
	if cfg.Root == "" {
		return nil, errors.New("agent: Config.Root is empty; set it to the directory the files API may reach (\"/\" in the guest)")
	}
	root, err := filepath.Abs(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("agent: root %s: %w", cfg.Root, err)
	}
	fsRoot, err := os.OpenRoot(root)
	if err != nil {
		return nil, fmt.Errorf("agent: open root %s: %w", root, err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Agent{
		cfg:      cfg,
		root:     root,
		fsRoot:   fsRoot,
		log:      log,
		started:  time.Now(),
		execs:    make(map[string]*process),
		contexts: make(map[string]*codeContext),
		relays:   make(map[net.Conn]bool),
	}
	a.handler = a.routes()
	a.srv = &http.Server{
		Handler: a.handler,
		// Only the headers have a deadline: exec streams and uploads may last hours.
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       5 * time.Minute,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return a, nil
}

// Handler returns the HTTP API, for callers that run their own server.
func (a *Agent) Handler() http.Handler { return a.handler }

// Serve answers requests on l until Close. Each connection carries
// HTTP/1.1 requests; a port relay takes its connection over.
func (a *Agent) Serve(l net.Listener) error {
	err := a.srv.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("agent: serve on %v: %w", l.Addr(), err)
}

// Close stops serving, kills every running exec's process group and
// closes port relays.
func (a *Agent) Close() error {
	a.mu.Lock()
	a.closed = true
	procs := make([]*process, 0, len(a.execs))
	for _, p := range a.execs {
		procs = append(procs, p)
	}
	ctxs := make([]*codeContext, 0, len(a.contexts))
	for _, c := range a.contexts {
		ctxs = append(ctxs, c)
	}
	relays := make([]net.Conn, 0, len(a.relays))
	for c := range a.relays {
		relays = append(relays, c)
	}
	a.mu.Unlock()
	err := a.srv.Close()
	for _, p := range procs {
		p.kill()
	}
	for _, c := range relays {
		c.Close()
	}
	for _, c := range ctxs {
		a.killContext(c)
	}
	a.mu.Lock()
	displays, vnc := a.displays, a.vnc
	a.displays, a.vnc = nil, nil
	a.mu.Unlock()
	for _, s := range vnc {
		s.close()
	}
	for _, d := range displays {
		d.Close()
	}
	a.fsRoot.Close()
	return err
}

// routes builds the mux. Every path also gets a method-less pattern so
// that a wrong method gets a JSON 405 rather than the mux's text one.
func (a *Agent) routes() http.Handler {
	mux := http.NewServeMux()
	allowed := map[string][]string{}
	handle := func(method, path string, h http.HandlerFunc) {
		mux.HandleFunc(method+" "+path, h)
		allowed[path] = append(allowed[path], method)
	}
	handle("GET", "/v1/health", a.handleHealth)
	handle("POST", "/v1/shutdown", a.handleShutdown)
	handle("POST", "/v1/identity", a.handleIdentity)
	handle("GET", "/v1/clock", a.handleClock)
	handle("POST", "/v1/clock", a.handleStepClock)
	handle("POST", "/v1/exec", a.handleExec)
	handle("POST", "/v1/start", a.handleStart)
	handle("POST", "/v1/contexts", a.handleNewContext)
	handle("GET", "/v1/contexts", a.handleContexts)
	handle("DELETE", "/v1/contexts/{id}", a.handleDeleteContext)
	handle("POST", "/v1/contexts/{id}/run", a.handleRun)
	handle("POST", "/v1/contexts/{id}/interrupt", a.handleInterrupt)
	handle("POST", "/v1/contexts/{id}/restart", a.handleRestart)
	handle("GET", "/v1/exec", a.handleProcesses)
	handle("GET", "/v1/exec/{id}", a.handleProcess)
	handle("DELETE", "/v1/exec/{id}", a.handleDeleteProcess)
	handle("GET", "/v1/exec/{id}/output", a.handleOutput)
	handle("POST", "/v1/exec/{id}/wait", a.handleWait)
	handle("POST", "/v1/exec/{id}/stdin", a.handleStdin)
	handle("POST", "/v1/exec/{id}/signal", a.handleSignal)
	handle("POST", "/v1/exec/{id}/resize", a.handleResize)
	handle("GET", "/v1/files", a.handleDownload)
	handle("PUT", "/v1/files", a.handleUpload)
	handle("DELETE", "/v1/files", a.handleRemove)
	handle("GET", "/v1/stat", a.handleStat)
	handle("GET", "/v1/list", a.handleList)
	handle("POST", "/v1/mkdir", a.handleMkdir)
	handle("POST", "/v1/ports/{port}/connect", a.handleConnect)
	handle("POST", "/v1/rename", a.handleRename)
	handle("GET", "/v1/tar", a.handleTarDownload)
	handle("GET", "/v1/layer", a.handleLayer)
	handle("GET", "/v1/desktop", a.handleDesktop)
	handle("GET", "/v1/desktop/screenshot", a.handleScreenshot)
	handle("POST", "/v1/desktop/input", a.handleInput)
	handle("POST", "/v1/desktop/vnc", a.handleVNC)
	handle("POST", "/v1/desktop/browser", a.handleBrowser)
	handle("PUT", "/v1/tar", a.handleTarUpload)
	handle("GET", "/v1/watch", a.handleWatch)
	for path, methods := range allowed {
		sort.Strings(methods)
		allow := strings.Join(methods, ", ")
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			writeError(w, apiErr(codeMethodNotAllowed, "%s %s: method not allowed; use %s", r.Method, path, allow))
		})
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, apiErr(codeNotFound, "%s %s: no such endpoint; see docs/AGENT.md", r.Method, r.URL.Path))
	})
	return a.recoverer(mux)
}

// recoverer answers 500 instead of dropping the connection should a
// handler panic; client input must never take the agent down.
func (a *Agent) recoverer(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil || v == http.ErrAbortHandler {
				if v != nil {
					panic(v)
				}
				return
			}
			a.log.Error("agent: handler panic", "method", r.Method, "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
			writeError(w, apiErr(codeInternal, "internal error handling %s %s", r.Method, r.URL.Path))
		}()
		h.ServeHTTP(w, r)
	})
}
