// Package clienttest is an in-memory sietchd speaking the /v1 route table, for testing code that uses the SDK.
package clienttest

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sietch-vm/sietch/api/model"
)

// Token is the bearer token the server accepts.
const Token = "test-token"

// ExecFunc runs one exec request: it writes output through out and returns
// how the command ended.
type ExecFunc func(req model.ExecRequest, out *ExecOutput) model.ExecExit

// ExecOutput sends stdout/stderr chunks to the client as it takes them:
// ExecEvent lines, exec stream frames, or a detached process's kept
// output.
type ExecOutput struct {
	chunk func(b []byte, stderr bool)
}

// Stdout sends one stdout chunk.
func (o *ExecOutput) Stdout(b []byte) { o.chunk(b, false) }

// Stderr sends one stderr chunk.
func (o *ExecOutput) Stderr(b []byte) { o.chunk(b, true) }

// ndjsonOutput writes ExecEvent lines, flushing each one.
func ndjsonOutput(w http.ResponseWriter) (*ExecOutput, func(model.ExecEvent)) {
	enc := json.NewEncoder(w)
	fl, _ := w.(http.Flusher)
	send := func(ev model.ExecEvent) {
		_ = enc.Encode(ev)
		if fl != nil {
			fl.Flush()
		}
	}
	return &ExecOutput{chunk: func(b []byte, stderr bool) {
		if stderr {
			send(model.ExecEvent{Stderr: base64.StdEncoding.EncodeToString(b)})
		} else {
			send(model.ExecEvent{Stdout: base64.StdEncoding.EncodeToString(b)})
		}
	}}, send
}

type file struct {
	data []byte
	mode uint64
}

type box struct {
	sb       model.Sandbox
	files    map[string]file
	snaps    []model.Snapshot
	dirs     map[string]uint64 // directories (besides "/") and their modes
	watches  []*fakeWatch
	contexts map[string]*model.Context
	procs    []*fakeProc
}

// Server is a fake sietchd. Its fields may be set before the first request.
type Server struct {
	*httptest.Server

	// Exec runs exec requests; the default understands "echo ARGS...",
	// "exit N" and "kill" (ends by SIGKILL).
	Exec ExecFunc
	// Run runs code in a context; the default is defaultRun's.
	Run RunFunc
	// Frames records the resize and signal frames exec streams carried
	// ("TYPE PAYLOAD"), in order.
	Frames []string
	// Console is every sandbox's console log.
	Console string

	mu       sync.Mutex
	boxes    map[string]*box
	order    []string
	next     int
	snaps    map[string]model.Snapshot
	temps    map[string]model.Template
	nsnap    int      // user snapshots taken
	patterns []string // "METHOD /path" of every route, in registration order
	auths    []string // Authorization headers seen, in order
}

// NewServer starts a fake sietchd on a loopback TCP port; Close stops it.
// It has one image, "default" (kind linux), and its template "default",
// ready. A template build is ready at once.
func NewServer() *Server {
	s := &Server{
		Exec:    defaultExec,
		Run:     defaultRun,
		Console: "[    0.000000] Linux version 6.1\nsietch login:\n",
		boxes:   map[string]*box{},
		snaps:   map[string]model.Snapshot{"snap-t0": {ID: "snap-t0", SandboxID: "sb-0", Kind: "full", Role: model.RoleTemplate, Template: "default", SizeBytes: 200 << 20, CreatedAt: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}},
		temps: map[string]model.Template{"default": {Name: "default", Image: "default", State: model.TemplateReady, Snapshot: "snap-t0", Contexts: []string{"python"},
			Limits: model.Limits{CPUs: 1, MemoryMiB: 256}, SizeBytes: 200 << 20, CreatedAt: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}},
	}
	s.Server = httptest.NewServer(s.routes())
	return s
}

// AddSandbox puts a sandbox in the given state (agent answering if agent)
// and returns its id.
func (s *Server) AddSandbox(state model.State, agent bool) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.add(model.Sandbox{Image: "default", State: state, Agent: agent}).ID
}

// Routes lists the routes the fake serves, "METHOD /path", so that a test
// can hold them against the real server's.
func (s *Server) Routes() []string { return append([]string(nil), s.patterns...) }

