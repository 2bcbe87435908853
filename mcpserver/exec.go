package mcpserver

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/sietch-vm/sietch/api/model"
)

// Output bounds: what a tool result carries of a command's or a run's
// output, per stream, keeping its start and its end.
const (
	defaultOutputBytes = 16 << 10
	maxOutputBytes     = 1 << 20
	defaultExecTimeout = 120 * time.Second
)

// ExecInput is exec's input.
type ExecInput struct {
	SandboxID      string            `json:"sandbox_id" jsonschema:"the sandbox to run in"`
	Command        string            `json:"command,omitempty" jsonschema:"a shell command line, run with sh -c (pipes, redirection, && and globs work); give command, or cmd with args"`
	Cmd            string            `json:"cmd,omitempty" jsonschema:"a program to run directly, without a shell (found on PATH)"`
	Args           []string          `json:"args,omitempty" jsonschema:"cmd's arguments"`
	Cwd            string            `json:"cwd,omitempty" jsonschema:"working directory (default: /root)"`
	Env            map[string]string `json:"env,omitempty" jsonschema:"extra environment variables"`
	Stdin          string            `json:"stdin,omitempty" jsonschema:"text fed to the command's standard input"`
	TimeoutS       int               `json:"timeout_s,omitempty" jsonschema:"kill the command after this many seconds (default 120)"`
	MaxOutputBytes int               `json:"max_output_bytes,omitempty" jsonschema:"how much of stdout and of stderr to return, each (default 16384, at most 1048576); beyond it the start and the end are kept and the middle is dropped"`
}

// ExecOutput is exec's output.
type ExecOutput struct {
	ExitCode      int    `json:"exit_code" jsonschema:"the command's exit status (128+N when killed by signal N)"`
	Signal        string `json:"signal,omitempty" jsonschema:"the signal that ended it"`
	TimedOut      bool   `json:"timed_out,omitempty" jsonschema:"it ran past timeout_s and was killed"`
	Stdout        string `json:"stdout" jsonschema:"standard output (bounded: see stdout_dropped)"`
	Stderr        string `json:"stderr" jsonschema:"standard error (bounded: see stderr_dropped)"`
	StdoutDropped int64  `json:"stdout_dropped,omitempty" jsonschema:"bytes of stdout left out of the middle"`
	StderrDropped int64  `json:"stderr_dropped,omitempty" jsonschema:"bytes of stderr left out of the middle"`
}

// RunCodeInput is run_code's input.
type RunCodeInput struct {
	SandboxID      string `json:"sandbox_id" jsonschema:"the sandbox to run in"`
	Code           string `json:"code" jsonschema:"the code to run; the value of a last expression is returned as a result, as in a notebook cell"`
	Language       string `json:"language,omitempty" jsonschema:"python (default), node or bash: runs in that language's default context"`
	Context        string `json:"context,omitempty" jsonschema:"a code context id to run in instead of the language's default one (default, default-node, default-bash)"`
	TimeoutS       int    `json:"timeout_s,omitempty" jsonschema:"interrupt the code after this many seconds (default 120); the context and its state live on"`
	MaxOutputBytes int    `json:"max_output_bytes,omitempty" jsonschema:"how much of stdout and of stderr to return, each (default 16384, at most 1048576)"`
}

// RunResult is one value the code produced: its last expression's, or a
// figure it displayed.
type RunResult struct {
	Text    string   `json:"text,omitempty" jsonschema:"the text/plain form"`
	Formats []string `json:"formats" jsonschema:"the MIME types it came in; image/png ones are returned as image content"`
}

// RunError is an exception the code raised.
type RunError struct {
	Name      string `json:"name" jsonschema:"e.g. ZeroDivisionError; ContextDied when the interpreter exited"`
	Value     string `json:"value"`
	Traceback string `json:"traceback,omitempty"`
}

// RunCodeOutput is run_code's output.
type RunCodeOutput struct {
	Status         string      `json:"status" jsonschema:"ok, error (an exception: see error), interrupted or timeout"`
	ExecutionCount int         `json:"execution_count" jsonschema:"how many runs the context has had"`
	Stdout         string      `json:"stdout"`
	Stderr         string      `json:"stderr"`
	StdoutDropped  int64       `json:"stdout_dropped,omitempty" jsonschema:"bytes of stdout left out of the middle"`
	StderrDropped  int64       `json:"stderr_dropped,omitempty" jsonschema:"bytes of stderr left out of the middle"`
	Results        []RunResult `json:"results" jsonschema:"values the code produced, in order"`
	Error          *RunError   `json:"error,omitempty"`
	ExitCode       *int        `json:"exit_code,omitempty" jsonschema:"bash: the code's exit status"`
}

