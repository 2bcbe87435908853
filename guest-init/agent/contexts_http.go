package agent

import (
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/sietch-vm/sietch/wire/agentproto"
)

// handleNewContext starts a code context: POST /v1/contexts.
func (a *Agent) handleNewContext(w http.ResponseWriter, r *http.Request) {
	var req agentproto.ContextRequest
	if e := decodeJSON(r.Body, maxJSONBody, &req); e != nil {
		writeError(w, e)
		return
	}
	c, e := a.newContext(req)
	if e != nil {
		writeError(w, e)
		return
	}
	writeJSON(w, http.StatusCreated, c.view())
}

// handleContexts lists the code contexts: GET /v1/contexts.
func (a *Agent) handleContexts(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string][]agentproto.Context{"contexts": a.contextsSorted()})
}

// context finds the context in the path or answers 404. The default
// context is started on first use.
func (a *Agent) context(w http.ResponseWriter, r *http.Request, start bool) *codeContext {
	id := r.PathValue("id")
	a.mu.Lock()
	c := a.contexts[id]
	a.mu.Unlock()
	lang, isDefault := agentproto.DefaultLanguage(id)
	if c == nil && start && isDefault {
		var e *Error
		a.defaultMu.Lock()
		a.mu.Lock()
		c = a.contexts[id]
		a.mu.Unlock()
		if c == nil {
			c, e = a.newContext(agentproto.ContextRequest{ID: id, Language: lang})
		}
		a.defaultMu.Unlock()
		if e != nil {
			writeError(w, e)
			return nil
		}
	}
	if c == nil {
		writeError(w, apiErr(codeNotFound, "no context %q (GET /v1/contexts lists them)", id))
	}
	return c
}

// runFlushDelay is how long a run's event may wait for the next one.
const runFlushDelay = 2 * time.Millisecond

// handleRun runs code in a context, streaming its events as NDJSON:
// POST /v1/contexts/{id}/run. A client that goes away interrupts the run.
func (a *Agent) handleRun(w http.ResponseWriter, r *http.Request) {
	var req agentproto.RunRequest
	if e := decodeJSON(r.Body, maxJSONBody, &req); e != nil {
		writeError(w, e)
		return
	}
	if req.TimeoutMS < 0 || time.Duration(req.TimeoutMS)*time.Millisecond > maxTimeout {
		writeError(w, badRequest("timeout_ms %d: want 0 (none) to %d", req.TimeoutMS, maxTimeout.Milliseconds()))
		return
	}
	c := a.context(w, r, true)
	if c == nil {
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	// Events go out at most runFlushDelay after they come, so that a
	// short run's result and end leave in one write with the stream's end
	// (each write to the guest's vsock costs an emulated system call and
	// a device notification) while a long run still streams.
	var mu sync.Mutex
	var gone bool // the client went away, or the handler is done
	var flush *time.Timer
	sink := func(ev agentproto.RunEvent) {
		mu.Lock()
		defer mu.Unlock()
		if gone {
			return
		}
		if enc.Encode(ev) != nil {
			gone = true
			return
		}
		if ev.End != nil || flush != nil {
			return // the end goes out when the handler returns
		}
		flush = time.AfterFunc(runFlushDelay, func() {
			mu.Lock()
			defer mu.Unlock()
			flush = nil
			if !gone && rc.Flush() != nil {
				gone = true
			}
		})
	}
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		gone = true
		if flush != nil {
			flush.Stop()
		}
	}()
	a.run(c, req.Code, time.Duration(req.TimeoutMS)*time.Millisecond, r.Context().Done(), sink)
}

// handleInterrupt sends SIGINT to the code running in a context (if any):
// POST /v1/contexts/{id}/interrupt. The context lives on.
func (a *Agent) handleInterrupt(w http.ResponseWriter, r *http.Request) {
	c := a.context(w, r, false)
	if c == nil {
		return
	}
	a.interruptContext(c)
	w.WriteHeader(http.StatusNoContent)
}

// handleRestart starts a context's interpreter anew, its state gone:
// POST /v1/contexts/{id}/restart.
func (a *Agent) handleRestart(w http.ResponseWriter, r *http.Request) {
	c := a.context(w, r, false)
	if c == nil {
		return
	}
	a.killContext(c)
	c.runMu.Lock() // a run of the old interpreter ends when it dies
	defer c.runMu.Unlock()
	c.mu.Lock()
	exited := c.exited
	c.mu.Unlock()
	<-exited
	if e := a.startContext(c); e != nil {
		writeError(w, e)
		return
	}
	writeJSON(w, http.StatusOK, c.view())
}

// handleDeleteContext ends a context: DELETE /v1/contexts/{id}.
func (a *Agent) handleDeleteContext(w http.ResponseWriter, r *http.Request) {
	c := a.context(w, r, false)
	if c == nil {
		return
	}
	a.mu.Lock()
	delete(a.contexts, c.id)
	a.mu.Unlock()
	a.killContext(c)
	w.WriteHeader(http.StatusNoContent)
}