// Auths returns the Authorization headers of every authenticated route's
// requests so far.
func (s *Server) Auths() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.auths...)
}

func (s *Server) add(sb model.Sandbox) model.Sandbox {
	s.next++
	sb.ID = fmt.Sprintf("sb-%d", s.next)
	sb.CreatedAt = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	if sb.Limits.CPUs == 0 {
		sb.Limits.CPUs = 1
	}
	if sb.Limits.MemoryMiB == 0 {
		sb.Limits.MemoryMiB = 256
	}
	sb.VMMPID = 1000 + s.next
	s.boxes[sb.ID] = &box{sb: sb, files: map[string]file{}, dirs: map[string]uint64{}}
	s.order = append(s.order, sb.ID)
	return sb
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	s.patterns = append(s.patterns, "GET /v1/health")
	mux.HandleFunc("GET /v1/health", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		n := len(s.boxes)
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, model.Health{Status: "ok", Version: "test", Sandboxes: n, KVM: "fake"})
	})
	auth := func(pattern string, h func(http.ResponseWriter, *http.Request)) {
		s.patterns = append(s.patterns, pattern)
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			s.mu.Lock()
			s.auths = append(s.auths, r.Header.Get("Authorization"))
			s.mu.Unlock()
			if r.Header.Get("Authorization") != "Bearer "+Token {
				writeError(w, http.StatusUnauthorized, model.CodeUnauthorized, "missing or wrong bearer token", false)
				return
			}
			h(w, r)
		})
	}
	auth("GET /v1/openapi.yaml", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/yaml")
		io.WriteString(w, "openapi: 3.0.3\ninfo:\n  title: sietchd\n")
	})
	auth("GET /metrics", s.metrics)
	auth("GET /v1/images", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string][]model.Image{"images": {{Name: "default", Kind: "linux", SizeBytes: 512 << 20,
			CreatedAt: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}}})
	})
	auth("POST /v1/images", func(w http.ResponseWriter, r *http.Request) {
		// No builder here: the archive is read and the build refused the
		// way sietchd refuses a Dockerfile it cannot parse.
		io.Copy(io.Discard, r.Body)
		writeError(w, http.StatusBadRequest, model.CodeBadRequest, "the in-memory sietchd builds no images", false)
	})
	desktopless := s.withBox(func(w http.ResponseWriter, r *http.Request, b *box) {
		io.Copy(io.Discard, r.Body)
		writeError(w, http.StatusConflict, model.CodeConflict, "sandbox "+b.sb.ID+" runs no X server (the in-memory sietchd has no desktops)", false)
	})
	auth("GET /v1/sandboxes/{id}/desktop", desktopless)
	auth("GET /v1/sandboxes/{id}/screenshot", desktopless)
	auth("POST /v1/sandboxes/{id}/input", desktopless)
	auth("POST /v1/sandboxes/{id}/vnc", desktopless)
	auth("POST /v1/sandboxes/{id}/browser", desktopless)
	auth("POST /v1/sandboxes", s.create)
	auth("GET /v1/sandboxes", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		out := []model.Sandbox{}
		for _, id := range s.order {
			if b, ok := s.boxes[id]; ok {
				out = append(out, b.sb)
			}
		}
		writeJSON(w, http.StatusOK, map[string][]model.Sandbox{"sandboxes": out})
	})
	auth("GET /v1/sandboxes/{id}", s.withBox(func(w http.ResponseWriter, r *http.Request, b *box) {
		writeJSON(w, http.StatusOK, b.sb)
	}))
	auth("DELETE /v1/sandboxes/{id}", s.withBox(func(w http.ResponseWriter, r *http.Request, b *box) {
		delete(s.boxes, b.sb.ID)
		w.WriteHeader(http.StatusNoContent)
	}))
	auth("POST /v1/sandboxes/{id}/pause", s.withBox(func(w http.ResponseWriter, r *http.Request, b *box) {
		var req model.PauseRequest
		if r.ContentLength != 0 && !decode(w, r, &req) {
			return
		}
		if req.ToDisk {
			s.transition(w, b, model.StateRunning, model.StateSuspended)
			return
		}
		s.transition(w, b, model.StateRunning, model.StatePaused)
	}))
	auth("POST /v1/sandboxes/{id}/resume", s.withBox(func(w http.ResponseWriter, r *http.Request, b *box) {
		if b.sb.State == model.StateSuspended {
			s.transition(w, b, model.StateSuspended, model.StateRunning)
			return
		}
		s.transition(w, b, model.StatePaused, model.StateRunning)
	}))
	auth("POST /v1/sandboxes/{id}/snapshots", s.withBox(s.snapshot))
	auth("GET /v1/sandboxes/{id}/snapshots", s.withBox(func(w http.ResponseWriter, r *http.Request, b *box) {
		writeJSON(w, http.StatusOK, map[string][]model.Snapshot{"snapshots": append([]model.Snapshot{}, b.snaps...)})
	}))
	auth("POST /v1/sandboxes/{id}/fork", s.withBox(s.fork))
	auth("POST /v1/sandboxes/{id}/exec", s.exec)
	auth("PUT /v1/sandboxes/{id}/files", s.withAgent(s.upload))
	auth("GET /v1/sandboxes/{id}/files", s.withAgent(s.download))
	s.fileRoutes(auth)
	auth("POST /v1/sandboxes/{id}/ports", s.withAgent(s.forward))
	auth("GET /v1/sandboxes/{id}/ports", s.withBox(func(w http.ResponseWriter, r *http.Request, b *box) {
		writeJSON(w, http.StatusOK, map[string][]model.Port{"ports": append([]model.Port{}, b.sb.Ports...)})
	}))
	auth("DELETE /v1/sandboxes/{id}/ports/{host_port}", s.withBox(s.closePort))
	auth("GET /v1/sandboxes/{id}/console", s.console)
	auth("GET /v1/sandboxes/{id}/stats", s.withBox(func(w http.ResponseWriter, r *http.Request, b *box) {
		if b.sb.State != model.StateRunning && b.sb.State != model.StatePaused {
			writeError(w, http.StatusConflict, model.CodeWrongState, "sandbox "+b.sb.ID+" is "+string(b.sb.State)+": only a sandbox with a vmm has stats", false)
			return
		}
		lim := b.sb.Limits
		writeJSON(w, http.StatusOK, model.SandboxStats{Cgroup: "v2", CPUUserS: 0.5, CPUSystemS: 1.5, CPULimit: float64(max(lim.CPUs, 1)) + 0.25,
			MemoryBytes: 64 << 20, MemoryLimitBytes: int64(max(lim.MemoryMiB, 128)+96) << 20, Pids: 35, PidsLimit: 264})
	}))
	auth("GET /v1/sandboxes/{id}/network", s.withBox(func(w http.ResponseWriter, r *http.Request, b *box) {
		if b.sb.Network == nil {
			writeError(w, http.StatusConflict, model.CodeWrongState, "sandbox "+b.sb.ID+" has no network interface", false)
			return
		}
		writeJSON(w, http.StatusOK, b.sb.Network)
	}))
	auth("PUT /v1/sandboxes/{id}/network", s.withBox(func(w http.ResponseWriter, r *http.Request, b *box) {
		var req model.NetworkSpec
		if !decode(w, r, &req) {
			return
		}
		if b.sb.Network == nil {
			writeError(w, http.StatusConflict, model.CodeWrongState, "sandbox "+b.sb.ID+" has no network interface", false)
			return
		}
		n, msg := fakeNetwork(req, 0)
		if msg != "" {
			writeError(w, http.StatusBadRequest, model.CodeBadRequest, msg, false)
			return
		}
		n.Address, n.Gateway, n.Interface = b.sb.Network.Address, b.sb.Network.Gateway, b.sb.Network.Interface
		b.sb.Network = &n
		writeJSON(w, http.StatusOK, n)
	}))
	s.processRoutes(auth)
	s.contextRoutes(auth)
	auth("POST /v1/templates", s.buildTemplate)
	auth("GET /v1/templates", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		out := []model.Template{}
		for _, t := range s.temps {
			out = append(out, t)
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
		writeJSON(w, http.StatusOK, map[string][]model.Template{"templates": out})
	})
	auth("GET /v1/templates/{name}", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		t, ok := s.temps[r.PathValue("name")]
		if !ok {
			writeError(w, http.StatusNotFound, model.CodeNotFound, "no template "+r.PathValue("name"), false)
			return
		}
		writeJSON(w, http.StatusOK, t)
	})
	auth("DELETE /v1/templates/{name}", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		name := r.PathValue("name")
		if _, ok := s.temps[name]; !ok {
			writeError(w, http.StatusNotFound, model.CodeNotFound, "no template "+name, false)
			return
		}
		for _, id := range s.order {
			if b, ok := s.boxes[id]; ok && b.sb.Template == name {
				writeError(w, http.StatusConflict, model.CodeInUse, fmt.Sprintf("template %s is needed by sandbox %s", name, id), false)
				return
			}
		}
		delete(s.snaps, s.temps[name].Snapshot)
		delete(s.temps, name)
		w.WriteHeader(http.StatusNoContent)
	})
	auth("GET /v1/snapshots", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		out := []model.Snapshot{}
		for _, snap := range s.snaps {
			out = append(out, snap)
		}
		sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
		writeJSON(w, http.StatusOK, map[string][]model.Snapshot{"snapshots": out})
	})
	auth("GET /v1/snapshots/{id}", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		snap, ok := s.snaps[r.PathValue("id")]
		if !ok {
			writeError(w, http.StatusNotFound, model.CodeNotFound, "no snapshot "+r.PathValue("id"), false)
			return
		}
		writeJSON(w, http.StatusOK, snap)
	})
	auth("DELETE /v1/snapshots/{id}", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		id := r.PathValue("id")
		snap, ok := s.snaps[id]
		switch {
		case !ok:
			writeError(w, http.StatusNotFound, model.CodeNotFound, "no snapshot "+id, false)
		case snap.Role == model.RoleTemplate:
			writeError(w, http.StatusConflict, model.CodeInUse, fmt.Sprintf("snapshot %s is needed by template %s", id, snap.Template), false)
		default:
			delete(s.snaps, id)
			w.WriteHeader(http.StatusNoContent)
		}
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, model.CodeNotFound, "no route "+r.Method+" "+r.URL.Path, false)
	})
	return mux
}

