// Package api is sietchd's HTTP API: routes, handlers, bearer-token auth and the OpenAPI document.
package api

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/sietch-vm/sietch/api/model"
	"github.com/sietch-vm/sietch/internal/httpjson"
	"github.com/sietch-vm/sietch/sandbox"
)

// Config is what New needs.
type Config struct {
	Manager *sandbox.Manager
	Token   string // every route but GET /v1/health wants "Authorization: Bearer <Token>"
	Logger  *slog.Logger
	Version string        // reported by GET /v1/health
	KVM     func() string // what `vmm check` says; nil: asked of this host once
}

// Route is one registered method and path pattern.
type Route = httpjson.Route

// Server answers the API.
type Server struct {
	m       *sandbox.Manager
	token   []byte
	log     *slog.Logger
	version string
	kvm     func() string
	mux     http.Handler
	routes  []Route
	srv     *http.Server
}

// New returns a Server for cfg.
func New(cfg Config) (*Server, error) {
	if cfg.Manager == nil {
		return nil, errors.New("api: Config.Manager is nil")
	}
	if len(cfg.Token) < 16 {
		return nil, errors.New("api: the token is missing or shorter than 16 characters; use LoadToken")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	if cfg.KVM == nil {
		cfg.KVM = cfg.Manager.HostKVM
	}
	s := &Server{m: cfg.Manager, token: []byte(cfg.Token), log: cfg.Logger, version: cfg.Version, kvm: cfg.KVM}
	s.register()
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 64 << 10,
		ErrorLog: slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug)}
	return s, nil
}

// register builds the route table (httpjson.Mux: JSON 404, and 405 with
// Allow, for every miss).
func (s *Server) register() {
	m := httpjson.NewMux()
	m.Handle("GET", "/v1/health", s.health)
	m.Handle("GET", "/v1/openapi.yaml", s.openapi)
	m.Handle("GET", "/metrics", s.metrics)
	m.Handle("POST", "/v1/sandboxes", s.create)
	m.Handle("GET", "/v1/sandboxes", s.list)
	m.Handle("GET", "/v1/sandboxes/{id}", s.get)
	m.Handle("DELETE", "/v1/sandboxes/{id}", s.delete)
	m.Handle("POST", "/v1/sandboxes/{id}/pause", s.pause)
	m.Handle("POST", "/v1/sandboxes/{id}/resume", s.resume)
	m.Handle("POST", "/v1/sandboxes/{id}/snapshots", s.snapshot)
	m.Handle("GET", "/v1/sandboxes/{id}/snapshots", s.snapshots)
	m.Handle("POST", "/v1/sandboxes/{id}/fork", s.fork)
	m.Handle("POST", "/v1/sandboxes/{id}/exec", s.exec)
	m.Handle("PUT", "/v1/sandboxes/{id}/files", s.upload)
	m.Handle("GET", "/v1/sandboxes/{id}/files", s.download)
	m.Handle("DELETE", "/v1/sandboxes/{id}/files", s.removeFile)
	m.Handle("GET", "/v1/sandboxes/{id}/files/list", s.listFiles)
	m.Handle("GET", "/v1/sandboxes/{id}/files/stat", s.statFile)
	m.Handle("POST", "/v1/sandboxes/{id}/files/mkdir", s.mkdir)
	m.Handle("POST", "/v1/sandboxes/{id}/files/rename", s.rename)
	m.Handle("GET", "/v1/sandboxes/{id}/files/tar", s.downloadTar)
	m.Handle("PUT", "/v1/sandboxes/{id}/files/tar", s.uploadTar)
	m.Handle("GET", "/v1/sandboxes/{id}/files/watch", s.watch)
	m.Handle("POST", "/v1/sandboxes/{id}/ports", s.addPort)
	m.Handle("GET", "/v1/sandboxes/{id}/ports", s.ports)
	m.Handle("DELETE", "/v1/sandboxes/{id}/ports/{host_port}", s.removePort)
	m.Handle("GET", "/v1/sandboxes/{id}/console", s.console)
	m.Handle("GET", "/v1/sandboxes/{id}/desktop", s.desktop)
	m.Handle("GET", "/v1/sandboxes/{id}/screenshot", s.screenshot)
	m.Handle("POST", "/v1/sandboxes/{id}/input", s.input)
	m.Handle("POST", "/v1/sandboxes/{id}/vnc", s.vnc)
	m.Handle("POST", "/v1/sandboxes/{id}/browser", s.browser)
	m.Handle("GET", "/v1/sandboxes/{id}/stats", s.stats)
	m.Handle("GET", "/v1/sandboxes/{id}/network", s.network)
	m.Handle("PUT", "/v1/sandboxes/{id}/network", s.setNetwork)
	m.Handle("GET", "/v1/sandboxes/{id}/processes", s.processes)
	m.Handle("GET", "/v1/sandboxes/{id}/processes/{proc}", s.process)
	m.Handle("DELETE", "/v1/sandboxes/{id}/processes/{proc}", s.deleteProcess)
	m.Handle("GET", "/v1/sandboxes/{id}/processes/{proc}/output", s.processOutput)
	m.Handle("POST", "/v1/sandboxes/{id}/processes/{proc}/signal", s.signalProcess)
	m.Handle("POST", "/v1/sandboxes/{id}/processes/{proc}/wait", s.waitProcess)
	m.Handle("POST", "/v1/sandboxes/{id}/contexts", s.newContext)
	m.Handle("GET", "/v1/sandboxes/{id}/contexts", s.contexts)
	m.Handle("DELETE", "/v1/sandboxes/{id}/contexts/{ctx}", s.deleteContext)
	m.Handle("POST", "/v1/sandboxes/{id}/contexts/{ctx}/run", s.run)
	m.Handle("POST", "/v1/sandboxes/{id}/contexts/{ctx}/interrupt", s.interrupt)
	m.Handle("POST", "/v1/sandboxes/{id}/contexts/{ctx}/restart", s.restartContext)
	m.Handle("GET", "/v1/images", s.images)
	m.Handle("POST", "/v1/images", s.buildImage)
	m.Handle("POST", "/v1/templates", s.buildTemplate)
	m.Handle("GET", "/v1/templates", s.templates)
	m.Handle("GET", "/v1/templates/{name}", s.template)
	m.Handle("DELETE", "/v1/templates/{name}", s.deleteTemplate)
	m.Handle("GET", "/v1/snapshots", s.allSnapshots)
	m.Handle("GET", "/v1/snapshots/{id}", s.getSnapshot)
	m.Handle("DELETE", "/v1/snapshots/{id}", s.deleteSnapshot)
	s.routes = m.Routes()
	s.mux = m.Handler("GET /v1/openapi.yaml lists them")
}

