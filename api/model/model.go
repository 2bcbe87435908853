// Package model holds the JSON types of sietchd's HTTP API (/v1), shared by the server, the Go SDK and the CLI.
package model

import "time"

// State is a sandbox's lifecycle state. The allowed transitions live in
// package sandbox.
type State string

// Sandbox states.
const (
	StateCreating     State = "creating"
	StateRunning      State = "running"
	StatePaused       State = "paused"
	StateSnapshotting State = "snapshotting"
	StateStopped      State = "stopped"
	StateFailed       State = "failed"
)

// Limits are one sandbox's resources; zero fields take the server's
// defaults.
type Limits struct {
	CPUs      int    `json:"cpus,omitempty"`
	MemoryMiB int    `json:"memory_mib,omitempty"`
	DiskMiB   int    `json:"disk_mib,omitempty"`   // writable layer size
	TimeoutS  int    `json:"timeout_s,omitempty"`  // lifetime; 0: none
	OnTimeout string `json:"on_timeout,omitempty"` // "stop" (default) or "snapshot"
}

// CreateRequest is POST /v1/sandboxes: exactly one of Image or Snapshot.
type CreateRequest struct {
	Image    string            `json:"image,omitempty"`    // image name (GET /v1/images)
	Snapshot string            `json:"snapshot,omitempty"` // snapshot id
	Limits   Limits            `json:"limits,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
}

// Sandbox is one sandbox as the API shows it.
type Sandbox struct {
	ID        string            `json:"id"`
	State     State             `json:"state"`
	Reason    string            `json:"reason,omitempty"` // why it failed or stopped
	Image     string            `json:"image,omitempty"`
	Snapshot  string            `json:"snapshot,omitempty"` // restored from
	Limits    Limits            `json:"limits"`
	Labels    map[string]string `json:"labels,omitempty"`
	CreatedAt time.Time         `json:"created_at"`
	VMMPID    int               `json:"vmm_pid,omitempty"`
	Agent     bool              `json:"agent"` // the guest agent answered its last health check
	Ports     []Port            `json:"ports,omitempty"`
}

// SnapshotRequest is POST /v1/sandboxes/{id}/snapshots.
type SnapshotRequest struct {
	Kind string `json:"kind,omitempty"` // "full" (default) or "diff"
}

// Snapshot is a checkpoint of a sandbox.
type Snapshot struct {
	ID        string    `json:"id"`
	SandboxID string    `json:"sandbox_id"`
	Kind      string    `json:"kind"`
	Base      string    `json:"base,omitempty"` // diff: the snapshot id it applies to
	SizeBytes int64     `json:"size_bytes"`     // on disk
	CreatedAt time.Time `json:"created_at"`
}

// ForkRequest is POST /v1/sandboxes/{id}/fork: Count new sandboxes from
// Snapshot (one of the sandbox's snapshots; empty: take a full one now).
type ForkRequest struct {
	Snapshot string `json:"snapshot,omitempty"`
	Count    int    `json:"count"`
}

// ExecRequest is POST /v1/sandboxes/{id}/exec. The response streams
// ExecEvent lines (application/x-ndjson) as output is produced.
type ExecRequest struct {
	Cmd       string            `json:"cmd"`
	Args      []string          `json:"args,omitempty"`
	Env       map[string]string `json:"env,omitempty"`
	Cwd       string            `json:"cwd,omitempty"`
	Stdin     string            `json:"stdin,omitempty"` // base64 of bytes fed to stdin, then EOF
	TimeoutMS int               `json:"timeout_ms,omitempty"`
}

// ExecEvent is one line of an exec response: Stdout/Stderr carry base64
// chunks in order; the last line has Exit set.
type ExecEvent struct {
	Stdout string    `json:"stdout,omitempty"`
	Stderr string    `json:"stderr,omitempty"`
	Exit   *ExecExit `json:"exit,omitempty"`
}

// ExecExit ends an exec: the exit code, or the signal that ended it.
type ExecExit struct {
	Code     int    `json:"code"`
	Signal   string `json:"signal,omitempty"`
	TimedOut bool   `json:"timed_out,omitempty"`
}

// PortRequest is POST /v1/sandboxes/{id}/ports.
type PortRequest struct {
	GuestPort int    `json:"guest_port"`
	HostPort  int    `json:"host_port,omitempty"` // 0: any free port
	HostAddr  string `json:"host_addr,omitempty"` // default 127.0.0.1
}

// Port is a forward from a host TCP port to a guest port.
type Port struct {
	GuestPort int    `json:"guest_port"`
	HostAddr  string `json:"host_addr"`
	HostPort  int    `json:"host_port"`
}

// Image is a root filesystem sandboxes start from.
type Image struct {
	Name      string    `json:"name"`
	Kind      string    `json:"kind"` // "linux" (kernel + initramfs + root disk) or "testguest"
	SizeBytes int64     `json:"size_bytes"`
	CreatedAt time.Time `json:"created_at"`
}

// Health is GET /v1/health (no auth).
type Health struct {
	Status    string `json:"status"` // "ok"
	Version   string `json:"version"`
	Sandboxes int    `json:"sandboxes"`
	KVM       string `json:"kvm"` // what `vmm check` says about this host
}

// Error is every non-2xx response body: {"error": {...}}.
type Error struct {
	Code    string `json:"code"`            // stable, e.g. "not_found"
	Message string `json:"message"`         // for people
	Retry   bool   `json:"retry,omitempty"` // trying again later may work (agent not ready yet)
}

// ErrorBody wraps Error on the wire.
type ErrorBody struct {
	Error Error `json:"error"`
}

// Stable error codes.
const (
	CodeBadRequest       = "bad_request"
	CodeInvalidJSON      = "invalid_json"
	CodeUnknownField     = "unknown_field"
	CodeUnauthorized     = "unauthorized"
	CodeNotFound         = "not_found"
	CodeMethodNotAllowed = "method_not_allowed"
	CodeWrongState       = "wrong_state"
	CodeLimit            = "limit_exceeded"
	CodeAgentUnavailable = "agent_unavailable"
	CodeBodyTooLarge     = "body_too_large"
	CodeInternal         = "internal"
)