func (s *Server) addExecTools() {
	mcp.AddTool(s.mcp, &mcp.Tool{
		Name:  "exec",
		Title: "Run a command",
		Description: "Run a command in a sandbox and wait for it to finish; returns its exit code, stdout and stderr. " +
			"Give command for a shell command line (e.g. \"pip install numpy && python3 script.py\"), or cmd and args to run a program without a shell. " +
			"Output beyond max_output_bytes keeps its start and end. Each call is a new process: use cwd rather than cd, or run_code's bash language for a shell that keeps its state.",
		Annotations: &mcp.ToolAnnotations{Title: "Run a command", OpenWorldHint: ptr(true)},
	}, s.exec)
	mcp.AddTool(s.mcp, &mcp.Tool{
		Name:  "run_code",
		Title: "Run code",
		Description: "Run code in a long-lived interpreter in a sandbox (python by default, or node, or bash) that keeps variables, imports and the working directory between calls, like a notebook. " +
			"Returns stdout, stderr, the value of the last expression, an exception's traceback, and matplotlib figures and other PNG results as images.",
		Annotations: &mcp.ToolAnnotations{Title: "Run code", OpenWorldHint: ptr(true)},
		InputSchema: schemaFor[RunCodeInput](map[string][]any{"language": {model.LanguagePython, model.LanguageNode, model.LanguageBash}}),
	}, s.runCode)
}

func outputLimit(n int) (int, error) {
	switch {
	case n == 0:
		return defaultOutputBytes, nil
	case n < 0 || n > maxOutputBytes:
		return 0, fmt.Errorf("max_output_bytes %d: want 1 to %d", n, maxOutputBytes)
	}
	return n, nil
}

func (s *Server) exec(ctx context.Context, _ *mcp.CallToolRequest, in ExecInput) (*mcp.CallToolResult, ExecOutput, error) {
	req := model.ExecRequest{Cwd: in.Cwd, Env: in.Env}
	switch {
	case in.Command != "" && in.Cmd != "":
		return nil, ExecOutput{}, errors.New("give command (a shell line) or cmd (a program), not both")
	case in.Command != "":
		if len(in.Args) > 0 {
			return nil, ExecOutput{}, errors.New("args go with cmd; with command, put them in the command line")
		}
		req.Cmd, req.Args = "sh", []string{"-c", in.Command}
	case in.Cmd != "":
		req.Cmd, req.Args = in.Cmd, in.Args
	default:
		return nil, ExecOutput{}, errors.New("give command (a shell line such as \"ls -la /\") or cmd with args")
	}
	limit, err := outputLimit(in.MaxOutputBytes)
	if err != nil {
		return nil, ExecOutput{}, err
	}
	if in.TimeoutS < 0 {
		return nil, ExecOutput{}, fmt.Errorf("timeout_s %d: want 0 or more", in.TimeoutS)
	}
	timeout := defaultExecTimeout
	if in.TimeoutS > 0 {
		timeout = time.Duration(in.TimeoutS) * time.Second
	}
	req.TimeoutMS = int(timeout / time.Millisecond)
	if in.Stdin != "" {
		req.Stdin = base64.StdEncoding.EncodeToString([]byte(in.Stdin))
	}
	stdout, stderr := newBounded(limit), newBounded(limit)
	exit, err := s.api.Exec(ctx, in.SandboxID, req, stdout, stderr)
	if err != nil {
		return nil, ExecOutput{}, apiError("exec in sandbox "+in.SandboxID, err)
	}
	out := ExecOutput{
		ExitCode: exit.Code, Signal: exit.Signal, TimedOut: exit.TimedOut,
		Stdout: stdout.String(), Stderr: stderr.String(), StdoutDropped: stdout.Dropped(), StderrDropped: stderr.Dropped(),
	}
	var b strings.Builder
	fmt.Fprintf(&b, "exit code %d", exit.Code)
	if exit.Signal != "" {
		fmt.Fprintf(&b, " (killed by %s)", exit.Signal)
	}
	if exit.TimedOut {
		fmt.Fprintf(&b, " (timed out after %v)", timeout)
	}
	b.WriteString("\n")
	section(&b, "stdout", out.Stdout)
	section(&b, "stderr", out.Stderr)
	return text(b.String()), out, nil
}

