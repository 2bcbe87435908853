package agentproto

import "time"

// Code-context languages.
const (
	LanguagePython = "python"
	LanguageBash   = "bash"
	LanguageNode   = "node"
)

// DefaultContext is the context id a run may name without creating it: a
// python context the agent starts on first use (a template can start it
// ahead, so that it is warm in every sandbox). Each other language has one
// too, named by DefaultContextFor.
const DefaultContext = "default"

// DefaultContextFor names the default context of a language: "default"
// for python, "default-node" and "default-bash" for the others.
func DefaultContextFor(language string) string {
	if language == "" || language == LanguagePython {
		return DefaultContext
	}
	return DefaultContext + "-" + language
}

// DefaultLanguage says which language's default context id is, if it is one.
func DefaultLanguage(id string) (string, bool) {
	for _, l := range []string{LanguagePython, LanguageNode, LanguageBash} {
		if id == DefaultContextFor(l) {
			return l, true
		}
	}
	return "", false
}

// ContextRequest is the body of POST /v1/contexts: a long-lived
// interpreter whose state persists between runs.
type ContextRequest struct {
	ID       string            `json:"id,omitempty"` // chosen by the client, or generated
	Language string            `json:"language"`     // LanguagePython (default), LanguageBash or LanguageNode
	Cwd      string            `json:"cwd,omitempty"`
	Env      map[string]string `json:"env,omitempty"`
}

// Context states.
const (
	ContextIdle    = "idle"
	ContextRunning = "running"
	ContextDead    = "dead" // its interpreter exited; restart it
)

// Context is one code context.
type Context struct {
	ID        string    `json:"id"`
	Language  string    `json:"language"`
	Cwd       string    `json:"cwd,omitempty"`
	PID       int       `json:"pid"`
	State     string    `json:"state"`
	Reason    string    `json:"reason,omitempty"` // why it is dead
	Runs      int       `json:"runs"`
	CreatedAt time.Time `json:"created_at"`
}

// RunRequest is the body of POST /v1/contexts/{id}/run.
type RunRequest struct {
	Code      string `json:"code"`
	TimeoutMS int64  `json:"timeout_ms,omitempty"` // interrupt the run after this long; 0: never
}

// RunEvent is one line of a run's application/x-ndjson stream; exactly one
// field is set. The last event has End.
type RunEvent struct {
	Stdout string            `json:"stdout,omitempty"`
	Stderr string            `json:"stderr,omitempty"`
	Result map[string]string `json:"result,omitempty"` // MIME type → data: "text/plain" always; "image/png" (base64), "text/html", "application/json"… where the value offers them
	Error  *RunError         `json:"error,omitempty"`
	End    *RunEnd           `json:"end,omitempty"`
}

// RunError is an exception the code raised (or a bash command's failure).
type RunError struct {
	Name      string `json:"name"`
	Value     string `json:"value"`
	Traceback string `json:"traceback,omitempty"`
}

// Run end statuses.
const (
	RunOK          = "ok"
	RunFailed      = "error"
	RunInterrupted = "interrupted"
	RunTimeout     = "timeout"
)

// RunEnd ends a run.
type RunEnd struct {
	Status         string `json:"status"` // RunOK, RunFailed, RunInterrupted or RunTimeout
	ExecutionCount int    `json:"execution_count"`
	DurationMS     int64  `json:"duration_ms"`
	ExitCode       *int   `json:"exit_code,omitempty"` // bash: the code's exit status
}
