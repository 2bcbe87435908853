package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"strings"
	"syscall"

	"github.com/sietch-vm/sietch/internal/httpjson"
	"github.com/sietch-vm/sietch/wire/agentproto"
)

// Error is an API error (httpjson's, in the agentproto envelope).
type Error = agentproto.Error

// Codes: agentproto's, and httpjson's shared ones.
const (
	codeBadRequest       = agentproto.CodeBadRequest
	codeForbidden        = agentproto.CodeForbidden
	codeNotFound         = httpjson.CodeNotFound
	codeMethodNotAllowed = httpjson.CodeMethodNotAllowed
	codeConflict         = agentproto.CodeConflict
	codeTooLarge         = httpjson.CodeBodyTooLarge
	codeTooMany          = agentproto.CodeTooMany
	codeInternal         = httpjson.CodeInternal
	codeNotImplemented   = agentproto.CodeNotImplemented
	codeBadGateway       = agentproto.CodeBadGateway
)

var statusOfCode = map[string]int{
	codeBadRequest:       http.StatusBadRequest,
	codeForbidden:        http.StatusForbidden,
	codeNotFound:         http.StatusNotFound,
	codeMethodNotAllowed: http.StatusMethodNotAllowed,
	codeConflict:         http.StatusConflict,
	codeTooLarge:         http.StatusRequestEntityTooLarge,
	codeTooMany:          http.StatusTooManyRequests,
	codeInternal:         http.StatusInternalServerError,
	codeNotImplemented:   http.StatusNotImplemented,
	codeBadGateway:       http.StatusBadGateway,
}

func apiErr(code, format string, args ...any) *Error {
	return &Error{Status: statusOfCode[code], Code: code, Message: fmt.Sprintf(format, args...)}
}

func badRequest(format string, args ...any) *Error { return apiErr(codeBadRequest, format, args...) }

// writeError sends e in the error envelope.
func writeError(w http.ResponseWriter, e *Error) {
	writeJSON(w, e.Status, httpjson.Envelope{Error: e})
}

// writeJSON sends v with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":{"code":"internal","message":"encode reply"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// fsError turns a file-system error about path into an API error.
func fsError(op, path string, err error) *Error {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return apiErr(codeTooLarge, "%s %s: body larger than %d bytes", op, path, mbe.Limit)
	case isEscape(err):
		return apiErr(codeForbidden, "%s %s: path escapes the agent's root through a symlink", op, path)
	case errors.Is(err, fs.ErrNotExist):
		return apiErr(codeNotFound, "%s %s: no such file or directory", op, path)
	case errors.Is(err, fs.ErrExist):
		return apiErr(codeConflict, "%s %s: already exists", op, path)
	case errors.Is(err, fs.ErrPermission):
		return apiErr(codeForbidden, "%s %s: permission denied", op, path)
	case errors.Is(err, syscall.ENOTDIR):
		return badRequest("%s %s: a path element is not a directory", op, path)
	case errors.Is(err, syscall.EISDIR):
		return badRequest("%s %s: is a directory", op, path)
	case errors.Is(err, syscall.ENOTEMPTY):
		return apiErr(codeConflict, "%s %s: directory not empty (use recursive=true)", op, path)
	case errors.Is(err, syscall.ELOOP):
		return badRequest("%s %s: too many levels of symlinks", op, path)
	case errors.Is(err, syscall.ENOSPC):
		return apiErr(codeInternal, "%s %s: no space left on device", op, path)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("%s %s: body ended early", op, path)
	}
	return apiErr(codeInternal, "%s %s: %v", op, path, err)
}

// isEscape reports whether an os.Root operation refused a path that leaves
// the root. os does not export that error, so match its text.
func isEscape(err error) bool {
	return err != nil && strings.Contains(err.Error(), "path escapes from parent")
}
