package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Bounds on an exec request, checked at the edge.
const (
	maxIDLen    = 64
	maxArgs     = 4096
	maxEnv      = 4096
	maxTimeout  = 7 * 24 * time.Hour
	maxTTYCells = 10000 // rows or cols
)

// decodeJSON reads exactly one JSON value into v from at most limit bytes
// of r, refusing unknown fields.
func decodeJSON(r io.Reader, limit int64, v any) *Error {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return badRequest("read body: %v", err)
	}
	if int64(len(b)) > limit {
		return apiErr(codeTooLarge, "JSON body larger than %d bytes", limit)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return badRequest("empty body; want a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("decode JSON body: %v", jsonReason(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badRequest("decode JSON body: data after the JSON object")
	}
	return nil
}

// jsonReason says where a JSON error is, when the decoder knows.
func jsonReason(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at byte %d: %v", se.Offset, se)
	case errors.As(err, &te):
		return fmt.Sprintf("field %q: got JSON %s, want %v", te.Field, te.Value, te.Type)
	}
	return err.Error()
}

// decodeExecRequest reads and checks a POST /v1/exec body.
func decodeExecRequest(r io.Reader) (ExecRequest, *Error) {
	var req ExecRequest
	if e := decodeJSON(r, maxJSONBody, &req); e != nil {
		return ExecRequest{}, e
	}
	if e := req.validate(); e != nil {
		return ExecRequest{}, e
	}
	return req, nil
}

// validate checks what the kernel or the agent would otherwise trip on.
func (req *ExecRequest) validate() *Error {
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
