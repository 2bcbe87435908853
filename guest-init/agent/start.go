package agent

import (
	"net/http"

	"github.com/sietch-vm/sietch/wire/agentproto"
)

// handleStart starts a background process and answers at once: POST
// /v1/start, the older form of a detached exec (POST /v1/exec with
// "detach": true), whose output goes to Log.
func (a *Agent) handleStart(w http.ResponseWriter, r *http.Request) {
	var sreq agentproto.StartRequest
	if e := decodeJSON(r.Body, maxJSONBody, &sreq); e != nil {
		writeError(w, e)
		return
	}
	req := agentproto.ExecRequest{ID: sreq.ID, Cmd: sreq.Cmd, Args: sreq.Args, Env: sreq.Env, Cwd: sreq.Cwd, User: sreq.User,
		Detach: true, Log: sreq.Log}
	if e := validateExec(&req); e != nil {
		writeError(w, e)
		return
	}
	a.startDetached(w, req, http.StatusOK)
}
