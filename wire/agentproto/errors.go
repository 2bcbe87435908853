package agentproto

import "github.com/sietch-vm/sietch/internal/httpjson"

// Error is a request the agent refused or failed: its HTTP status and the
// envelope {"error": {"code", "message"}} (package httpjson).
type Error = httpjson.Error

// Error codes beside httpjson's (invalid_json, unknown_field,
// body_too_large, not_found, method_not_allowed, internal); each goes with
// one HTTP status.
const (
	CodeBadRequest     = "bad_request"       // 400: a value the agent refuses
	CodeForbidden      = "forbidden"         // 403
	CodeConflict       = "conflict"          // 409
	CodeTooMany        = "too_many_requests" // 429
	CodeNotImplemented = "not_implemented"   // 501
	CodeBadGateway     = "bad_gateway"       // 502
)
