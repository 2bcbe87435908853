package model

import "time"

// Code-context languages.
const (
	LanguagePython = "python"
	LanguageNode   = "node"
	LanguageBash   = "bash"
)

// DefaultContext is the python context every sandbox has without creating
// it; "default-node" and "default-bash" are node's and bash's. Each starts
// on its first run, or is warm already in a sandbox whose template started
// it (TemplateRequest.Contexts).
const DefaultContext = "default"

// ContextRequest is POST /v1/sandboxes/{id}/contexts: a long-lived
// interpreter whose state (variables, imports, the shell's cwd) persists
// between runs.
type ContextRequest struct {
	ID       string            `json:"id,omitempty"`       // chosen by the caller, or generated
	Language string            `json:"language,omitempty"` // python (default), node or bash
	Cwd      string            `json:"cwd,omitempty"`
	Env      map[string]string `json:"env,omitempty"`
}

// Context states.
const (
	ContextIdle    = "idle"
	ContextRunning = "running"
	ContextDead    = "dead" // its interpreter exited (Reason says how); restart it
)

// Context is one code context.
type Context struct {
	ID        string    `json:"id"`
	Language  string    `json:"language"`
	Cwd       string    `json:"cwd,omitempty"`
	PID       int       `json:"pid"` // the interpreter's, in the guest
	State     string    `json:"state"`
	Reason    string    `json:"reason,omitempty"`
	Runs      int       `json:"runs"`
	CreatedAt time.Time `json:"created_at"`
}

// RunRequest is POST /v1/sandboxes/{id}/contexts/{ctx}/run. The response
// streams RunEvent lines (application/x-ndjson) as the code produces them.
type RunRequest struct {
	Code      string `json:"code"`
	TimeoutMS int    `json:"timeout_ms,omitempty"` // interrupt the run after this long (status "timeout"); 0: never
}

// RunEvent is one line of a run's stream; exactly one field is set, and the
// last line has End.
type RunEvent struct {
	Stdout string `json:"stdout,omitempty"`
	Stderr string `json:"stderr,omitempty"`
	// Result is the value of the code's last expression, or a figure it
	// displayed, by MIME type: "text/plain" always, and "image/png"
	// (base64), "text/html", "image/svg+xml", "application/json" or
	// "text/markdown" where the value offers them.
	Result map[string]string `json:"result,omitempty"`
	Error  *RunError         `json:"error,omitempty"`
	End    *RunEnd           `json:"end,omitempty"`
}

// RunError is an exception the code raised, or a bash command's failure.
type RunError struct {
	Name      string `json:"name"` // "ZeroDivisionError"; "ContextDied" when the interpreter exited
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
	Status         string `json:"status"` // ok, error, interrupted or timeout
	ExecutionCount int    `json:"execution_count"`
	DurationMS     int64  `json:"duration_ms"`
	ExitCode       *int   `json:"exit_code,omitempty"` // bash: the code's exit status
}
