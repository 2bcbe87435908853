package api

import (
	"encoding/json"
	"net/http"

	"github.com/sietch-vm/sietch/api/model"
	"github.com/sietch-vm/sietch/sandbox"
)

func contextOut(c sandbox.Context) model.Context {
	return model.Context{ID: c.ID, Language: c.Language, Cwd: c.Cwd, PID: c.PID, State: c.State,
		Reason: c.Reason, Runs: c.Runs, CreatedAt: c.CreatedAt}
}

func runEventOut(ev sandbox.RunEvent) model.RunEvent {
	out := model.RunEvent{Stdout: ev.Stdout, Stderr: ev.Stderr, Result: ev.Result}
	if ev.Error != nil {
		out.Error = &model.RunError{Name: ev.Error.Name, Value: ev.Error.Value, Traceback: ev.Error.Traceback}
	}
	if ev.End != nil {
		end := runEndOut(*ev.End)
		out.End = &end
	}
	return out
}

func runEndOut(e sandbox.RunEnd) model.RunEnd {
	return model.RunEnd{Status: e.Status, ExecutionCount: e.ExecutionCount, DurationMS: e.DurationMS, ExitCode: e.ExitCode}
}

func (s *Server) newContext(w http.ResponseWriter, r *http.Request) {
	var req model.ContextRequest
	if !decode(w, r, &req, true) {
		return
	}
	c, err := s.m.NewContext(r.Context(), r.PathValue("id"), sandbox.ContextSpec{ID: req.ID, Language: req.Language, Cwd: req.Cwd, Env: req.Env})
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, contextOut(c))
}

func (s *Server) contexts(w http.ResponseWriter, r *http.Request) {
	cs, err := s.m.Contexts(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string][]model.Context{"contexts": mapOut(cs, contextOut)})
}

func (s *Server) deleteContext(w http.ResponseWriter, r *http.Request) {
	if err := s.m.DeleteContext(r.Context(), r.PathValue("id"), r.PathValue("ctx")); err != nil {
		s.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) interrupt(w http.ResponseWriter, r *http.Request) {
	if err := s.m.Interrupt(r.Context(), r.PathValue("id"), r.PathValue("ctx")); err != nil {
		s.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) restartContext(w http.ResponseWriter, r *http.Request) {
	c, err := s.m.RestartContext(r.Context(), r.PathValue("id"), r.PathValue("ctx"))
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, contextOut(c))
}

// run streams a run's events as NDJSON lines, each flushed as it comes;
// an error before the first is answered as JSON.
func (s *Server) run(w http.ResponseWriter, r *http.Request) {
	var req model.RunRequest
	if !decode(w, r, &req, false) {
		return
	}
	l := newLazyWriter(w, "application/x-ndjson")
	send := func(ev model.RunEvent) error {
		line, err := json.Marshal(ev)
		if err != nil {
			return err
		}
		_, err = l.Write(append(line, '\n'))
		return err
	}
	end, err := s.m.Run(r.Context(), r.PathValue("id"), r.PathValue("ctx"), sandbox.RunSpec{Code: req.Code, TimeoutMS: int64(req.TimeoutMS)},
		func(ev sandbox.RunEvent) error { return send(runEventOut(ev)) })
	if err == nil {
		out := runEndOut(end)
		err = send(model.RunEvent{End: &out})
	}
	s.end(l, err)
}
