package agent

import (
	"encoding/json"
	"net/http"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/sietch-vm/sietch/wire/agentproto"
)

// maxKeptExited bounds the detached processes that exited and stay listed (with
// their output) until deleted; beyond it the oldest are forgotten.
const maxKeptExited = 32

// startDetached starts req in a session of its own and answers at once
// with its id and pid (status). Its output goes to a ring (and req.Log)
// until it exits; it stays listed until deleted.
func (a *Agent) startDetached(w http.ResponseWriter, req agentproto.ExecRequest, status int) {
	p, e := a.detach(req)
	if e != nil {
		writeError(w, e)
		return
	}
	writeJSON(w, status, agentproto.Started{ID: p.id, PID: p.pid})
}

// detach starts req as a detached process (see startDetached).
func (a *Agent) detach(req agentproto.ExecRequest) (*process, *Error) {
	if req.Log != "" && (req.Log[0] != '/' || len(req.Log) > 4096) {
		return nil, badRequest("log %q: want an absolute path in the guest", req.Log)
	}
	p, attr, argv, e := a.begin(&req)
	if e != nil {
		return nil, e
	}
	p.detached, p.ring = true, newOutputRing()
	// With a log, output is one stream, in the order it was written.
	files, err := openStdio(&req, p, req.Log != "")
	if err != nil {
		a.unregister(p)
		return nil, apiErr(codeInternal, "exec %s: %v", req.Cmd, err)
	}
	var logf *os.File
	if req.Log != "" {
		if logf, err = os.OpenFile(req.Log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644); err != nil {
			files.close()
			p.closeParent()
			a.unregister(p)
			return nil, fsError("open the log", req.Log, err)
		}
	}
	attr.Files = files.child
	attr.Sys.Setsid = true // not in the agent's session: it outlives every request
	if req.TTY != nil {
		attr.Sys.Setctty, attr.Sys.Ctty = true, 0
	}
	proc, err := a.startProcess(argv[0], argv, attr)
	files.close()
	if err != nil {
		p.closeParent()
		if logf != nil {
			logf.Close()
		}
		a.unregister(p)
		return nil, startError(&req, attr.Dir, err)
	}
	a.mu.Lock()
	p.proc, p.pid = proc, proc.Pid
	a.mu.Unlock()
	a.log.Info("agent: detached process started", "id", p.id, "pid", p.pid, "cmd", argv[0], "args", req.Args, "log", req.Log)
	go a.wait(p)
	go a.collect(p, proc, logf, time.Duration(req.TimeoutMS)*time.Millisecond)
	return p, nil
}

// collect copies a detached process's output to its ring (and log) until
// it exits and its output is drained, then keeps it listed as exited.
func (a *Agent) collect(p *process, proc *os.Process, logf *os.File, timeout time.Duration) {
	var readers sync.WaitGroup
	var logMu sync.Mutex
	for i, f := range p.output {
		readers.Add(1)
		go func() {
			defer readers.Done()
			buf := make([]byte, outputChunk)
			for {
				n, err := f.Read(buf)
				if n > 0 {
					p.ring.write(buf[:n], i == 1)
					if logf != nil {
						logMu.Lock()
						logf.Write(buf[:n])
						logMu.Unlock()
					}
				}
				if err != nil {
					return
				}
			}
		}()
	}
	if timeout > 0 {
		t := time.AfterFunc(timeout, func() {
			p.timedOut.Store(true)
			p.kill()
		})
		defer t.Stop()
	}
	<-p.exited
	a.drain(p, &readers)
	p.closeParent()
	if logf != nil {
		logf.Close()
	}
	proc.Release()
	a.mu.Lock()
	p.ended = time.Now()
	a.evictLocked()
	a.mu.Unlock()
	p.ring.close() // after ended: a reader woken by it finds the process exited
	a.log.Info("agent: detached process ended", "id", p.id, "pid", p.pid, "status", p.status, "timed_out", p.timedOut.Load())
}

// drain waits for p's output readers once p has exited: output may keep
// flowing for a while from a child still holding the pipes.
func (a *Agent) drain(p *process, readers *sync.WaitGroup) {
	drained := make(chan struct{})
	go func() { readers.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(drainGrace):
		for _, f := range p.output {
			f.SetReadDeadline(time.Now()) // wakes the readers: the fds are pollable
		}
		select {
		case <-drained:
		case <-time.After(drainGrace): // should not happen; never hang on it
			a.log.Warn("agent: exec output readers stuck", "id", p.id)
		}
	}
}

// evictLocked forgets the oldest exited detached processes beyond maxKeptExited.
func (a *Agent) evictLocked() {
	var kept []*process
	for _, p := range a.execs {
		if p.detached && !p.ended.IsZero() {
			kept = append(kept, p)
		}
	}
	if len(kept) <= maxKeptExited {
		return
	}
	sort.Slice(kept, func(i, j int) bool { return kept[i].ended.Before(kept[j].ended) })
	for _, p := range kept[:len(kept)-maxKeptExited] {
		delete(a.execs, p.id)
	}
}

