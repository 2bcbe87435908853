// Package controlserver serves a vmm's control socket: the HTTP/JSON API of package wire/control (info, pause, resume, stop, snapshot) for one VM.
package controlserver

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

	"github.com/sietch-vm/sietch/internal/httpjson"
	"github.com/sietch-vm/sietch/wire/control"
)

// VM is what the control API drives: a vmm's Machine.
type VM interface {
	State() string // control.StateCreated, StateRunning, StatePaused or StateStopped
	Info() control.Info
	Pause() error
	Resume() error
	Stop(reason string)
	Snapshot(dir string) error     // full
	SnapshotDiff(dir string) error // pages written since the last snapshot
}

// Server serves one VM's control API over HTTP.
type Server struct {
	m   VM
	id  string
	h   http.Handler
	srv *http.Server
	// opMu makes state changes one at a time: a Resume that slipped into a
	// Pause still waiting for vCPUs to park would leave Pause waiting forever.
	opMu sync.Mutex
}

// New returns the control API of m; id (optional) is reported in GET
// /info.
func New(m VM, id string) *Server {
	s := &Server{m: m, id: id}
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
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, control.MaxBody)
	s.h.ServeHTTP(w, r)
}

// Serve answers requests on ln until Shutdown; it returns nil after Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	if err := s.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve the control socket: %w", err)
	}
	return nil
}

// Shutdown stops accepting requests, lets those in flight (such as the
// PUT /stop that ended the VM) finish, and closes the listener.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.srv.Shutdown(ctx)
}

func (s *Server) info(w http.ResponseWriter, r *http.Request) {
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

func (s *Server) pause(w http.ResponseWriter, r *http.Request) {
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

func (s *Server) resume(w http.ResponseWriter, r *http.Request) {
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

func (s *Server) stop(w http.ResponseWriter, r *http.Request) {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	if st := s.m.State(); st == control.StateStopped {
		httpjson.WriteError(w, notApplicable(st))
		return
	}
	s.m.Stop("stopped through the control socket")
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) snapshot(w http.ResponseWriter, r *http.Request) {
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
		case errors.Is(err, control.ErrSnapshotUnsupported):
			err = httpjson.Errorf(http.StatusNotImplemented, control.CodeNotImplemented, "%s", err.Error())
		case errors.Is(err, control.ErrNoDiffBase):
			err = httpjson.Errorf(http.StatusConflict, control.CodeNoDiffBase, "%s", err.Error())
		}
		s.failed(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// failed answers an error from the Machine: a control.Error as it is, an
// action refused because the VM ended meanwhile as 409, anything else as 500.
func (s *Server) failed(w http.ResponseWriter, err error) {
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

// Listen listens on the unix socket path, mode 0600 (whoever can
// connect can stop the VM). A stale socket file left by a vmm that died is
// replaced; a socket some process still serves, or a file that is not a
// socket, is refused.
func Listen(path string) (net.Listener, error) {
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
