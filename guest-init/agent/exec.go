package agent

import (
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/sietch-vm/sietch/wire/agentproto"
)

const (
	outputChunk = 32 << 10 // bytes per stdout/stderr event at most
	// drainGrace is how long output may keep flowing after the process
	// exits; only a background child still holding the pipes needs it.
	drainGrace = 2 * time.Second
)

// handleExec starts a process and streams its output: POST /v1/exec.
func (a *Agent) handleExec(w http.ResponseWriter, r *http.Request) {
	req, e := decodeExecRequest(r.Body)
	if e != nil {
		writeError(w, e)
		return
	}
	if req.Detach {
		a.startDetached(w, req, http.StatusCreated)
		return
	}
	if wantsStream(r) {
		a.execStream(w, r, req)
		return
	}
	if req.Log != "" {
		writeError(w, badRequest("log is for detached processes: give \"detach\": true too"))
		return
	}
	p, attr, argv, e := a.begin(&req)
	if e != nil {
		writeError(w, e)
		return
	}
	defer a.unregister(p)

	files, err := openStdio(&req, p, false)
	if err != nil {
		writeError(w, apiErr(codeInternal, "exec %s: %v", req.Cmd, err))
		return
	}
	attr.Files = files.child
	if req.TTY != nil {
		attr.Sys.Setsid, attr.Sys.Setctty, attr.Sys.Ctty = true, true, 0
	} else {
		attr.Sys.Setpgid = true
	}
	proc, err := a.startProcess(argv[0], argv, attr)
	files.close()
	if err != nil {
		p.closeParent()
		writeError(w, startError(&req, attr.Dir, err))
		return
	}
	a.mu.Lock() // running() reads them
	p.proc, p.pid = proc, proc.Pid
	a.mu.Unlock()
	a.log.Info("agent: exec started", "id", p.id, "pid", p.pid, "cmd", argv[0], "args", req.Args)
	go a.wait(p)

	ew := &eventWriter{w: w, rc: http.NewResponseController(w), p: p}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	ew.send(agentproto.ExecEvent{ID: p.id, PID: p.pid})

	var readers sync.WaitGroup
	for i, f := range p.output {
		readers.Add(1)
		go func() {
			defer readers.Done()
			ew.copyOutput(f, i == 1)
		}()
	}
	if req.TimeoutMS > 0 {
		t := time.AfterFunc(time.Duration(req.TimeoutMS)*time.Millisecond, func() {
			p.timedOut.Store(true)
			p.kill()
		})
		defer t.Stop()
	}
	select {
	case <-p.exited:
	case <-r.Context().Done():
		// Nobody will read the output: the client went away.
		a.log.Info("agent: exec client gone; killing", "id", p.id, "pid", p.pid)
		p.kill()
		<-p.exited
	}
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
		case <-time.After(drainGrace): // should not happen; never hang the stream on it
			a.log.Warn("agent: exec output readers stuck", "id", p.id)
		}
	}
	p.closeParent()
	proc.Release()
	a.unregister(p) // before the final event: once a client sees it, the id is free
	ew.finish(finalEvent(p))
	a.log.Info("agent: exec ended", "id", p.id, "pid", p.pid, "status", p.status, "timed_out", p.timedOut.Load())
}

// begin prepares req and registers a process for it under its id (a new
// one when it has none); the caller unregisters it.
func (a *Agent) begin(req *agentproto.ExecRequest) (*process, *os.ProcAttr, []string, *Error) {
	attr, argv, e := a.prepare(req)
	if e != nil {
		return nil, nil, nil, e
	}
	p := &process{id: req.ID, exited: make(chan struct{}), cmd: req.Cmd, args: req.Args, tty: req.TTY != nil, started: time.Now()}
	if p.id == "" {
		p.id = randomHex(8)
	}
	if e := a.register(p); e != nil {
		return nil, nil, nil, e
	}
	return p, attr, argv, nil
}

// baseEnv is every exec's environment before its request's own:
// Config.Env, then what POST /v1/identity added (later entries win).
func (a *Agent) baseEnv() []string {
	a.mu.Lock()
	env := append(mergeEnv(a.cfg.Env, nil), a.extraEnv...)
	a.mu.Unlock()
	return mergeEnv(env, nil)
}

