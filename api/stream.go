package api

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"

	"github.com/sietch-vm/sietch/api/model"
	"github.com/sietch-vm/sietch/internal/unixmode"
)

// modeHeader carries a downloaded file's mode, as octal Unix bits.
const modeHeader = "X-Sietch-Mode"

// lazyWriter starts a 200 response at its first byte, so that an error
// before any output can still be answered as JSON; every write is flushed,
// so the client sees output as it is produced.
type lazyWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	ctype   string
	started bool
}

func newLazyWriter(w http.ResponseWriter, ctype string) *lazyWriter {
	return &lazyWriter{w: w, rc: http.NewResponseController(w), ctype: ctype}
}

func (l *lazyWriter) start() {
	if !l.started {
		l.started = true
		l.w.Header().Set("Content-Type", l.ctype)
		l.w.Header().Set("X-Content-Type-Options", "nosniff")
		l.w.WriteHeader(http.StatusOK)
	}
}

func (l *lazyWriter) Write(b []byte) (int, error) {
	l.start()
	n, err := l.w.Write(b)
	if err == nil {
		err = l.rc.Flush()
	}
	return n, err
}

// end finishes the response: err before any output is answered as JSON;
// after it, the response is cut short so the client sees it incomplete.
func (s *Server) end(l *lazyWriter, err error) {
	switch {
	case err == nil:
		l.start()
	case !l.started:
		l.w.Header().Del(modeHeader)
		s.fail(l.w, err)
	default:
		s.log.Warn("stream failed after it started; cutting the response", "err", err)
		panic(http.ErrAbortHandler)
	}
}

// execOutput turns one output stream into ExecEvent lines.
type execOutput struct {
	l      *lazyWriter
	stderr bool
}

func (o execOutput) Write(b []byte) (int, error) {
	ev := model.ExecEvent{}
	if o.stderr {
		ev.Stderr = base64.StdEncoding.EncodeToString(b)
	} else {
		ev.Stdout = base64.StdEncoding.EncodeToString(b)
	}
	if err := writeEvent(o.l, ev); err != nil {
		return 0, err
	}
	return len(b), nil
}

func writeEvent(l *lazyWriter, ev model.ExecEvent) error {
	line, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	_, err = l.Write(append(line, '\n'))
	return err
}

func (s *Server) exec(w http.ResponseWriter, r *http.Request) {
	var req model.ExecRequest
	if !decode(w, r, &req, false) {
		return
	}
	spec, err := execIn(req)
	if err != nil {
		s.fail(w, err)
		return
	}
	switch {
	case req.Detach && wantsStream(r):
		writeError(w, http.StatusBadRequest, model.CodeBadRequest, "%s", "detach and an exec stream exclude each other: a detached process's output is read from GET .../processes/{proc}/output")
		return
	case req.Detach:
		s.startProcess(w, r, spec)
		return
	case wantsStream(r):
		s.execStream(w, r, spec)
		return
	}
	l := newLazyWriter(w, "application/x-ndjson")
	exit, err := s.m.Exec(r.Context(), r.PathValue("id"), spec, execOutput{l, false}, execOutput{l, true})
	if err == nil {
		out := exitOut(exit)
		err = writeEvent(l, model.ExecEvent{Exit: &out})
	}
	s.end(l, err)
}

func (s *Server) upload(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Query().Get("path")
	if path == "" {
		writeError(w, http.StatusBadRequest, model.CodeBadRequest, "%s", "the path query parameter is missing: PUT .../files?path=/abs/path")
		return
	}
	var mode os.FileMode
	if m := r.URL.Query().Get("mode"); m != "" {
		var err error
		if mode, err = unixmode.Parse(m); err != nil {
			writeError(w, http.StatusBadRequest, model.CodeBadRequest, "%s", err.Error())
			return
		}
	}
	if err := s.m.Upload(r.Context(), r.PathValue("id"), path, mode, r.Body); err != nil {
		s.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) download(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Query().Get("path")
	if path == "" {
		writeError(w, http.StatusBadRequest, model.CodeBadRequest, "%s", "the path query parameter is missing: GET .../files?path=/abs/path")
		return
	}
	id := r.PathValue("id")
	mode, err := s.m.Stat(r.Context(), id, path)
	if err != nil {
		s.fail(w, err)
		return
	}
	w.Header().Set(modeHeader, unixmode.Format(mode))
	l := newLazyWriter(w, "application/octet-stream")
	s.end(l, s.m.Download(r.Context(), id, path, l))
}

func (s *Server) console(w http.ResponseWriter, r *http.Request) {
	follow := false
	if f := r.URL.Query().Get("follow"); f != "" {
		var err error
		if follow, err = strconv.ParseBool(f); err != nil {
			writeError(w, http.StatusBadRequest, model.CodeBadRequest, "%s", fmt.Sprintf("follow=%q: want 1 or 0", f))
			return
		}
	}
	l := newLazyWriter(w, "text/plain; charset=utf-8")
	s.end(l, s.m.Console(r.Context(), r.PathValue("id"), follow, l))
}