// withBox runs h with the sandbox named in the path, holding s.mu.
func (s *Server) withBox(h func(http.ResponseWriter, *http.Request, *box)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		b, ok := s.boxes[r.PathValue("id")]
		if !ok {
			writeError(w, http.StatusNotFound, model.CodeNotFound, "no sandbox "+r.PathValue("id"), false)
			return
		}
		h(w, r, b)
	}
}

// withAgent is withBox for routes that go through the guest agent.
func (s *Server) withAgent(h func(http.ResponseWriter, *http.Request, *box)) http.HandlerFunc {
	return s.withBox(func(w http.ResponseWriter, r *http.Request, b *box) {
		if b.sb.State == model.StateSuspended {
			b.sb.State = model.StateRunning // resumed on demand, as sietchd does
		}
		if b.sb.State != model.StateRunning {
			writeError(w, http.StatusConflict, model.CodeWrongState, fmt.Sprintf("sandbox %s is %s, not running", b.sb.ID, b.sb.State), false)
			return
		}
		if !b.sb.Agent {
			writeError(w, http.StatusServiceUnavailable, model.CodeAgentUnavailable, "the guest agent is not answering yet", true)
			return
		}
		h(w, r, b)
	})
}

func (s *Server) transition(w http.ResponseWriter, b *box, from, to model.State) {
	if b.sb.State != from {
		writeError(w, http.StatusConflict, model.CodeWrongState, fmt.Sprintf("sandbox %s is %s, not %s", b.sb.ID, b.sb.State, from), false)
		return
	}
	b.sb.State = to
	writeJSON(w, http.StatusOK, b.sb)
}

