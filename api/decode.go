package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/sietch-vm/sietch/api/model"
)

// maxJSONBody bounds every JSON request body (file uploads are streamed
// and not bounded).
const maxJSONBody = 1 << 20

// requestError is a request body that cannot be decoded.
type requestError struct {
	status int
	body   model.Error
}

// decodeRequest decodes exactly one JSON object with only known fields
// from body. An empty body gives v's zero value when emptyOK.
func decodeRequest(body io.Reader, v any, emptyOK bool) *requestError {
	bad := func(code, format string, a ...any) *requestError {
		return &requestError{http.StatusBadRequest, model.Error{Code: code, Message: fmt.Sprintf(format, a...)}}
	}
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		// Only the end of the body may follow the object.
		if _, err2 := dec.Token(); err2 != io.EOF {
			err = errors.New("data after the JSON object")
			var se *json.SyntaxError
			if err2 != nil && !errors.As(err2, &se) {
				err = err2
			}
		}
	}
	var tooBig *http.MaxBytesError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &tooBig):
		return &requestError{http.StatusRequestEntityTooLarge, model.Error{Code: model.CodeBodyTooLarge,
			Message: fmt.Sprintf("the request body is over %d bytes", tooBig.Limit)}}
	case err == io.EOF && emptyOK:
		return nil
	case err == io.EOF:
		return bad(model.CodeInvalidJSON, "the request body is empty; send a JSON object")
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		return bad(model.CodeUnknownField, "%s; GET /v1/openapi.yaml has the request's fields", strings.TrimPrefix(err.Error(), "json: "))
	}
	return bad(model.CodeInvalidJSON, "the request body is not the expected JSON object: %s", strings.TrimPrefix(err.Error(), "json: "))
}

// decode reads r's JSON body into v, answering the client itself (and
// returning false) when it cannot.
func decode(w http.ResponseWriter, r *http.Request, v any, emptyOK bool) bool {
	if rerr := decodeRequest(http.MaxBytesReader(w, r.Body, maxJSONBody), v, emptyOK); rerr != nil {
		writeError(w, rerr.status, rerr.body)
		return false
	}
	return true
}
