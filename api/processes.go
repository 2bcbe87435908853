package api

import (
	"bufio"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/sietch-vm/sietch/api/model"
	"github.com/sietch-vm/sietch/sandbox"
	"github.com/sietch-vm/sietch/wire/execstream"
)

// wantsStream says whether an exec asks for an exec stream.
func wantsStream(r *http.Request) bool {
	return headerHas(r.Header, "Connection", "upgrade") && strings.EqualFold(r.Header.Get("Upgrade"), execstream.Protocol)
}

func headerHas(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// execStream starts the command in the guest with its stdio on an exec
// stream, answers 101 and relays the stream between the client and the
// guest agent without reading it: both ends check the frames. A command
// that cannot start is answered as any error is.
func (s *Server) execStream(w http.ResponseWriter, r *http.Request, spec sandbox.ExecSpec) {
	if spec.Stdin != nil {
		writeError(w, http.StatusBadRequest, model.CodeBadRequest, "%s", "an exec stream carries stdin in its frames; leave stdin out of the request")
		return
	}
	guest, err := s.m.ExecStream(r.Context(), r.PathValue("id"), spec)
	if err != nil {
		s.fail(w, err)
		return
	}
	client, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		guest.Close()
		writeError(w, http.StatusInternalServerError, model.CodeInternal, "take over the connection: %v", err)
		return
	}
	brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: " + execstream.Protocol + "\r\n\r\n")
	if err := brw.Flush(); err != nil {
		client.Close()
		guest.Close()
		return
	}
	s.log.Debug("exec stream open", "sandbox", r.PathValue("id"), "cmd", spec.Cmd)
	splice(client, brw.Reader, guest)
	s.log.Debug("exec stream closed", "sandbox", r.PathValue("id"), "cmd", spec.Cmd)
}

// splice copies both ways until either side ends, then closes both: the
// guest ends the stream after the exit frame, and a client that goes
// away ends the process.
func splice(client net.Conn, buffered *bufio.Reader, guest net.Conn) {
	var once sync.Once
	done := make(chan struct{})
	stop := func() { once.Do(func() { client.Close(); guest.Close(); close(done) }) }
	go func() {
		var src io.Reader = client
		if buffered.Buffered() > 0 {
			src = io.MultiReader(io.LimitReader(buffered, int64(buffered.Buffered())), client)
		}
		io.Copy(guest, src)
		stop()
	}()
	go func() {
		io.Copy(client, guest)
		stop()
	}()
	<-done
}

// startProcess runs a detached command and answers with its id.
func (s *Server) startProcess(w http.ResponseWriter, r *http.Request, spec sandbox.ExecSpec) {
	if spec.Stdin != nil {
		writeError(w, http.StatusBadRequest, model.CodeBadRequest, "%s", "a detached process takes no stdin")
		return
	}
	st, err := s.m.StartProcess(r.Context(), r.PathValue("id"), spec)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, model.Started{ID: st.ID, PID: st.PID})
}

func processOut(p sandbox.Process) model.Process {
	out := model.Process{ID: p.ID, PID: p.PID, Cmd: p.Cmd, Args: p.Args, TTY: p.TTY, Detached: p.Detached, State: p.State,
		OutputBytes: p.OutputBytes, StartedAt: p.StartedAt, EndedAt: p.EndedAt}
	if p.State == model.ProcessExited {
		exit := model.ExecExit{Code: -1, Signal: p.Signal, TimedOut: p.TimedOut}
		if p.ExitCode != nil {
			exit.Code = *p.ExitCode
		}
		out.Exit = &exit
	}
	return out
}

func (s *Server) processes(w http.ResponseWriter, r *http.Request) {
	ps, err := s.m.Processes(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string][]model.Process{"processes": mapOut(ps, processOut)})
}

func (s *Server) process(w http.ResponseWriter, r *http.Request) {
	p, err := s.m.Process(r.Context(), r.PathValue("id"), r.PathValue("proc"))
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, processOut(p))
}

func (s *Server) waitProcess(w http.ResponseWriter, r *http.Request) {
	p, err := s.m.WaitProcess(r.Context(), r.PathValue("id"), r.PathValue("proc"))
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, processOut(p))
}

func (s *Server) signalProcess(w http.ResponseWriter, r *http.Request) {
	var req model.SignalRequest
	if !decode(w, r, &req, false) {
		return
	}
	if err := s.m.SignalProcess(r.Context(), r.PathValue("id"), r.PathValue("proc"), req.Signal); err != nil {
		s.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) deleteProcess(w http.ResponseWriter, r *http.Request) {
	if err := s.m.DeleteProcess(r.Context(), r.PathValue("id"), r.PathValue("proc")); err != nil {
		s.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// processOutput streams a detached process's kept output as ExecEvent
// lines: ?offset=N (default 0: all that is kept) and ?follow=true (until
// it exits).
func (s *Server) processOutput(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var offset int64
	if v := q.Get("offset"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, model.CodeBadRequest, "offset=%q: want a byte offset, 0 or more", v)
			return
		}
		offset = n
	}
	follow := false
	if v := q.Get("follow"); v != "" {
		var err error
		if follow, err = strconv.ParseBool(v); err != nil {
			writeError(w, http.StatusBadRequest, model.CodeBadRequest, "follow=%q: want true or false", v)
			return
		}
	}
	l := newLazyWriter(w, "application/x-ndjson")
	err := s.m.ProcessOutput(r.Context(), r.PathValue("id"), r.PathValue("proc"), offset, follow, func(ev sandbox.ExecEvent) error {
		out := model.ExecEvent{Dropped: ev.Dropped}
		switch {
		case len(ev.Stdout) > 0:
			out.Stdout = base64.StdEncoding.EncodeToString(ev.Stdout)
		case len(ev.Stderr) > 0:
			out.Stderr = base64.StdEncoding.EncodeToString(ev.Stderr)
		case ev.ExitCode != nil || ev.Signal != "":
			exit := model.ExecExit{Code: -1, Signal: ev.Signal, TimedOut: ev.TimedOut}
			if ev.ExitCode != nil {
				exit.Code = *ev.ExitCode
			}
			out.Exit = &exit
		case ev.Dropped == 0:
			return nil
		}
		return writeEvent(l, out)
	})
	s.end(l, err)
}
