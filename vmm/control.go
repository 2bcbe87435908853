package vmm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/sietch-vm/sietch/devices"
	"github.com/sietch-vm/sietch/internal/httpjson"
	"github.com/sietch-vm/sietch/virtio"
	"github.com/sietch-vm/sietch/wire/control"
)

// The control socket: one vmm's HTTP/JSON API on a unix socket (DESIGN.md
// "Processes"); its wire types, states, error codes and client are package
// control's.

// State says whether the VM runs, as the control protocol reports it:
// control.StateCreated, StateRunning, StatePaused or StateStopped.
func (m *Machine) State() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state.wire()
}

// Info describes the VM for GET /info.
func (m *Machine) Info() control.Info {
	info := control.Info{
		State:    m.State(),
		VCPUs:    m.cfg.CPUs,
		MemBytes: m.cfg.MemSize,
		Cmdline:  m.cmdline,
		Compat:   m.compat,
		VMMPID:   os.Getpid(),
		Devices: []control.DeviceInfo{
			{Name: "serial0", Kind: "uart-8250", IOPort: devices.COM1Base, IRQ: devices.COM1IRQ},
			{Name: "i8042", Kind: "i8042", IOPort: devices.I8042Base},
			{Name: "power", Kind: "sietch-power", IOPort: devices.PowerPort},
		},
	}
	for _, d := range m.virtio {
		info.Devices = append(info.Devices, control.DeviceInfo{Name: d.name, Kind: virtioKind(d.id), MMIOBase: d.base, IRQ: d.irq})
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
	h   http.Handler
	srv *http.Server
	// opMu makes state changes one at a time: a Resume that slipped into a
	// Pause still waiting for vCPUs to park would leave Pause waiting forever.
	opMu sync.Mutex
}

// NewControlServer returns the control API of m; id (optional) is reported
// in GET /info.
func NewControlServer(m *Machine, id string) *ControlServer {
	s := &ControlServer{m: m, id: id}
	mux := httpjson.NewMux()
	mux.Handle(http.MethodGet, "/info", s.info)
	mux.Handle(http.MethodPut, "/pause", s.pause)
	mux.Handle(http.MethodPut, "/resume", s.resume)
	mux.Handle(http.MethodPut, "/stop", s.stop)
	mux.Handle(http.MethodPut, "/snapshot", s.snapshot)
	s.h = mux.Handler("there are /info, /pause, /resume, /stop and /snapshot")
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	return s
}

// ServeHTTP answers one control request.
func (s *ControlServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, control.MaxBody)
	s.h.ServeHTTP(w, r)
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
	httpjson.Write(w, http.StatusOK, info)
}

// notApplicable explains why the VM in state st cannot take an action.
func notApplicable(st string) *control.Error {
	switch st {
	case control.StateCreated:
		return httpjson.Errorf(http.StatusConflict, control.CodeNotStarted, "the VM has not started running yet; retry in a moment")
	case control.StateStopped:
		return httpjson.Errorf(http.StatusConflict, control.CodeStopped, "the VM has stopped; GET /info says how it ended")
	case control.StatePaused:
		return httpjson.Errorf(http.StatusConflict, control.CodeAlreadyPaused, "the VM is already paused")
	}
	return httpjson.Errorf(http.StatusConflict, control.CodeNotPaused, "the VM is not paused; nothing to resume")
}

func (s *ControlServer) pause(w http.ResponseWriter, r *http.Request) {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	if st := s.m.State(); st != control.StateRunning {
		httpjson.WriteError(w, notApplicable(st))
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
	if st := s.m.State(); st != control.StatePaused {
		httpjson.WriteError(w, notApplicable(st))
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
	if st := s.m.State(); st == control.StateStopped {
		httpjson.WriteError(w, notApplicable(st))
		return
	}
	s.m.Stop("stopped through the control socket")
	w.WriteHeader(http.StatusNoContent)
}

func (s *ControlServer) snapshot(w http.ResponseWriter, r *http.Request) {
	var req control.SnapshotRequest
	if e := httpjson.Decode(r.Body, control.MaxBody, &req, false); e != nil {
		httpjson.WriteError(w, e)
		return
	}
	if err := req.Validate(); err != nil {
		httpjson.WriteError(w, httpjson.Errorf(http.StatusBadRequest, control.CodeInvalidArgument, "%s", err.Error()))
		return
	}
	s.opMu.Lock()
	defer s.opMu.Unlock()
	if st := s.m.State(); st == control.StateStopped {
		httpjson.WriteError(w, notApplicable(st))
		return
	}
	take := s.m.Snapshot
	if req.Kind == control.SnapshotDiff {
		take = s.m.SnapshotDiff
	}
	if err := take(req.Dir); err != nil {
		switch {
		case errors.Is(err, ErrSnapshotUnsupported):
			err = httpjson.Errorf(http.StatusNotImplemented, control.CodeNotImplemented, "%s", err.Error())
		case errors.Is(err, ErrNoDiffBase):
			err = httpjson.Errorf(http.StatusConflict, control.CodeNoDiffBase, "%s", err.Error())
		}
		s.failed(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// failed answers an error from the Machine: a control.Error as it is, an
// action refused because the VM ended meanwhile as 409, anything else as 500.
func (s *ControlServer) failed(w http.ResponseWriter, err error) {
	var cerr *control.Error
	switch {
	case errors.As(err, &cerr):
	case s.m.State() == control.StateStopped:
		cerr = notApplicable(control.StateStopped)
	default:
		cerr = httpjson.Errorf(http.StatusInternalServerError, httpjson.CodeInternal, "%s", err.Error())
	}
	httpjson.WriteError(w, cerr)
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