func (s *Server) create(w http.ResponseWriter, r *http.Request) {
	var req model.CreateRequest
	if !decode(w, r, &req) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, v := range []string{req.Template, req.Image, req.Snapshot} {
		if v != "" {
			n++
		}
	}
	if n > 1 {
		writeError(w, http.StatusBadRequest, model.CodeBadRequest, "give one of template, image or snapshot", false)
		return
	}
	if n == 0 {
		req.Template = "default"
	}
	if t, ok := s.temps[req.Template]; req.Template != "" && (!ok || t.State != model.TemplateReady) {
		writeError(w, http.StatusNotFound, model.CodeNotFound, "no ready template "+req.Template, false)
		return
	}
	if req.Image != "" && req.Image != "default" {
		writeError(w, http.StatusNotFound, model.CodeNotFound, "no image "+req.Image, false)
		return
	}
	if req.Limits.CPUs > 8 {
		writeError(w, http.StatusTooManyRequests, model.CodeLimit, fmt.Sprintf("%d vCPUs asked, the limit is 8", req.Limits.CPUs), false)
		return
	}
	sb := model.Sandbox{Image: req.Image, Template: req.Template, Snapshot: req.Snapshot, Limits: req.Limits, Labels: req.Labels, State: model.StateRunning, Agent: true}
	if t, ok := s.temps[req.Template]; ok {
		sb.Image, sb.Snapshot = t.Image, t.Snapshot
	}
	if req.Snapshot != "" {
		snap, ok := s.snaps[req.Snapshot]
		if !ok {
			writeError(w, http.StatusNotFound, model.CodeNotFound, "no snapshot "+req.Snapshot, false)
			return
		}
		if src, ok := s.boxes[snap.SandboxID]; ok {
			sb.Image = src.sb.Image
		}
	}
	if req.Network != nil {
		n, msg := fakeNetwork(*req.Network, len(s.boxes))
		if msg != "" {
			writeError(w, http.StatusBadRequest, model.CodeBadRequest, msg, false)
			return
		}
		sb.Network = &n
	}
	writeJSON(w, http.StatusCreated, s.add(sb))
}