// view describes p for GET /v1/exec. The caller holds a.mu.
func (p *process) view() agentproto.Process {
	v := agentproto.Process{ID: p.id, PID: p.pid, Cmd: p.cmd, Args: p.args, TTY: p.tty, Detached: p.detached,
		State: agentproto.ProcessRunning, StartedAt: p.started}
	if p.ring != nil {
		v.OutputBytes = p.ring.total()
	}
	if !p.ended.IsZero() || (!p.detached && p.hasExited()) {
		ev := finalEvent(p)
		v.State, v.ExitCode, v.Signal, v.TimedOut = agentproto.ProcessExited, ev.ExitCode, ev.Signal, ev.TimedOut
		if !p.ended.IsZero() {
			ended := p.ended
			v.EndedAt = &ended
		}
	}
	return v
}

// handleProcesses lists the execs: GET /v1/exec.
func (a *Agent) handleProcesses(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	out := make([]agentproto.Process, 0, len(a.execs))
	for _, p := range a.execs {
		if p.proc != nil {
			out = append(out, p.view())
		}
	}
	a.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if !out[i].StartedAt.Equal(out[j].StartedAt) {
			return out[i].StartedAt.Before(out[j].StartedAt)
		}
		return out[i].ID < out[j].ID
	})
	writeJSON(w, http.StatusOK, map[string][]agentproto.Process{"processes": out})
}

// handleProcess describes one exec: GET /v1/exec/{id}.
func (a *Agent) handleProcess(w http.ResponseWriter, r *http.Request) {
	p := a.running(w, r)
	if p == nil {
		return
	}
	a.mu.Lock()
	v := p.view()
	a.mu.Unlock()
	writeJSON(w, http.StatusOK, v)
}

// handleWait waits for an exec to exit and describes it: POST
// /v1/exec/{id}/wait. A client that goes away stops the wait, not the
// process.
func (a *Agent) handleWait(w http.ResponseWriter, r *http.Request) {
	p := a.running(w, r)
	if p == nil {
		return
	}
	select {
	case <-p.exited:
	case <-r.Context().Done():
		return
	}
	if p.ring != nil {
		// The exit status is there; the output may still be draining.
		for {
			_, _, _, ended, more := p.ring.read(p.ring.total())
			if ended {
				break
			}
			select {
			case <-more:
			case <-r.Context().Done():
				return
			}
		}
	}
	a.mu.Lock()
	v := p.view()
	a.mu.Unlock()
	writeJSON(w, http.StatusOK, v)
}

// handleDeleteProcess kills an exec if it runs and forgets it: DELETE
// /v1/exec/{id}.
func (a *Agent) handleDeleteProcess(w http.ResponseWriter, r *http.Request) {
	p := a.running(w, r)
	if p == nil {
		return
	}
	p.kill()
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		writeError(w, apiErr(codeInternal, "exec %s (pid %d) did not exit within 10s of SIGKILL", p.id, p.pid))
		return
	}
	a.unregister(p)
	w.WriteHeader(http.StatusNoContent)
}

// handleOutput streams a detached process's output from its ring as
// NDJSON exec events: GET /v1/exec/{id}/output?offset=N&follow=true.
// Without follow it sends what there is; with it, it goes on until the
// process exits. Either way the last event has the exit status once the
// process has exited.
func (a *Agent) handleOutput(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	follow := q.Get("follow") == "true" || q.Get("follow") == "1"
	var from int64
	if s := q.Get("offset"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			writeError(w, badRequest("offset %q: want a byte offset, 0 or more", s))
			return
		}
		from = n
	}
	p := a.running(w, r)
	if p == nil {
		return
	}
	if p.ring == nil {
		writeError(w, apiErr(codeConflict, "exec %s streams its output to the request that started it; only detached processes keep theirs", p.id))
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	send := func(ev agentproto.ExecEvent) bool { return enc.Encode(ev) == nil }
	for {
		chunks, dropped, next, ended, more := p.ring.read(from)
		if dropped > 0 && !send(agentproto.ExecEvent{Dropped: dropped}) {
			return
		}
		for _, c := range chunks {
			ev := agentproto.ExecEvent{Stdout: c.data}
			if c.stderr {
				ev = agentproto.ExecEvent{Stderr: c.data}
			}
			if !send(ev) {
				return
			}
		}
		from = next
		if ended {
			a.mu.Lock()
			ev := finalEvent(p)
			a.mu.Unlock()
			send(ev)
			rc.Flush()
			return
		}
		if rc.Flush() != nil || !follow {
			return
		}
		select {
		case <-more:
		case <-r.Context().Done():
			return
		}
	}
}
