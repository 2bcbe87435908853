package api

import (
	"errors"
	"net/http"

	"github.com/sietch-vm/sietch/api/model"
	"github.com/sietch-vm/sietch/internal/httpjson"
	"github.com/sietch-vm/sietch/sandbox"
)

// fail answers err from the manager with its status and stable code.
func (s *Server) fail(w http.ResponseWriter, err error) {
	e := errorOf(err)
	if e.Status >= 500 {
		s.log.Warn("request failed", "err", err)
	}
	httpjson.WriteError(w, e)
}

// errorOf maps a manager error to its HTTP status and body.
func errorOf(err error) *httpjson.Error {
	msg := err.Error()
	var tooBig *http.MaxBytesError
	e := func(status int, code string) *httpjson.Error {
		return &httpjson.Error{Status: status, Code: code, Message: msg}
	}
	switch {
	case errors.Is(err, sandbox.ErrNotFound):
		return e(http.StatusNotFound, model.CodeNotFound)
	case errors.Is(err, sandbox.ErrWrongState):
		return e(http.StatusConflict, model.CodeWrongState)
	case errors.Is(err, sandbox.ErrInUse):
		return e(http.StatusConflict, model.CodeInUse)
	case errors.Is(err, sandbox.ErrConflict):
		return e(http.StatusConflict, model.CodeConflict)
	case errors.Is(err, sandbox.ErrLimit):
		return e(http.StatusTooManyRequests, model.CodeLimit)
	case errors.Is(err, sandbox.ErrAgentUnavailable):
		r := e(http.StatusServiceUnavailable, model.CodeAgentUnavailable)
		r.Retry = true
		return r
	case errors.Is(err, sandbox.ErrInvalid):
		return e(http.StatusBadRequest, model.CodeBadRequest)
	case errors.As(err, &tooBig):
		return e(http.StatusRequestEntityTooLarge, model.CodeBodyTooLarge)
	case errors.Is(err, sandbox.ErrClosed):
		return &httpjson.Error{Status: http.StatusServiceUnavailable, Code: model.CodeInternal, Message: "sietchd is shutting down; retry when it is back", Retry: true}
	}
	return e(http.StatusInternalServerError, model.CodeInternal)
}

// writeJSON sends v as JSON with status.
func writeJSON(w http.ResponseWriter, status int, v any) { httpjson.Write(w, status, v) }

// writeError sends an error with status and code in the envelope.
func writeError(w http.ResponseWriter, status int, code, format string, args ...any) {
	httpjson.WriteError(w, httpjson.Errorf(status, code, format, args...))
}