// fakeNetwork is the network a spec gives the n-th sandbox (a /30 each
// from 10.99.0.0/16, as sietchd's default pool), or why the spec is wrong.
func fakeNetwork(spec model.NetworkSpec, n int) (model.Network, string) {
	if len(spec.Allow) > 64 || len(spec.Deny) > 64 {
		return model.Network{}, "network: at most 64 allow and 64 deny entries"
	}
	for _, e := range append(append([]string{}, spec.Allow...), spec.Deny...) {
		if e == "" || strings.ContainsAny(e, " ;*") {
			return model.Network{}, fmt.Sprintf("network: entry %q is not a CIDR, address or domain name", e)
		}
	}
	internet := spec.Internet == nil || *spec.Internet
	return model.Network{Enabled: spec.Enabled, Internet: internet, Allow: spec.Allow, Deny: spec.Deny,
		Address:   fmt.Sprintf("10.99.%d.%d/30", n*4/256, n*4%256+2),
		Gateway:   fmt.Sprintf("10.99.%d.%d", n*4/256, n*4%256+1),
		Interface: fmt.Sprintf("sx%010d", n)}, ""
}

func (s *Server) buildTemplate(w http.ResponseWriter, r *http.Request) {
	var req model.TemplateRequest
	if !decode(w, r, &req) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if req.Name == "" {
		writeError(w, http.StatusBadRequest, model.CodeBadRequest, "name is required", false)
		return
	}
	if req.Image == "" {
		req.Image = "default"
	}
	if req.Image != "default" {
		writeError(w, http.StatusNotFound, model.CodeNotFound, "no image "+req.Image, false)
		return
	}
	if _, ok := s.temps[req.Name]; ok {
		writeError(w, http.StatusConflict, model.CodeWrongState, "template "+req.Name+" exists", false)
		return
	}
	snap := model.Snapshot{ID: fmt.Sprintf("snap-t%d", len(s.temps)), SandboxID: "sb-0", Kind: "full", Role: model.RoleTemplate,
		Template: req.Name, SizeBytes: 200 << 20, CreatedAt: time.Date(2025, 1, 2, 3, 0, 0, 0, time.UTC)}
	s.snaps[snap.ID] = snap
	l := req.Limits
	if l.CPUs == 0 {
		l.CPUs = 1
	}
	if l.MemoryMiB == 0 {
		l.MemoryMiB = 256
	}
	t := model.Template{Name: req.Name, Image: req.Image, StartCmd: req.StartCmd, ReadyCmd: req.ReadyCmd, Contexts: req.Contexts, Limits: l,
		State: model.TemplateReady, Snapshot: snap.ID, SizeBytes: snap.SizeBytes, BuildS: 61.5, CreatedAt: snap.CreatedAt}
	s.temps[req.Name] = t
	building := t
	building.State, building.Step, building.Snapshot, building.SizeBytes, building.BuildS = model.TemplateBuilding, model.StepBoot, "", 0, 0
	writeJSON(w, http.StatusAccepted, building)
}

