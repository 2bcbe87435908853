// Package httpjson is the HTTP/JSON plumbing the three servers share (sietchd's API, the vmm control socket, the guest agent): strict request decoding, one error envelope, JSON 404 and 405.
//
// Every error body is {"error": {"code": "...", "message": "...", "retry": true}}:
// code is stable and machine-readable, message says what was wrong and what
// to send instead, retry (omitted when false) says that trying again later
// may work.
package httpjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
)

// Codes every server uses; each server adds its own.
const (
	CodeInvalidJSON      = "invalid_json"       // 400: not one JSON object of the right shape
	CodeUnknownField     = "unknown_field"      // 400: a field the request type does not have
	CodeBodyTooLarge     = "body_too_large"     // 413
	CodeNotFound         = "not_found"          // 404
	CodeMethodNotAllowed = "method_not_allowed" // 405, with Allow
	CodeInternal         = "internal"           // 500
)

// Error is an API error: an HTTP status and the envelope's fields.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Retry   bool   `json:"retry,omitempty"`
}

func (e *Error) Error() string {
	s := fmt.Sprintf("%s (%d %s)", e.Message, e.Status, e.Code)
	if e.Retry {
		s += "; try again shortly"
	}
	return s
}

// Errorf returns an *Error with status and code.
func Errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Envelope is the wire form of every error body.
type Envelope struct {
	Error *Error `json:"error"`
}

// Write sends v as JSON with status.
func Write(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(Envelope{&Error{Code: CodeInternal, Message: "encode the response: " + err.Error()}})
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// WriteError sends e in the envelope with its status (500 when unset).
func WriteError(w http.ResponseWriter, e *Error) {
	status := e.Status
	if status == 0 {
		status = http.StatusInternalServerError
	}
	Write(w, status, Envelope{e})
}

// ReadError turns a non-2xx response into an *Error. A body that is not the
// envelope (a proxy's page, a crash) still gives one, with code guessed from
// the status and the start of the body as the message.
func ReadError(resp *http.Response, limit int64) *Error {
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, limit))
	var env Envelope
	if json.Unmarshal(raw, &env) == nil && env.Error != nil && env.Error.Code != "" {
		env.Error.Status = resp.StatusCode
		return env.Error
	}
	msg := strings.TrimSpace(string(raw))
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	return &Error{Status: resp.StatusCode, Code: codeForStatus(resp.StatusCode), Message: msg,
		Retry: resp.StatusCode == http.StatusServiceUnavailable}
}

func codeForStatus(status int) string {
	switch status {
	case http.StatusNotFound:
		return CodeNotFound
	case http.StatusMethodNotAllowed:
		return CodeMethodNotAllowed
	case http.StatusRequestEntityTooLarge:
		return CodeBodyTooLarge
	}
	if status >= 400 && status < 500 {
		return CodeInvalidJSON
	}
	return CodeInternal
}

// Decode reads exactly one JSON object into v from body, at most limit
// bytes. Fields v's type does not have are refused by name (at any depth),
// as are data after the object. An empty body leaves v as it is when
// emptyOK, else it is refused. Every refusal is a 400 or 413 *Error.
func Decode(body io.Reader, limit int64, v any, emptyOK bool) *Error {
	raw, err := io.ReadAll(io.LimitReader(body, limit+1))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return Errorf(http.StatusRequestEntityTooLarge, CodeBodyTooLarge, "the request body is over %d bytes", tooBig.Limit)
	case err != nil:
		return Errorf(http.StatusBadRequest, CodeInvalidJSON, "read the request body: %v", err)
	case int64(len(raw)) > limit:
		return Errorf(http.StatusRequestEntityTooLarge, CodeBodyTooLarge, "the request body is over %d bytes", limit)
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		if emptyOK {
			return nil
		}
		return Errorf(http.StatusBadRequest, CodeInvalidJSON, "the request body is empty; send a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(v); err != nil {
		return Errorf(http.StatusBadRequest, CodeInvalidJSON, "the request body is not the expected JSON object: %s", reason(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Errorf(http.StatusBadRequest, CodeInvalidJSON, "data after the JSON object")
	}
	if unknown := UnknownFields(raw, v); len(unknown) > 0 {
		return Errorf(http.StatusBadRequest, CodeUnknownField, "unknown field %s", strings.Join(quote(unknown), ", "))
	}
	return nil
}

// reason says where a decode error is, when the decoder knows.
func reason(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at byte %d: %v", se.Offset, strings.TrimPrefix(se.Error(), "json: "))
	case errors.As(err, &te) && te.Field != "":
		return fmt.Sprintf("field %q: got JSON %s, want %v", te.Field, te.Value, te.Type)
	case errors.As(err, &te):
		return fmt.Sprintf("got JSON %s, want %v", te.Value, te.Type)
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

func quote(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = fmt.Sprintf("%q", v)
	}
	sort.Strings(out)
	return out
}