// section appends a labelled stream to b unless it is empty.
func section(b *strings.Builder, name, s string) {
	if s == "" {
		return
	}
	fmt.Fprintf(b, "--- %s ---\n%s", name, s)
	if !strings.HasSuffix(s, "\n") {
		b.WriteString("\n")
	}
}

// defaultContexts are the default code context of each language.
var defaultContexts = map[string]string{
	model.LanguagePython: model.DefaultContext,
	model.LanguageNode:   model.DefaultContext + "-" + model.LanguageNode,
	model.LanguageBash:   model.DefaultContext + "-" + model.LanguageBash,
}

func (s *Server) runCode(ctx context.Context, _ *mcp.CallToolRequest, in RunCodeInput) (*mcp.CallToolResult, RunCodeOutput, error) {
	ctxID := in.Context
	if ctxID == "" {
		lang := in.Language
		if lang == "" {
			lang = model.LanguagePython
		}
		ctxID = defaultContexts[lang]
	}
	limit, err := outputLimit(in.MaxOutputBytes)
	if err != nil {
		return nil, RunCodeOutput{}, err
	}
	if in.TimeoutS < 0 {
		return nil, RunCodeOutput{}, fmt.Errorf("timeout_s %d: want 0 or more", in.TimeoutS)
	}
	timeout := defaultExecTimeout
	if in.TimeoutS > 0 {
		timeout = time.Duration(in.TimeoutS) * time.Second
	}
	stdout, stderr := newBounded(limit), newBounded(limit)
	out := RunCodeOutput{Results: []RunResult{}}
	var images []mcp.Content
	var results []string
	end, err := s.api.Run(ctx, in.SandboxID, ctxID, model.RunRequest{Code: in.Code, TimeoutMS: int(timeout / time.Millisecond)}, func(ev model.RunEvent) error {
		switch {
		case ev.Stdout != "":
			stdout.Write([]byte(ev.Stdout))
		case ev.Stderr != "":
			stderr.Write([]byte(ev.Stderr))
		case ev.Error != nil:
			out.Error = &RunError{Name: ev.Error.Name, Value: ev.Error.Value, Traceback: ev.Error.Traceback}
		case ev.Result != nil:
			r := RunResult{Text: ev.Result["text/plain"], Formats: []string{}}
			for mime := range ev.Result {
				r.Formats = append(r.Formats, mime)
			}
			sort.Strings(r.Formats)
			if b64, ok := ev.Result["image/png"]; ok {
				png, err := base64.StdEncoding.DecodeString(b64)
				if err != nil {
					return fmt.Errorf("a PNG result that is not base64: %w", err)
				}
				images = append(images, &mcp.ImageContent{Data: png, MIMEType: "image/png"})
			}
			if len(r.Text) > limit {
				r.Text = r.Text[:limit] + fmt.Sprintf("\n[… %d bytes of the result dropped …]", len(r.Text)-limit)
			}
			out.Results = append(out.Results, r)
			results = append(results, r.Text)
		}
		return nil
	})
	if err != nil {
		return nil, RunCodeOutput{}, apiError(fmt.Sprintf("run code in context %s of sandbox %s", ctxID, in.SandboxID), err)
	}
	out.Status, out.ExecutionCount, out.ExitCode = end.Status, end.ExecutionCount, end.ExitCode
	out.Stdout, out.Stderr = stdout.String(), stderr.String()
	out.StdoutDropped, out.StderrDropped = stdout.Dropped(), stderr.Dropped()

	var b strings.Builder
	fmt.Fprintf(&b, "status %s (run %d in context %s", end.Status, end.ExecutionCount, ctxID)
	if end.ExitCode != nil {
		fmt.Fprintf(&b, ", exit code %d", *end.ExitCode)
	}
	b.WriteString(")\n")
	section(&b, "stdout", out.Stdout)
	section(&b, "stderr", out.Stderr)
	for _, r := range results {
		section(&b, "result", r)
	}
	if e := out.Error; e != nil {
		section(&b, "error", fmt.Sprintf("%s: %s\n%s", e.Name, e.Value, e.Traceback))
	}
	// An exception is the code's outcome, as a non-zero exit is exec's:
	// status says it, and the result is no tool error.
	res := text(b.String())
	res.Content = append(res.Content, images...)
	return res, out, nil
}
