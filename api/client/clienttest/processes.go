package clienttest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/sietch-vm/sietch/api/model"
	"github.com/sietch-vm/sietch/wire/execstream"
)

// fakeProc is a detached process: the fake runs it to its end at once.
type fakeProc struct {
	p      model.Process
	output []model.ExecEvent
}

func isStream(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), execstream.Protocol) && strings.Contains(strings.ToLower(r.Header.Get("Connection")), "upgrade")
}

// execStream serves an exec stream: it reads stdin frames to their end,
// runs Exec with them as the request's stdin, and sends its output and
// exit as frames. Resizes and signals are recorded in Signals.
func (s *Server) execStream(w http.ResponseWriter, r *http.Request, req model.ExecRequest) {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		writeError(w, http.StatusInternalServerError, model.CodeInternal, err.Error(), false)
		return
	}
	defer conn.Close()
	brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: " + execstream.Protocol + "\r\n\r\n")
	brw.Flush()
	fw := execstream.NewWriter(conn)
	fw.WriteJSON(execstream.Started, execstream.StartedMsg{ID: "exec-1", PID: 42})
	fr := execstream.NewReader(brw.Reader)
	var stdin bytes.Buffer
	for eof := false; !eof; {
		f, err := fr.Next()
		if err != nil {
			return
		}
		switch f.Type {
		case execstream.Stdin:
			stdin.Write(f.Payload)
		case execstream.StdinEOF:
			eof = true
		case execstream.Signal, execstream.Resize:
			s.mu.Lock()
			s.Frames = append(s.Frames, fmt.Sprintf("%d %s", f.Type, f.Payload))
			s.mu.Unlock()
		}
	}
	if stdin.Len() > 0 {
		req.Stdin = base64.StdEncoding.EncodeToString(stdin.Bytes())
	}
	out := &ExecOutput{chunk: func(b []byte, stderr bool) {
		typ := execstream.Stdout
		if stderr {
			typ = execstream.Stderr
		}
		fw.Write(typ, b)
	}}
	exit := s.Exec(req, out)
	fw.WriteJSON(execstream.Exit, execstream.ExitMsg{Code: exit.Code, Signal: exit.Signal, TimedOut: exit.TimedOut})
}

// startProcess runs a detached exec to its end and keeps its output.
func (s *Server) startProcess(w http.ResponseWriter, r *http.Request, req model.ExecRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.boxes[r.PathValue("id")]
	fp := &fakeProc{p: model.Process{ID: fmt.Sprintf("proc-%d", len(b.procs)+1), PID: 100 + len(b.procs), Cmd: req.Cmd, Args: req.Args,
		TTY: req.TTY != nil, Detached: true, StartedAt: time.Date(2025, 1, 2, 4, 0, 0, 0, time.UTC)}}
	out := &ExecOutput{chunk: func(data []byte, stderr bool) {
		ev := model.ExecEvent{Stdout: base64.StdEncoding.EncodeToString(data)}
		if stderr {
			ev = model.ExecEvent{Stderr: ev.Stdout}
		}
		fp.output = append(fp.output, ev)
		fp.p.OutputBytes += int64(len(data))
	}}
	exit := s.Exec(req, out)
	ended := fp.p.StartedAt.Add(time.Second)
	fp.p.State, fp.p.Exit, fp.p.EndedAt = model.ProcessExited, &exit, &ended
	b.procs = append(b.procs, fp)
	writeJSON(w, http.StatusCreated, model.Started{ID: fp.p.ID, PID: fp.p.PID})
}

func (s *Server) processRoutes(auth func(string, func(http.ResponseWriter, *http.Request))) {
	auth("GET /v1/sandboxes/{id}/processes", s.withAgent(func(w http.ResponseWriter, r *http.Request, b *box) {
		out := []model.Process{}
		for _, fp := range b.procs {
			out = append(out, fp.p)
		}
		writeJSON(w, http.StatusOK, map[string][]model.Process{"processes": out})
	}))
	auth("GET /v1/sandboxes/{id}/processes/{proc}", s.withProc(func(w http.ResponseWriter, r *http.Request, b *box, fp *fakeProc) {
		writeJSON(w, http.StatusOK, fp.p)
	}))
	auth("DELETE /v1/sandboxes/{id}/processes/{proc}", s.withProc(func(w http.ResponseWriter, r *http.Request, b *box, fp *fakeProc) {
		for i, p := range b.procs {
			if p == fp {
				b.procs = append(b.procs[:i], b.procs[i+1:]...)
				break
			}
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	auth("GET /v1/sandboxes/{id}/processes/{proc}/output", s.withProc(func(w http.ResponseWriter, r *http.Request, b *box, fp *fakeProc) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		enc := json.NewEncoder(w)
		for _, ev := range fp.output {
			enc.Encode(ev)
		}
		enc.Encode(model.ExecEvent{Exit: fp.p.Exit})
	}))
	auth("POST /v1/sandboxes/{id}/processes/{proc}/signal", s.withProc(func(w http.ResponseWriter, r *http.Request, b *box, fp *fakeProc) {
		var req model.SignalRequest
		if !decode(w, r, &req) {
			return
		}
		writeError(w, http.StatusConflict, model.CodeConflict, "process "+fp.p.ID+" has exited", false)
	}))
	auth("POST /v1/sandboxes/{id}/processes/{proc}/wait", s.withProc(func(w http.ResponseWriter, r *http.Request, b *box, fp *fakeProc) {
		writeJSON(w, http.StatusOK, fp.p)
	}))
}

// withProc is withAgent for a process named in the path.
func (s *Server) withProc(h func(http.ResponseWriter, *http.Request, *box, *fakeProc)) http.HandlerFunc {
	return s.withAgent(func(w http.ResponseWriter, r *http.Request, b *box) {
		for _, fp := range b.procs {
			if fp.p.ID == r.PathValue("proc") {
				h(w, r, b, fp)
				return
			}
		}
		writeError(w, http.StatusNotFound, model.CodeNotFound, "no process "+r.PathValue("proc"), false)
	})
}
