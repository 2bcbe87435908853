package api

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/sietch-vm/sietch/api/model"
	"github.com/sietch-vm/sietch/sandbox"
)

// fail answers err from the manager with its status and stable code.
func (s *Server) fail(w http.ResponseWriter, err error) {
	status, e := errorOf(err)
	if status >= 500 {
		s.log.Warn("request failed", "err", err)
	}
	writeError(w, status, e)
}

// errorOf maps a manager error to its HTTP status and body.
func errorOf(err error) (int, model.Error) {
	msg := err.Error()
	var tooBig *http.MaxBytesError
	switch {
	case errors.Is(err, sandbox.ErrNotFound):
		return http.StatusNotFound, model.Error{Code: model.CodeNotFound, Message: msg}
	case errors.Is(err, sandbox.ErrWrongState):
		return http.StatusConflict, model.Error{Code: model.CodeWrongState, Message: msg}
	case errors.Is(err, sandbox.ErrInUse):
		return http.StatusConflict, model.Error{Code: model.CodeInUse, Message: msg}
	case errors.Is(err, sandbox.ErrLimit):
		return http.StatusTooManyRequests, model.Error{Code: model.CodeLimit, Message: msg}
	case errors.Is(err, sandbox.ErrAgentUnavailable):
		return http.StatusServiceUnavailable, model.Error{Code: model.CodeAgentUnavailable, Message: msg, Retry: true}
	case errors.Is(err, sandbox.ErrInvalid):
		return http.StatusBadRequest, model.Error{Code: model.CodeBadRequest, Message: msg}
	case errors.As(err, &tooBig):
		return http.StatusRequestEntityTooLarge, model.Error{Code: model.CodeBodyTooLarge, Message: msg}
	case errors.Is(err, sandbox.ErrClosed):
		return http.StatusServiceUnavailable, model.Error{Code: model.CodeInternal, Message: "sietchd is shutting down; retry when it is back", Retry: true}
	}
	return http.StatusInternalServerError, model.Error{Code: model.CodeInternal, Message: msg}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(model.ErrorBody{Error: model.Error{Code: model.CodeInternal, Message: "encode the response: " + err.Error()}})
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, status int, e model.Error) {
	writeJSON(w, status, model.ErrorBody{Error: e})
}
