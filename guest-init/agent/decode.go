package agent

import (
	"io"
	"strings"
	"time"

	"github.com/sietch-vm/sietch/internal/httpjson"
	"github.com/sietch-vm/sietch/wire/agentproto"
)

// Bounds on an exec request, checked at the edge.
const (
	maxIDLen    = 64
	maxArgs     = 4096
	maxEnv      = 4096
	maxTimeout  = 7 * 24 * time.Hour
	maxTTYCells = 10000 // rows or cols
)

// decodeJSON reads exactly one JSON object into v from at most limit bytes
// of r, refusing unknown fields (httpjson.Decode).
func decodeJSON(r io.Reader, limit int64, v any) *Error {
	return httpjson.Decode(r, limit, v, false)
}

// decodeExecRequest reads and checks a POST /v1/exec body.
func decodeExecRequest(r io.Reader) (agentproto.ExecRequest, *Error) {
	var req agentproto.ExecRequest
	if e := decodeJSON(r, maxJSONBody, &req); e != nil {
		return agentproto.ExecRequest{}, e
	}
	if e := validateExec(&req); e != nil {
		return agentproto.ExecRequest{}, e
	}
	return req, nil
}

// validate checks what the kernel or the agent would otherwise trip on.
func validateExec(req *agentproto.ExecRequest) *Error {
	if req.ID != "" {
		if e := validID(req.ID); e != nil {
			return e
		}
	}
	if req.Cmd == "" {
		return badRequest("cmd is required: the program to run, such as \"sh\" or \"/usr/bin/python3\"")
	}
	if strings.IndexByte(req.Cmd, 0) >= 0 {
		return badRequest("cmd contains a NUL byte")
	}
	if len(req.Args) > maxArgs {
		return badRequest("%d args; at most %d", len(req.Args), maxArgs)
	}
	for i, a := range req.Args {
		if strings.IndexByte(a, 0) >= 0 {
			return badRequest("args[%d] contains a NUL byte", i)
		}
	}
	if len(req.Env) > maxEnv {
		return badRequest("%d env entries; at most %d", len(req.Env), maxEnv)
	}
	for k, v := range req.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return badRequest("env name %q: must be non-empty without '=' or NUL", k)
		}
		if strings.IndexByte(v, 0) >= 0 {
			return badRequest("env %s: value contains a NUL byte", k)
		}
	}
	if strings.IndexByte(req.Cwd, 0) >= 0 {
		return badRequest("cwd contains a NUL byte")
	}
	if req.Cwd != "" && !strings.HasPrefix(req.Cwd, "/") {
		return badRequest("cwd %q: must be an absolute path", req.Cwd)
	}
	if strings.IndexByte(req.User, 0) >= 0 {
		return badRequest("user contains a NUL byte")
	}
	if req.TimeoutMS < 0 || req.TimeoutMS > maxTimeout.Milliseconds() {
		return badRequest("timeout_ms %d: want 0 (none) up to %d", req.TimeoutMS, maxTimeout.Milliseconds())
	}
	if req.TTY != nil {
		if e := validSize(req.TTY.Rows, req.TTY.Cols); e != nil {
			return e
		}
	}
	return nil
}

// validID accepts ids that are safe in a URL path and a log line.
func validID(id string) *Error {
	if len(id) > maxIDLen {
		return badRequest("id longer than %d characters", maxIDLen)
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return badRequest("id %q: use only letters, digits, '-', '_' and '.'", id)
		}
	}
	if id == "" {
		return badRequest("id is empty")
	}
	return nil
}

func validSize(rows, cols uint16) *Error {
	if rows == 0 || cols == 0 || rows > maxTTYCells || cols > maxTTYCells {
		return badRequest("tty size %dx%d: rows and cols must be 1 to %d", rows, cols, maxTTYCells)
	}
	return nil
}
