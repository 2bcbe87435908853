package snapshot

import "errors"

// Errors Read returns, wrapped in a message that says where and what; test
// with errors.Is.
var (
	ErrNotSnapshot = errors.New("not a sietch snapshot")
	ErrVersion     = errors.New("unsupported snapshot format version")
	ErrChecksum    = errors.New("state file checksum mismatch (corrupted)")
	ErrTruncated   = errors.New("state file is truncated")
	ErrMemorySize  = errors.New("memory file size does not match the state")
	ErrIncomplete  = errors.New("snapshot state is incomplete or inconsistent")
)
