package vmm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sietch-vm/sietch/devices"
	"github.com/sietch-vm/sietch/virtio"
)

// The control socket: one vmm's HTTP/JSON API on a unix socket (DESIGN.md
// "Processes"), shaped after Firecracker's API (swagger/firecracker.yaml):
// PUT for actions, 204 on success, a JSON error body otherwise.

// States a Machine reports (GET /info "state").
const (
	StateCreated = "created" // built, Run not called yet
	StateRunning = "running"
	StatePaused  = "paused"
	StateStopped = "stopped" // the guest or the host ended it
)

// Error codes of the control API. They are stable: clients compare them.
const (
	CodeAlreadyPaused    = "already_paused"
	CodeNotPaused        = "not_paused"
	CodeNotStarted       = "not_started"
	CodeStopped          = "vm_stopped"
	CodeInvalidJSON      = "invalid_json"
	CodeUnknownField     = "unknown_field"
	CodeInvalidArgument  = "invalid_argument"
	CodeBodyTooLarge     = "body_too_large"
	CodeNotFound         = "not_found"
	CodeMethodNotAllowed = "method_not_allowed"
	CodeNotImplemented   = "not_implemented"
	CodeNoDiffBase       = "no_diff_base"
	CodeInternal         = "internal"
)

// MaxControlBody bounds request (and, in the client, response) bodies.
const MaxControlBody = 1 << 20

// ControlInfo is the body of GET /info.
type ControlInfo struct {
	ID       string       `json:"id,omitempty"`
	State    string       `json:"state"`
	VCPUs    int          `json:"vcpus"`
	MemBytes uint64       `json:"mem_bytes"`
	Cmdline  string       `json:"cmdline"`
	Compat   bool         `json:"compat"`
	Devices  []DeviceInfo `json:"devices"`
	UptimeMS int64        `json:"uptime_ms"` // since Run started; 0 before
	VMMPID   int          `json:"vmm_pid"`
	Exit     string       `json:"exit,omitempty"` // how the VM ended, once stopped
}

// DeviceInfo is one guest-visible device in ControlInfo.
type DeviceInfo struct {
	Name     string `json:"name"`
	Kind     string `json:"kind"`
	MMIOBase uint64 `json:"mmio_base,omitempty"`
	IOPort   uint16 `json:"io_port,omitempty"`
	IRQ      uint32 `json:"irq,omitempty"`
}

// Snapshot kinds (PUT /snapshot "kind").
const (
	SnapshotFull = "full" // all of guest memory
	SnapshotDiff = "diff" // pages dirtied since the last snapshot
)

// SnapshotRequest is the body of PUT /snapshot.
type SnapshotRequest struct {
	Dir  string `json:"dir"`            // absolute path of the snapshot directory
	Kind string `json:"kind,omitempty"` // SnapshotFull (default) or SnapshotDiff
}

func (r *SnapshotRequest) validate() error {
	switch {
	case r.Dir == "":
		return errors.New(`"dir" is required: the absolute path of the snapshot directory`)
	case strings.IndexByte(r.Dir, 0) >= 0:
		return errors.New(`"dir" contains a NUL byte`)
	case !filepath.IsAbs(r.Dir):
		// The vmm's working directory is not the client's.
		return fmt.Errorf(`"dir" %q is relative; give an absolute path`, r.Dir)
	}
	switch r.Kind {
	case "":
		r.Kind = SnapshotFull
	case SnapshotFull, SnapshotDiff:
	default:
		return fmt.Errorf(`"kind" %q is not "full" or "diff"`, r.Kind)
	}
	return nil
}

// ControlError is the API's error: {"error": {"code": …, "message": …}}.
type ControlError struct {
	Status  int    `json:"-"` // HTTP status
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *ControlError) Error() string { return fmt.Sprintf("%s (%s)", e.Message, e.Code) }

type errorBody struct {
	Error *ControlError `json:"error"`
}