func (s *Server) snapshot(w http.ResponseWriter, r *http.Request, b *box) {
	var req model.SnapshotRequest
	if !decode(w, r, &req) {
		return
	}
	if b.sb.State != model.StateRunning && b.sb.State != model.StatePaused {
		writeError(w, http.StatusConflict, model.CodeWrongState, fmt.Sprintf("sandbox %s is %s", b.sb.ID, b.sb.State), false)
		return
	}
	writeJSON(w, http.StatusCreated, s.takeSnapshot(b, req.Kind))
}

func (s *Server) takeSnapshot(b *box, kind string) model.Snapshot {
	if kind == "" {
		kind = "full"
	}
	s.nsnap++
	snap := model.Snapshot{ID: fmt.Sprintf("snap-%d", s.nsnap), SandboxID: b.sb.ID, Kind: kind,
		SizeBytes: 256 << 20, CreatedAt: time.Date(2025, 1, 2, 3, 5, 0, 0, time.UTC)}
	if kind == "diff" && len(b.snaps) > 0 {
		snap.Base = b.snaps[len(b.snaps)-1].ID
		snap.SizeBytes = 3 << 20
	}
	s.snaps[snap.ID] = snap
	b.snaps = append(b.snaps, snap)
	return snap
}

func (s *Server) fork(w http.ResponseWriter, r *http.Request, b *box) {
	var req model.ForkRequest
	if !decode(w, r, &req) {
		return
	}
	if req.Count < 1 || req.Count > 16 {
		writeError(w, http.StatusBadRequest, model.CodeBadRequest, "count must be 1..16", false)
		return
	}
	snapID := req.Snapshot
	if snapID == "" {
		snapID = s.takeSnapshot(b, "full").ID
	} else if snap, ok := s.snaps[snapID]; !ok || snap.SandboxID != b.sb.ID {
		writeError(w, http.StatusNotFound, model.CodeNotFound, "sandbox "+b.sb.ID+" has no snapshot "+snapID, false)
		return
	}
	out := []model.Sandbox{}
	for range req.Count {
		out = append(out, s.add(model.Sandbox{Image: b.sb.Image, Snapshot: snapID, Limits: b.sb.Limits, State: model.StateRunning, Agent: true}))
	}
	writeJSON(w, http.StatusCreated, map[string][]model.Sandbox{"sandboxes": out})
}

