package agent

import (
	"net/http"
	"os"
	"strings"

	"github.com/sietch-vm/sietch/wire/agentproto"
)

// handleStart starts a background process in its own session and
// answers at once: POST /v1/start. The process is an exec like the
// others (signal it by id) until it exits.
func (a *Agent) handleStart(w http.ResponseWriter, r *http.Request) {
	var sreq agentproto.StartRequest
	if e := decodeJSON(r.Body, maxJSONBody, &sreq); e != nil {
		writeError(w, e)
		return
	}
	req := agentproto.ExecRequest{ID: sreq.ID, Cmd: sreq.Cmd, Args: sreq.Args, Env: sreq.Env, Cwd: sreq.Cwd, User: sreq.User}
	if e := validateExec(&req); e != nil {
		writeError(w, e)
		return
	}
	if sreq.Log != "" && (!strings.HasPrefix(sreq.Log, "/") || strings.IndexByte(sreq.Log, 0) >= 0) {
		writeError(w, badRequest("log %q: want an absolute path in the guest", sreq.Log))
		return
	}
	p, attr, argv, e := a.begin(&req)
	if e != nil {
		writeError(w, e)
		return
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		a.unregister(p)
		writeError(w, apiErr(codeInternal, "start %s: open %s: %v", req.Cmd, os.DevNull, err))
		return
	}
	defer null.Close()
	out := null
	if sreq.Log != "" {
		f, err := os.OpenFile(sreq.Log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			a.unregister(p)
			writeError(w, fsError("open the log", sreq.Log, err))
			return
		}
		defer f.Close()
		out = f
	}
	attr.Files = []*os.File{null, out, out}
	attr.Sys.Setsid = true // not in the agent's session: it outlives every request
	proc, err := a.startProcess(argv[0], argv, attr)
	if err != nil {
		a.unregister(p)
		writeError(w, startError(&req, attr.Dir, err))
		return
	}
	a.mu.Lock()
	p.proc, p.pid = proc, proc.Pid
	a.mu.Unlock()
	a.log.Info("agent: background process started", "id", p.id, "pid", p.pid, "cmd", argv[0], "args", req.Args, "log", sreq.Log)
	go func() {
		a.wait(p)
		proc.Release()
		a.unregister(p)
		a.log.Info("agent: background process ended", "id", p.id, "pid", p.pid, "status", p.status)
	}()
	writeJSON(w, http.StatusOK, agentproto.Started{ID: p.id, PID: p.pid})
}