// State says whether the VM runs: StateCreated, StateRunning, StatePaused
// or StateStopped.
func (m *Machine) State() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.stopped:
		return StateStopped
	case !m.started:
		return StateCreated
	case m.pausing:
		return StatePaused
	}
	return StateRunning
}

// Info describes the VM for GET /info.
func (m *Machine) Info() ControlInfo {
	info := ControlInfo{
		State:    m.State(),
		VCPUs:    m.cfg.CPUs,
		MemBytes: m.cfg.MemSize,
		Cmdline:  m.cmdline,
		Compat:   m.compat,
		VMMPID:   os.Getpid(),
		Devices: []DeviceInfo{
			{Name: "serial0", Kind: "uart-8250", IOPort: devices.COM1Base, IRQ: devices.COM1IRQ},
			{Name: "i8042", Kind: "i8042", IOPort: devices.I8042Base},
			{Name: "power", Kind: "sietch-power", IOPort: devices.PowerPort},
		},
	}
	for _, d := range m.virtio {
		info.Devices = append(info.Devices, DeviceInfo{Name: d.name, Kind: virtioKind(d.id), MMIOBase: d.base, IRQ: d.irq})
	}
	m.mu.Lock()
	if !m.runAt.IsZero() {
		info.UptimeMS = time.Since(m.runAt).Milliseconds()
	}
	if m.exit != nil {
		info.Exit = m.exit.String()
	}
	m.mu.Unlock()
	return info
}

func virtioKind(id uint32) string {
	switch id {
	case virtio.DeviceBlock:
		return "virtio-blk"
	case virtio.DeviceNet:
		return "virtio-net"
	case virtio.DeviceVsock:
		return "virtio-vsock"
	case virtio.DeviceRNG:
		return "virtio-rng"
	}
	return fmt.Sprintf("virtio-%d", id)
}

// ControlServer serves one Machine's control API over HTTP.
type ControlServer struct {
	m   *Machine
	id  string
	mux *http.ServeMux
	srv *http.Server
	// opMu makes state changes one at a time: a Resume that slipped into a
	// Pause still waiting for vCPUs to park would leave Pause waiting forever.
	opMu sync.Mutex
}

// NewControlServer returns the control API of m; id (optional) is reported
// in GET /info.
func NewControlServer(m *Machine, id string) *ControlServer {
	s := &ControlServer{m: m, id: id, mux: http.NewServeMux()}
	routes := map[string][]string{} // path → methods, for 405 answers
	handle := func(method, path string, h http.HandlerFunc) {
		s.mux.HandleFunc(method+" "+path, h)
		routes[path] = append(routes[path], method)
	}
	handle(http.MethodGet, "/info", s.info)
	handle(http.MethodPut, "/pause", s.pause)
	handle(http.MethodPut, "/resume", s.resume)
	handle(http.MethodPut, "/stop", s.stop)
	handle(http.MethodPut, "/snapshot", s.snapshot)
	for path, methods := range routes {
		allow := strings.Join(methods, ", ")
		s.mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			writeError(w, &ControlError{Status: http.StatusMethodNotAllowed, Code: CodeMethodNotAllowed,
				Message: fmt.Sprintf("%s %s is not supported; use %s", r.Method, path, allow)})
		})
	}
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &ControlError{Status: http.StatusNotFound, Code: CodeNotFound,
			Message: fmt.Sprintf("no such endpoint %q; there are /info, /pause, /resume, /stop and /snapshot", r.URL.Path)})
	})
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	return s
}

// ServeHTTP answers one control request.
func (s *ControlServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, MaxControlBody)
	s.mux.ServeHTTP(w, r)
}

// Serve answers requests on ln until Shutdown; it returns nil after Shutdown.
func (s *ControlServer) Serve(ln net.Listener) error {
	if err := s.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve the control socket: %w", err)
	}
	return nil
}

// Shutdown stops accepting requests, lets those in flight (such as the
// PUT /stop that ended the VM) finish, and closes the listener.
func (s *ControlServer) Shutdown(ctx context.Context) error {
	return s.srv.Shutdown(ctx)
}

