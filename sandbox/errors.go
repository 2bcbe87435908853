package sandbox

import "errors"

// Errors a Manager returns, wrapped with what went wrong; the API maps each
// to its HTTP status and stable code, so their texts are those codes.
var (
	ErrNotFound         = errors.New("not_found")         // no such sandbox, snapshot, image, port or guest file
	ErrWrongState       = errors.New("wrong_state")       // the sandbox's state does not allow the operation
	ErrLimit            = errors.New("limit_exceeded")    // a per-sandbox or host-wide limit refuses it
	ErrAgentUnavailable = errors.New("agent_unavailable") // the guest agent did not answer in time; retry later
	ErrInvalid          = errors.New("bad_request")       // the request itself is wrong
	ErrInUse            = errors.New("in_use")            // a snapshot or template that something still needs
	ErrConflict         = errors.New("conflict")          // the guest refuses it as things stand (an id in use, a stdin already taken, a file in the way)
	ErrClosed           = errors.New("manager closed")    // Close was called
)