func (s *Server) exec(w http.ResponseWriter, r *http.Request) {
	var req model.ExecRequest
	if !decode(w, r, &req) {
		return
	}
	ok := false
	s.withAgent(func(http.ResponseWriter, *http.Request, *box) { ok = true })(w, r)
	if !ok {
		return
	}
	if req.Cmd == "" {
		writeError(w, http.StatusBadRequest, model.CodeBadRequest, "cmd is required", false)
		return
	}
	switch {
	case req.Detach:
		s.startProcess(w, r, req)
		return
	case isStream(r):
		s.execStream(w, r, req)
		return
	case req.TTY != nil:
		writeError(w, http.StatusBadRequest, model.CodeBadRequest, "a terminal needs an exec stream or detach", false)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	out, send := ndjsonOutput(w)
	exit := s.Exec(req, out)
	send(model.ExecEvent{Exit: &exit})
}

func defaultExec(req model.ExecRequest, out *ExecOutput) model.ExecExit {
	switch req.Cmd {
	case "echo":
		out.Stdout([]byte(strings.Join(req.Args, " ") + "\n"))
	case "exit":
		n := 0
		if len(req.Args) > 0 {
			n, _ = strconv.Atoi(req.Args[0])
		}
		return model.ExecExit{Code: n}
	case "kill":
		return model.ExecExit{Code: -1, Signal: "SIGKILL"}
	default:
		out.Stderr([]byte(req.Cmd + ": command not found\n"))
		return model.ExecExit{Code: 127}
	}
	return model.ExecExit{}
}

func (s *Server) upload(w http.ResponseWriter, r *http.Request, b *box) {
	path := r.URL.Query().Get("path")
	mode, err := strconv.ParseUint(r.URL.Query().Get("mode"), 8, 32)
	if path == "" || !strings.HasPrefix(path, "/") || err != nil {
		writeError(w, http.StatusBadRequest, model.CodeBadRequest, "want ?path=/abs&mode=0644", false)
		return
	}
	data, err := io.ReadAll(r.Body)
	if err != nil {
		writeError(w, http.StatusBadRequest, model.CodeBadRequest, "read body: "+err.Error(), false)
		return
	}
	b.files[path] = file{data: data, mode: mode}
	s.uploaded(b, path)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) download(w http.ResponseWriter, r *http.Request, b *box) {
	f, ok := b.files[r.URL.Query().Get("path")]
	if !ok {
		writeError(w, http.StatusNotFound, model.CodeNotFound, "no such file "+r.URL.Query().Get("path"), false)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("X-Sietch-Mode", fmt.Sprintf("%04o", f.mode))
	w.Header().Set("Content-Length", strconv.Itoa(len(f.data)))
	w.Write(f.data)
}

func (s *Server) forward(w http.ResponseWriter, r *http.Request, b *box) {
	var req model.PortRequest
	if !decode(w, r, &req) {
		return
	}
	if req.GuestPort < 1 || req.GuestPort > 65535 {
		writeError(w, http.StatusBadRequest, model.CodeBadRequest, "guest_port must be 1..65535", false)
		return
	}
	p := model.Port{GuestPort: req.GuestPort, HostAddr: req.HostAddr, HostPort: req.HostPort}
	if p.HostAddr == "" {
		p.HostAddr = "127.0.0.1"
	}
	if p.HostPort == 0 {
		p.HostPort = 40000 + len(b.sb.Ports)
	}
	b.sb.Ports = append(b.sb.Ports, p)
	writeJSON(w, http.StatusCreated, p)
}

func (s *Server) closePort(w http.ResponseWriter, r *http.Request, b *box) {
	hp, _ := strconv.Atoi(r.PathValue("host_port"))
	for i, p := range b.sb.Ports {
		if p.HostPort == hp {
			b.sb.Ports = append(b.sb.Ports[:i], b.sb.Ports[i+1:]...)
			w.WriteHeader(http.StatusNoContent)
			return
		}
	}
	writeError(w, http.StatusNotFound, model.CodeNotFound, "no forward on host port "+r.PathValue("host_port"), false)
}

// console writes the log; with follow=1 it then writes a line every 10 ms
// until the client goes away.
func (s *Server) console(w http.ResponseWriter, r *http.Request) {
	ok := false
	s.withBox(func(http.ResponseWriter, *http.Request, *box) { ok = true })(w, r)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, s.Console)
	if r.URL.Query().Get("follow") != "1" {
		return
	}
	fl, _ := w.(http.Flusher)
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for i := 0; ; i++ {
		if fl != nil {
			fl.Flush()
		}
		select {
		case <-r.Context().Done():
			return
		case <-t.C:
			fmt.Fprintf(w, "tick %d\n", i)
		}
	}
}

func (s *Server) metrics(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	count := map[model.State]int{}
	for _, b := range s.boxes {
		count[b.sb.State]++
	}
	states := make([]string, 0, len(count))
	for st := range count {
		states = append(states, string(st))
	}
	sort.Strings(states)
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	io.WriteString(w, "# TYPE sietch_sandboxes gauge\n")
	for _, st := range states {
		fmt.Fprintf(w, "sietch_sandboxes{state=%q} %d\n", st, count[model.State(st)])
	}
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		code := model.CodeInvalidJSON
		if strings.Contains(err.Error(), "unknown field") {
			code = model.CodeUnknownField
		}
		writeError(w, http.StatusBadRequest, code, "request body: "+err.Error(), false)
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string, retry bool) {
	writeJSON(w, status, model.ErrorBody{Error: model.Error{Code: code, Message: msg, Retry: retry}})
}