func (s *ControlServer) info(w http.ResponseWriter, r *http.Request) {
	info := s.m.Info()
	info.ID = s.id
	writeJSON(w, http.StatusOK, info)
}

// notApplicable explains why the VM in state st cannot take an action.
func notApplicable(st string) *ControlError {
	switch st {
	case StateCreated:
		return &ControlError{Status: http.StatusConflict, Code: CodeNotStarted, Message: "the VM has not started running yet; retry in a moment"}
	case StateStopped:
		return &ControlError{Status: http.StatusConflict, Code: CodeStopped, Message: "the VM has stopped; GET /info says how it ended"}
	case StatePaused:
		return &ControlError{Status: http.StatusConflict, Code: CodeAlreadyPaused, Message: "the VM is already paused"}
	}
	return &ControlError{Status: http.StatusConflict, Code: CodeNotPaused, Message: "the VM is not paused; nothing to resume"}
}

func (s *ControlServer) pause(w http.ResponseWriter, r *http.Request) {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	if st := s.m.State(); st != StateRunning {
		writeError(w, notApplicable(st))
		return
	}
	if err := s.m.Pause(); err != nil {
		s.failed(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *ControlServer) resume(w http.ResponseWriter, r *http.Request) {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	if st := s.m.State(); st != StatePaused {
		writeError(w, notApplicable(st))
		return
	}
	if err := s.m.Resume(); err != nil {
		s.failed(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *ControlServer) stop(w http.ResponseWriter, r *http.Request) {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	if st := s.m.State(); st == StateStopped {
		writeError(w, notApplicable(st))
		return
	}
	s.m.Stop("stopped through the control socket")
	w.WriteHeader(http.StatusNoContent)
}

func (s *ControlServer) snapshot(w http.ResponseWriter, r *http.Request) {
	var req SnapshotRequest
	if cerr := decodeBody(r.Body, &req); cerr != nil {
		writeError(w, cerr)
		return
	}
	if err := req.validate(); err != nil {
		writeError(w, &ControlError{Status: http.StatusBadRequest, Code: CodeInvalidArgument, Message: err.Error()})
		return
	}
	s.opMu.Lock()
	defer s.opMu.Unlock()
	if st := s.m.State(); st == StateStopped {
		writeError(w, notApplicable(st))
		return
	}
	take := s.m.Snapshot
	if req.Kind == SnapshotDiff {
		take = s.m.SnapshotDiff
	}
	if err := take(req.Dir); err != nil {
		switch {
		case errors.Is(err, ErrSnapshotUnsupported):
			err = &ControlError{Status: http.StatusNotImplemented, Code: CodeNotImplemented, Message: err.Error()}
		case errors.Is(err, ErrNoDiffBase):
			err = &ControlError{Status: http.StatusConflict, Code: CodeNoDiffBase, Message: err.Error()}
		}
		s.failed(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// failed answers an error from the Machine: a ControlError as it is, an
// action refused because the VM ended meanwhile as 409, anything else as 500.
func (s *ControlServer) failed(w http.ResponseWriter, err error) {
	var cerr *ControlError
	switch {
	case errors.As(err, &cerr):
	case s.m.State() == StateStopped:
		cerr = notApplicable(StateStopped)
	default:
		cerr = &ControlError{Status: http.StatusInternalServerError, Code: CodeInternal, Message: err.Error()}
	}
	writeError(w, cerr)
}

// decodeBody decodes exactly one JSON object with only known fields.
func decodeBody(body io.Reader, v any) *ControlError {
	bad := func(code, format string, a ...any) *ControlError {
		return &ControlError{Status: http.StatusBadRequest, Code: code, Message: fmt.Sprintf(format, a...)}
	}
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		// Anything but the end of the body after the object is an error.
		if _, err2 := dec.Token(); err2 != io.EOF {
			err = errors.New("data after the JSON object")
			if err2 != nil && !isJSONSyntax(err2) {
				err = err2
			}
		}
	}
	var tooBig *http.MaxBytesError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &tooBig):
		return &ControlError{Status: http.StatusRequestEntityTooLarge, Code: CodeBodyTooLarge,
			Message: fmt.Sprintf("the request body is over %d bytes", tooBig.Limit)}
	case err == io.EOF:
		return bad(CodeInvalidJSON, "the request body is empty; send a JSON object")
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		return bad(CodeUnknownField, "%s", strings.TrimPrefix(err.Error(), "json: "))
	}
	return bad(CodeInvalidJSON, "the request body is not the expected JSON object: %s", strings.TrimPrefix(err.Error(), "json: "))
}

func isJSONSyntax(err error) bool {
	var se *json.SyntaxError
	return errors.As(err, &se)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(errorBody{&ControlError{Code: CodeInternal, Message: fmt.Sprintf("encode the response: %v", err)}})
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, e *ControlError) {
	writeJSON(w, e.Status, errorBody{e})
}

// ListenControl listens on the unix socket path, mode 0600 (whoever can
// connect can stop the VM). A stale socket file left by a vmm that died is
// replaced; a socket some process still serves, or a file that is not a
// socket, is refused.
func ListenControl(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("control socket %s: the path exists and is not a socket; remove it or choose another path", path)
		}
		c, err := net.DialTimeout("unix", path, time.Second)
		switch {
		case err == nil:
			c.Close()
			return nil, fmt.Errorf("control socket %s: another process (a running vmm?) is serving it; stop it or choose another path", path)
		case errors.Is(err, syscall.ECONNREFUSED):
			if err := os.Remove(path); err != nil {
				return nil, fmt.Errorf("control socket %s: remove the stale socket: %w", path, err)
			}
		default:
			return nil, fmt.Errorf("control socket %s: check whether it is in use: %w", path, err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket %s: restrict to its owner: %w", path, err)
	}
	return ln, nil
}

// ControlClient calls a vmm's control API over its unix socket.
type ControlClient struct {
	path string
	hc   *http.Client
}

// NewControlClient returns a client of the control socket at path.
func NewControlClient(path string) *ControlClient {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}
	return &ControlClient{path: path, hc: &http.Client{Transport: tr}}
}

// Info returns GET /info.
func (c *ControlClient) Info(ctx context.Context) (*ControlInfo, error) {
	var info ControlInfo
	if err := c.do(ctx, http.MethodGet, "/info", nil, &info); err != nil {
		return nil, err
	}
	return &info, nil
}

// Pause parks every vCPU; it returns once the guest makes no progress.
func (c *ControlClient) Pause(ctx context.Context) error {
	return c.do(ctx, http.MethodPut, "/pause", nil, nil)
}

// Resume lets a paused VM run again.
func (c *ControlClient) Resume(ctx context.Context) error {
	return c.do(ctx, http.MethodPut, "/resume", nil, nil)
}

// Stop ends the VM (its vmm exits with ExitStopped).
func (c *ControlClient) Stop(ctx context.Context) error {
	return c.do(ctx, http.MethodPut, "/stop", nil, nil)
}

// Snapshot writes a snapshot of the VM into req.Dir.
func (c *ControlClient) Snapshot(ctx context.Context, req SnapshotRequest) error {
	return c.do(ctx, http.MethodPut, "/snapshot", req, nil)
}

// do sends one request; an API error comes back as *ControlError.
func (c *ControlClient) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("%s %s: encode the request: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://vmm"+path, body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s on control socket %s: %w (is `vmm run --api-sock %s` running?)", method, path, c.path, err, c.path)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxControlBody))
	if err != nil {
		return fmt.Errorf("%s %s: read the response: %w", method, path, err)
	}
	if resp.StatusCode >= 400 {
		var eb errorBody
		if json.Unmarshal(b, &eb) != nil || eb.Error == nil {
			return &ControlError{Status: resp.StatusCode, Code: CodeInternal,
				Message: fmt.Sprintf("%s %s: %s without a JSON error: %q", method, path, resp.Status, b)}
		}
		eb.Error.Status = resp.StatusCode
		return eb.Error
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: decode the response: %w", method, path, err)
		}
	}
	return nil
}
