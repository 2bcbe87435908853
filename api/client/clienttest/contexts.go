package clienttest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/sietch-vm/sietch/api/model"
)

// RunFunc runs code in a fake context: it sends events through send and
// returns the end.
type RunFunc func(c model.Context, code string, send func(model.RunEvent)) model.RunEnd

// defaultRun understands `print(X)` (X on stdout), `raise X` (an error
// named X) and anything else as an expression whose value is itself.
func defaultRun(c model.Context, code string, send func(model.RunEvent)) model.RunEnd {
	code = strings.TrimSpace(code)
	switch {
	case strings.HasPrefix(code, "print(") && strings.HasSuffix(code, ")"):
		send(model.RunEvent{Stdout: code[len("print("):len(code)-1] + "\n"})
	case strings.HasPrefix(code, "raise "):
		name := strings.TrimPrefix(code, "raise ")
		send(model.RunEvent{Error: &model.RunError{Name: name, Value: "raised", Traceback: "Traceback (most recent call last):\n" + name}})
		return model.RunEnd{Status: model.RunFailed, ExecutionCount: c.Runs}
	case code != "":
		send(model.RunEvent{Result: map[string]string{"text/plain": code}})
	}
	return model.RunEnd{Status: model.RunOK, ExecutionCount: c.Runs}
}

func (s *Server) contextRoutes(auth func(string, func(http.ResponseWriter, *http.Request))) {
	auth("POST /v1/sandboxes/{id}/contexts", s.withAgent(func(w http.ResponseWriter, r *http.Request, b *box) {
		var req model.ContextRequest
		if !decode(w, r, &req) {
			return
		}
		switch req.Language {
		case "":
			req.Language = model.LanguagePython
		case model.LanguagePython, model.LanguageNode, model.LanguageBash:
		default:
			writeError(w, http.StatusBadRequest, model.CodeBadRequest, "language "+req.Language+": want python, node or bash", false)
			return
		}
		if req.ID == "" {
			req.ID = fmt.Sprintf("ctx-%d", len(b.contexts)+1)
		}
		if _, ok := b.contexts[req.ID]; ok {
			writeError(w, http.StatusConflict, model.CodeConflict, "context "+req.ID+" exists", false)
			return
		}
		c := model.Context{ID: req.ID, Language: req.Language, Cwd: req.Cwd, PID: 100 + len(b.contexts), State: model.ContextIdle, CreatedAt: time.Now().UTC()}
		b.addContext(c)
		writeJSON(w, http.StatusCreated, c)
	}))
	auth("GET /v1/sandboxes/{id}/contexts", s.withAgent(func(w http.ResponseWriter, r *http.Request, b *box) {
		out := []model.Context{}
		for _, c := range b.contexts {
			out = append(out, *c)
		}
		sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
		writeJSON(w, http.StatusOK, map[string][]model.Context{"contexts": out})
	}))
	auth("DELETE /v1/sandboxes/{id}/contexts/{ctx}", s.withContext(func(w http.ResponseWriter, r *http.Request, b *box, c *model.Context) {
		delete(b.contexts, c.ID)
		w.WriteHeader(http.StatusNoContent)
	}))
	auth("POST /v1/sandboxes/{id}/contexts/{ctx}/interrupt", s.withContext(func(w http.ResponseWriter, r *http.Request, b *box, c *model.Context) {
		w.WriteHeader(http.StatusNoContent)
	}))
	auth("POST /v1/sandboxes/{id}/contexts/{ctx}/restart", s.withContext(func(w http.ResponseWriter, r *http.Request, b *box, c *model.Context) {
		c.State, c.Reason, c.Runs = model.ContextIdle, "", 0
		writeJSON(w, http.StatusOK, *c)
	}))
	auth("POST /v1/sandboxes/{id}/contexts/{ctx}/run", s.withContext(func(w http.ResponseWriter, r *http.Request, b *box, c *model.Context) {
		var req model.RunRequest
		if !decode(w, r, &req) {
			return
		}
		c.Runs++
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(http.StatusOK)
		enc := json.NewEncoder(w)
		fl, _ := w.(http.Flusher)
		send := func(ev model.RunEvent) {
			_ = enc.Encode(ev)
			if fl != nil {
				fl.Flush()
			}
		}
		end := s.Run(*c, req.Code, send)
		send(model.RunEvent{End: &end})
	}))
}

func (b *box) addContext(c model.Context) {
	if b.contexts == nil {
		b.contexts = map[string]*model.Context{}
	}
	b.contexts[c.ID] = &c
}

// withContext is withAgent for a context named in the path; the default
// contexts start on first use, as in a real sandbox.
func (s *Server) withContext(h func(http.ResponseWriter, *http.Request, *box, *model.Context)) http.HandlerFunc {
	return s.withAgent(func(w http.ResponseWriter, r *http.Request, b *box) {
		id := r.PathValue("ctx")
		c, ok := b.contexts[id]
		if !ok {
			lang, isDefault := map[string]string{"default": model.LanguagePython, "default-node": model.LanguageNode, "default-bash": model.LanguageBash}[id]
			if !isDefault {
				writeError(w, http.StatusNotFound, model.CodeNotFound, fmt.Sprintf("no context %q (GET .../contexts lists them)", id), false)
				return
			}
			b.addContext(model.Context{ID: id, Language: lang, PID: 99, State: model.ContextIdle, CreatedAt: time.Now().UTC()})
			c = b.contexts[id]
		}
		h(w, r, b, c)
	})
}