// prepare turns a request into what os.StartProcess takes.
func (a *Agent) prepare(req *agentproto.ExecRequest) (*os.ProcAttr, []string, *Error) {
	env := a.baseEnv()
	a.mu.Lock()
	defCwd, defUser := a.defaultCwd, a.defaultUsr
	a.mu.Unlock()
	sys := &syscall.SysProcAttr{}
	if req.User == "" && defUser != "" {
		// The copy is the caller's: set the image's USER on it.
		r := *req
		r.User = defUser
		req = &r
	}
	cwd := req.Cwd
	if cwd == "" {
		cwd = a.root
	}
	if req.User != "" {
		acct, e := lookupUser(req.User)
		if e != nil {
			return nil, nil, e
		}
		sys.Credential = acct.cred
		env = mergeEnv(env, map[string]string{"HOME": acct.home, "USER": acct.name, "LOGNAME": acct.name})
		if fi, err := os.Stat(acct.home); req.Cwd == "" && err == nil && fi.IsDir() {
			cwd = acct.home // as a login would
		}
	}
	if req.Cwd == "" && defCwd != "" {
		cwd = defCwd // the image's WORKDIR wins over the user's home, as in Docker
	}
	env = mergeEnv(env, req.Env)
	if e := checkDir(cwd); e != nil {
		return nil, nil, e
	}
	pathEnv, _ := getenv(env, "PATH")
	prog, e := lookPath(req.Cmd, pathEnv, cwd)
	if e != nil {
		return nil, nil, e
	}
	argv := append([]string{prog}, req.Args...)
	return &os.ProcAttr{Dir: cwd, Env: env, Sys: sys}, argv, nil
}

// startError explains why the child could not chdir or execve.
func startError(req *agentproto.ExecRequest, cwd string, err error) *Error {
	cmd := req.Cmd
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return apiErr(codeNotFound, "exec %s: the program or its interpreter does not exist", cmd)
	case errors.Is(err, fs.ErrPermission) && req.User != "":
		return apiErr(codeForbidden, "exec %s as user %s: permission denied; can that user enter cwd %s and run the program?", cmd, req.User, cwd)
	case errors.Is(err, fs.ErrPermission):
		return apiErr(codeForbidden, "exec %s: permission denied", cmd)
	case errors.Is(err, syscall.ENOEXEC):
		return badRequest("exec %s: not in an executable format", cmd)
	case errors.Is(err, syscall.EAGAIN):
		return apiErr(codeTooMany, "exec %s: process limit reached: %v", cmd, err)
	}
	return apiErr(codeInternal, "exec %s: %v", cmd, err)
}

// startProcess starts a child so that its exit status reaches us even
// when PID 1's reaper collects every child.
func (a *Agent) startProcess(name string, argv []string, attr *os.ProcAttr) (*os.Process, error) {
	if a.cfg.Reaper != nil {
		return a.cfg.Reaper.StartProcess(name, argv, attr)
	}
	return os.StartProcess(name, argv, attr)
}

// wait collects p's exit status and closes p.exited.
func (a *Agent) wait(p *process) {
	defer close(p.exited)
	if a.cfg.Reaper != nil {
		p.status, p.waitErr = a.cfg.Reaper.Wait(p.pid)
		return
	}
	st, err := p.proc.Wait()
	if err != nil {
		p.waitErr = err
		return
	}
	p.status = st.Sys().(syscall.WaitStatus)
}

func finalEvent(p *process) agentproto.ExecEvent {
	ev := agentproto.ExecEvent{TimedOut: p.timedOut.Load()}
	switch {
	case p.waitErr != nil:
		ev.Error = "wait: " + p.waitErr.Error()
	case p.status.Signaled():
		ev.Signal = unix.SignalName(p.status.Signal())
		if ev.Signal == "" {
			ev.Signal = "SIG" + p.status.Signal().String()
		}
	default:
		code := p.status.ExitStatus()
		ev.ExitCode = &code
	}
	return ev
}

// register reserves p's id among the running execs.
func (a *Agent) register(p *process) *Error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return apiErr(codeConflict, "agent is shutting down")
	}
	if old, ok := a.execs[p.id]; ok {
		if !old.ended.IsZero() {
			return apiErr(codeConflict, "exec id %q is taken by a detached process that exited; delete it (DELETE /v1/exec/%s) or pick another id", p.id, p.id)
		}
		return apiErr(codeConflict, "exec id %q is already running; pick another or omit it", p.id)
	}
	if n := a.runningLocked(); n >= maxExecs {
		return apiErr(codeTooMany, "%d execs running; wait for some to end", n)
	}
	a.execs[p.id] = p
	return nil
}

// runningLocked counts the execs that have not exited. The caller holds a.mu.
func (a *Agent) runningLocked() int {
	n := 0
	for _, p := range a.execs {
		if p.ended.IsZero() {
			n++
		}
	}
	return n
}

