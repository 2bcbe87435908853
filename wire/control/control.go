// Package control is the vmm's control protocol: the HTTP/JSON API a vmm serves on its unix socket (GET /info, PUT /pause, /resume, /stop, /snapshot), its types, states and error codes, and the client sietchd and the vmm subcommands use.
//
// Shaped after Firecracker's API (swagger/firecracker.yaml): PUT for
// actions, 204 on success, the error envelope of package httpjson
// otherwise. It imports nothing of the machine, so a client links none.
package control

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/sietch-vm/sietch/internal/httpjson"
)

// States a vmm reports (GET /info "state").
const (
	StateCreated = "created" // built, not running yet
	StateRunning = "running"
	StatePaused  = "paused"
	StateStopped = "stopped" // the guest or the host ended it
)

// Error codes of the control API, beside httpjson's. They are stable:
// clients compare them.
const (
	CodeAlreadyPaused   = "already_paused"
	CodeNotPaused       = "not_paused"
	CodeNotStarted      = "not_started"
	CodeStopped         = "vm_stopped"
	CodeInvalidArgument = "invalid_argument"
	CodeNotImplemented  = "not_implemented"
	CodeNoDiffBase      = "no_diff_base"
)

// MaxBody bounds request (and, in the client, response) bodies.
const MaxBody = 1 << 20

// Info is the body of GET /info.
type Info struct {
	ID       string       `json:"id,omitempty"`
	State    string       `json:"state"`
	VCPUs    int          `json:"vcpus"`
	MemBytes uint64       `json:"mem_bytes"`
	Cmdline  string       `json:"cmdline"`
	Compat   bool         `json:"compat"`
	Devices  []DeviceInfo `json:"devices"`
	UptimeMS int64        `json:"uptime_ms"` // since the VM started running; 0 before
	VMMPID   int          `json:"vmm_pid"`
	Exit     string       `json:"exit,omitempty"` // how the VM ended, once stopped
}

// DeviceInfo is one guest-visible device in Info.
type DeviceInfo struct {
	Name     string `json:"name"`
	Kind     string `json:"kind"`
	MMIOBase uint64 `json:"mmio_base,omitempty"`
	IOPort   uint16 `json:"io_port,omitempty"`
	IRQ      uint32 `json:"irq,omitempty"`
}

// Snapshot kinds (PUT /snapshot "kind").
const (
	SnapshotFull = "full" // all of guest memory
	SnapshotDiff = "diff" // pages dirtied since the last snapshot
)

// SnapshotRequest is the body of PUT /snapshot.
type SnapshotRequest struct {
	Dir  string `json:"dir"`            // absolute path of the snapshot directory
	Kind string `json:"kind,omitempty"` // SnapshotFull (default) or SnapshotDiff
}

// Validate checks r and fills in the default kind.
func (r *SnapshotRequest) Validate() error {
	switch {
	case r.Dir == "":
		return errors.New(`"dir" is required: the absolute path of the snapshot directory`)
	case strings.IndexByte(r.Dir, 0) >= 0:
		return errors.New(`"dir" contains a NUL byte`)
	case !filepath.IsAbs(r.Dir):
		// The vmm's working directory is not the client's.
		return fmt.Errorf(`"dir" %q is relative; give an absolute path`, r.Dir)
	}
	switch r.Kind {
	case "":
		r.Kind = SnapshotFull
	case SnapshotFull, SnapshotDiff:
	default:
		return fmt.Errorf(`"kind" %q is not "full" or "diff"`, r.Kind)
	}
	return nil
}

// Conditions a VM reports that the protocol has codes for; the vmm wraps
// them, the server maps them.
var (
	// ErrSnapshotUnsupported: the VM has something a snapshot cannot
	// capture yet (answered 501 not_implemented).
	ErrSnapshotUnsupported = errors.New("not supported by snapshots yet")
	// ErrNoDiffBase: a diff asked of a VM with no snapshot to diff against
	// (answered 409 no_diff_base).
	ErrNoDiffBase = errors.New("no earlier snapshot to diff against: take a full snapshot first")
)

// Error is the API's error, in httpjson's envelope.
type Error = httpjson.Error
