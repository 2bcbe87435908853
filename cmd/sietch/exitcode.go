package main

import (
	"errors"

	"github.com/sietch-vm/sietch/api/client"
	"github.com/sietch-vm/sietch/api/model"
)

// Exit statuses; they are part of the CLI contract (see usage).
const (
	exitOK       = 0 // done
	exitError    = 1 // the server or the operation failed
	exitUsage    = 2 // bad command line
	exitNotFound = 3 // no such sandbox, snapshot, image, file or port
	exitState    = 4 // the sandbox is in the wrong state, or a conflict (in use, a file in the way)
	exitRetry    = 5 // the guest agent is not answering yet: try again
)

// exitCode maps an error from the SDK to the exit status scripts rely on.
func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var e *client.Error
	if !errors.As(err, &e) {
		return exitError
	}
	switch {
	case e.Code == model.CodeNotFound:
		return exitNotFound
	case e.Code == model.CodeWrongState || e.Code == model.CodeInUse || e.Code == model.CodeConflict:
		return exitState
	case e.Code == model.CodeAgentUnavailable || e.Retry:
		return exitRetry
	case e.Code == model.CodeBadRequest:
		// The server refused a value from the command line (a count out of
		// range, a missing image name).
		return exitUsage
	}
	return exitError
}