// Routes lists the registered routes, in registration order.
func (s *Server) Routes() []Route { return slices.Clone(s.routes) }

// ServeHTTP authenticates the request, serves it, and turns a panic in a
// handler into a 500 with the stack in the log: no request may take
// sietchd down.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rw := &recorder{ResponseWriter: w}
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v) // net/http's way to cut a streamed response short
			}
			s.log.Error("handler panicked", "method", r.Method, "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
			if rw.status == 0 {
				writeError(rw, http.StatusInternalServerError, model.CodeInternal, "%s", "internal error; the server log has the details")
			}
		}
		level := slog.LevelDebug
		if rw.status >= 500 {
			level = slog.LevelWarn
		}
		s.log.Log(r.Context(), level, "request", "method", r.Method, "path", r.URL.Path, "status", rw.status, "ms", time.Since(start).Milliseconds())
	}()
	if !(r.Method == http.MethodGet && r.URL.Path == "/v1/health") && !s.authorized(r) {
		rw.Header().Set("WWW-Authenticate", `Bearer realm="sietchd"`)
		writeError(rw, http.StatusUnauthorized, model.CodeUnauthorized, "%s", "missing or wrong bearer token: send Authorization: Bearer <the token in sietchd's state directory, file token>")
		return
	}
	s.mux.ServeHTTP(rw, r)
}

func (s *Server) authorized(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(strings.TrimSpace(tok)), s.token) == 1
}

// Serve answers requests on ln until Shutdown; it returns nil after Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	if err := s.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve the API on %s: %w", ln.Addr(), err)
	}
	return nil
}

// Shutdown stops accepting connections and waits for requests in flight
// until ctx ends; then it cuts the rest (followed consoles, long execs).
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		s.srv.Close()
	}
	return err
}

// recorder remembers the status a handler wrote.
type recorder struct {
	http.ResponseWriter
	status int
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach Flush.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
