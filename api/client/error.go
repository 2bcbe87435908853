package client

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/sietch-vm/sietch/api/model"
)

// Error is a non-2xx answer from sietchd. Code is one of the stable model
// codes (model.CodeNotFound, ...); use errors.As to get at it.
type Error struct {
	Status  int    // HTTP status
	Code    string // stable code, e.g. model.CodeNotFound
	Message string // for people
	Retry   bool   // trying again later may work (the agent is not ready yet)
}

func (e *Error) Error() string {
	s := fmt.Sprintf("%s (%d %s)", e.Message, e.Status, e.Code)
	if e.Retry {
		s += "; try again shortly"
	}
	return s
}

// maxErrorBody bounds how much of an error body is read.
const maxErrorBody = 64 << 10

// decodeError turns a non-2xx response into an *Error. A body that is not
// model.ErrorBody (a proxy's page, a crash) still yields an Error with a code
// guessed from the status, so callers can rely on errors.As.
func decodeError(req *http.Request, resp *http.Response) error {
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var body model.ErrorBody
	if err := json.Unmarshal(raw, &body); err == nil && body.Error.Code != "" {
		return &Error{Status: resp.StatusCode, Code: body.Error.Code, Message: body.Error.Message, Retry: body.Error.Retry}
	}
	msg := strings.TrimSpace(string(raw))
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	return &Error{
		Status:  resp.StatusCode,
		Code:    codeForStatus(resp.StatusCode),
		Message: fmt.Sprintf("%s %s: %s", req.Method, req.URL.Path, msg),
		Retry:   resp.StatusCode == http.StatusServiceUnavailable,
	}
}

func codeForStatus(status int) string {
	switch status {
	case http.StatusUnauthorized, http.StatusForbidden:
		return model.CodeUnauthorized
	case http.StatusNotFound:
		return model.CodeNotFound
	case http.StatusMethodNotAllowed:
		return model.CodeMethodNotAllowed
	case http.StatusConflict:
		return model.CodeWrongState
	case http.StatusRequestEntityTooLarge:
		return model.CodeBodyTooLarge
	case http.StatusTooManyRequests:
		return model.CodeLimit
	case http.StatusServiceUnavailable:
		return model.CodeAgentUnavailable
	}
	if status >= 400 && status < 500 {
		return model.CodeBadRequest
	}
	return model.CodeInternal
}