// unregister frees p's id, unless a later exec has taken it already.
func (a *Agent) unregister(p *process) {
	a.mu.Lock()
	if a.execs[p.id] == p {
		delete(a.execs, p.id)
	}
	a.mu.Unlock()
}

// running finds a running exec or answers 404.
func (a *Agent) running(w http.ResponseWriter, r *http.Request) *process {
	id := r.PathValue("id")
	a.mu.Lock()
	p := a.execs[id]
	started := p != nil && p.proc != nil
	a.mu.Unlock()
	if !started {
		writeError(w, apiErr(codeNotFound, "no running exec with id %q", id))
		return nil
	}
	return p
}

// eventWriter writes exec events, one JSON line each, flushed at once.
type eventWriter struct {
	mu     sync.Mutex
	w      io.Writer
	rc     *http.ResponseController
	p      *process
	broken bool // the client is gone, or the last event went out
}

func (ew *eventWriter) send(ev agentproto.ExecEvent) { ew.write(ev, false) }

// finish sends the last event; nothing is sent after it.
func (ew *eventWriter) finish(ev agentproto.ExecEvent) { ew.write(ev, true) }

func (ew *eventWriter) write(ev agentproto.ExecEvent, last bool) {
	b, err := json.Marshal(ev)
	if err != nil {
		return
	}
	ew.mu.Lock()
	defer ew.mu.Unlock()
	if ew.broken {
		return
	}
	if last {
		defer func() { ew.broken = true }()
	}
	// The last event goes out with the stream's end when the handler
	// returns: one write to the connection, not two.
	if _, err := ew.w.Write(append(b, '\n')); err == nil && !last {
		err = ew.rc.Flush()
	}
	if err != nil {
		ew.broken = true
		ew.p.kill()
	}
}

// copyOutput sends what f yields as stdout (or stderr) events until EOF.
func (ew *eventWriter) copyOutput(f *os.File, stderr bool) {
	buf := make([]byte, outputChunk)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			chunk := append([]byte(nil), buf[:n]...)
			if stderr {
				ew.send(agentproto.ExecEvent{Stderr: chunk})
			} else {
				ew.send(agentproto.ExecEvent{Stdout: chunk})
			}
		}
		if err != nil {
			// EOF on a pipe; EIO on a PTY master once the terminal closed.
			return
		}
	}
}

// handleStdin streams the body into the exec's stdin, then closes it:
// POST /v1/exec/{id}/stdin.
func (a *Agent) handleStdin(w http.ResponseWriter, r *http.Request) {
	p := a.running(w, r)
	if p == nil {
		return
	}
	if e := p.takeStdin(); e != nil {
		writeError(w, e)
		return
	}
	n, err := p.feedStdin(r.Body)
	if err != nil {
		if errors.Is(err, syscall.EPIPE) || errors.Is(err, os.ErrClosed) || errors.Is(err, syscall.EIO) {
			writeError(w, apiErr(codeConflict, "exec %s: the process closed its stdin after %d bytes", p.id, n))
			return
		}
		writeError(w, badRequest("exec %s: stdin after %d bytes: %v", p.id, n, err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]int64{"bytes": n})
}

// handleSignal signals the exec's process group: POST /v1/exec/{id}/signal.
func (a *Agent) handleSignal(w http.ResponseWriter, r *http.Request) {
	var req agentproto.SignalRequest
	if e := decodeJSON(r.Body, maxJSONBody, &req); e != nil {
		writeError(w, e)
		return
	}
	sig, e := parseSignal(req.Signal)
	if e != nil {
		writeError(w, e)
		return
	}
	p := a.running(w, r)
	if p == nil {
		return
	}
	if err := p.signal(sig); err != nil {
		writeError(w, apiErr(codeConflict, "exec %s: signal %s: %v", p.id, req.Signal, err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleResize sets the exec's terminal size: POST /v1/exec/{id}/resize.
func (a *Agent) handleResize(w http.ResponseWriter, r *http.Request) {
	var req agentproto.TTYSize
	if e := decodeJSON(r.Body, maxJSONBody, &req); e != nil {
		writeError(w, e)
		return
	}
	if e := validSize(req.Rows, req.Cols); e != nil {
		writeError(w, e)
		return
	}
	p := a.running(w, r)
	if p == nil {
		return
	}
	if p.ptmx == nil {
		writeError(w, apiErr(codeConflict, "exec %s has no tty; start it with \"tty\": {\"rows\": R, \"cols\": C}", p.id))
		return
	}
	if err := pty.Setsize(p.ptmx, &pty.Winsize{Rows: req.Rows, Cols: req.Cols}); err != nil {
		writeError(w, apiErr(codeConflict, "exec %s: resize: %v", p.id, err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
