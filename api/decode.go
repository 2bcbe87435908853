package api

import (
	"net/http"

	"github.com/sietch-vm/sietch/api/model"
	"github.com/sietch-vm/sietch/internal/httpjson"
)

// maxJSONBody bounds every JSON request body (file uploads are streamed
// and not bounded).
const maxJSONBody = 1 << 20

// decodeRequest decodes exactly one JSON object with only known fields
// from r's body (httpjson.Decode). An empty body gives v's zero value when
// emptyOK.
func decodeRequest(w http.ResponseWriter, r *http.Request, v any, emptyOK bool) *httpjson.Error {
	e := httpjson.Decode(http.MaxBytesReader(w, r.Body, maxJSONBody), maxJSONBody, v, emptyOK)
	if e != nil && e.Code == model.CodeUnknownField {
		e.Message += "; GET /v1/openapi.yaml has the request's fields"
	}
	return e
}

// decode reads r's JSON body into v, answering the client itself (and
// returning false) when it cannot.
func decode(w http.ResponseWriter, r *http.Request, v any, emptyOK bool) bool {
	if e := decodeRequest(w, r, v, emptyOK); e != nil {
		httpjson.WriteError(w, e)
		return false
	}
	return true
}
