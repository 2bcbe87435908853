package dockerfile

import (
	"errors"
	"fmt"
)

// ErrUnsupported marks an instruction, flag or form this front end refuses
// (errors.Is); the message says what to do instead.
var ErrUnsupported = errors.New("not supported")

// LineError is an error in the Dockerfile at a line (1-based); its text is
// "Dockerfile:LINE: …".
type LineError struct {
	Line int
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("Dockerfile:%d: %v", e.Line, e.Err) }
func (e *LineError) Unwrap() error { return e.Err }

// lineErrorf makes a LineError at line; a wrapped LineError keeps its own line.
func lineErrorf(line int, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	if le := (*LineError)(nil); errors.As(err, &le) {
		return le
	}
	return &LineError{Line: max(line, 1), Err: err}
}

// unsupported says "Dockerfile:LINE: WHAT is not supported: WHY".
func unsupported(line int, what, why string) error {
	return &LineError{Line: max(line, 1), Err: fmt.Errorf("%s is %w: %s", what, ErrUnsupported, why)}
}
