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
	StateSuspended    State = "suspended" // paused to disk: no vmm runs; the next call that needs it resumes it
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
	OnTimeout string `json:"on_timeout,omitempty"` // "stop" (default), "snapshot" or "pause" (to disk)
}

// CreateRequest is POST /v1/sandboxes: at most one of Template, Image or
// Snapshot; none means the template "default".
type CreateRequest struct {
	Template string            `json:"template,omitempty"` // template name (GET /v1/templates): a warm resume
	Image    string            `json:"image,omitempty"`    // image name (GET /v1/images): a cold boot
	Snapshot string            `json:"snapshot,omitempty"` // snapshot id
	Limits   Limits            `json:"limits,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
	Env      map[string]string `json:"env,omitempty"`     // added to the environment of every command run in it
	Network  *NetworkSpec      `json:"network,omitempty"` // absent: sietchd's default (--net-default)
}

// NetworkSpec is a sandbox's network as a create (CreateRequest.Network)
// or PUT /v1/sandboxes/{id}/network asks for it: given, the sandbox has a
// network interface; Enabled off keeps it isolated. Allow and Deny hold
// IPv4 CIDRs, addresses or domain names (a name also covers its
// subdomains), at most 64 each; an allowed entry wins over a denied one,
// and Internet (default on) decides the rest.
type NetworkSpec struct {
	Enabled  bool     `json:"enabled"`
	Internet *bool    `json:"internet,omitempty"`
	Allow    []string `json:"allow,omitempty"`
	Deny     []string `json:"deny,omitempty"`
}

// Network is a sandbox's network interface and egress policy.
type Network struct {
	Enabled   bool     `json:"enabled"`
	Internet  bool     `json:"internet"`
	Allow     []string `json:"allow,omitempty"`
	Deny      []string `json:"deny,omitempty"`
	Address   string   `json:"address"`   // the guest's, with prefix length
	Gateway   string   `json:"gateway"`   // the host side: its route out and its DNS server
	Interface string   `json:"interface"` // the host's TAP
}

// Sandbox is one sandbox as the API shows it.
type Sandbox struct {
	ID        string            `json:"id"`
	State     State             `json:"state"`
	Reason    string            `json:"reason,omitempty"` // why it failed or stopped
	Image     string            `json:"image,omitempty"`
	Template  string            `json:"template,omitempty"` // created from
	Snapshot  string            `json:"snapshot,omitempty"` // restored from (a template's snapshot, for one created from a template)
	Limits    Limits            `json:"limits"`
	Labels    map[string]string `json:"labels,omitempty"`
	CreatedAt time.Time         `json:"created_at"`
	VMMPID    int               `json:"vmm_pid,omitempty"`
	Agent     bool              `json:"agent"` // the guest agent answered its last health check
	Ports     []Port            `json:"ports,omitempty"`
	Network   *Network          `json:"network,omitempty"` // absent: no network interface
}

// SnapshotRequest is POST /v1/sandboxes/{id}/snapshots.
type SnapshotRequest struct {
	Kind string `json:"kind,omitempty"` // "full" (default) or "diff"
}

// PauseRequest is the optional body of POST /v1/sandboxes/{id}/pause.
type PauseRequest struct {
	// ToDisk snapshots the sandbox and ends its vmm, freeing its memory:
	// it becomes suspended, and the next exec, file, port or resume call
	// restores it.
	ToDisk bool `json:"to_disk,omitempty"`
}

// Snapshot roles.
const (
	RoleTemplate = "template" // the snapshot a template's sandboxes start from
	RoleSuspend  = "suspend"  // a suspended sandbox's state
)

// Snapshot is a checkpoint of a sandbox.
type Snapshot struct {
	ID         string    `json:"id"`
	SandboxID  string    `json:"sandbox_id"`
	Kind       string    `json:"kind"`
	Base       string    `json:"base,omitempty"`     // diff: the snapshot id it applies to
	Role       string    `json:"role,omitempty"`     // "template", "suspend", or empty: taken by a user
	Template   string    `json:"template,omitempty"` // role template: whose
	SizeBytes  int64     `json:"size_bytes"`         // on disk
	CreatedAt  time.Time `json:"created_at"`
	Dependents []string  `json:"dependents,omitempty"` // what needs it ("sandbox sb-…", "snapshot snap-…", "template NAME"); it cannot be deleted while any does
}

// TemplateState is a template's build state.
type TemplateState string

// Template states.
const (
	TemplateBuilding TemplateState = "building"
	TemplateReady    TemplateState = "ready"
	TemplateFailed   TemplateState = "failed"
)

// Template build steps, in order (Template.Step while building).
const (
	StepBoot     = "boot"     // cold boot of the image until its agent answers
	StepStart    = "start"    // the start command, left running
	StepReady    = "ready"    // the ready command, until it exits 0
	StepContexts = "contexts" // the code contexts started, warm in every sandbox
	StepSnapshot = "snapshot" // the snapshot every create resumes
)

// TemplateRequest is POST /v1/templates: boot Image, start StartCmd, run
// ReadyCmd until it exits 0, snapshot. Sandboxes created from the
// template resume that snapshot with StartCmd already running.
type TemplateRequest struct {
	Name          string `json:"name"`
	Image         string `json:"image,omitempty"`           // default: "default"
	StartCmd      string `json:"start_cmd,omitempty"`       // sh -c; its output goes to /run/sietch-start.log in the guest
	ReadyPort     int    `json:"ready_port,omitempty"`      // ready once a TCP connect to this guest port succeeds (checked through the agent: no process per try)
	ReadyCmd      string `json:"ready_cmd,omitempty"`       // sh -c, after ready_port; empty: ready once the start command runs
	ReadyTimeoutS int    `json:"ready_timeout_s,omitempty"` // default 300
	Limits        Limits `json:"limits,omitempty"`          // cpus, memory_mib, disk_mib of every sandbox from it
	// Contexts are languages (python, node, bash) whose default code
	// context starts before the snapshot: warm in every sandbox from it.
	Contexts []string `json:"contexts,omitempty"`
}

// Template is a booted, snapshotted image that sandboxes resume.
type Template struct {
	Name      string        `json:"name"`
	Image     string        `json:"image"`
	StartCmd  string        `json:"start_cmd,omitempty"`
	ReadyPort int           `json:"ready_port,omitempty"`
	ReadyCmd  string        `json:"ready_cmd,omitempty"`
	Contexts  []string      `json:"contexts,omitempty"` // languages whose default context is warm in its sandboxes
	Limits    Limits        `json:"limits"`
	State     TemplateState `json:"state"`
	Step      string        `json:"step,omitempty"`   // while building
	Reason    string        `json:"reason,omitempty"` // why it failed
	Snapshot  string        `json:"snapshot,omitempty"`
	SizeBytes int64         `json:"size_bytes"`
	BuildS    float64       `json:"build_s,omitempty"` // how long the build took
	CreatedAt time.Time     `json:"created_at"`
	Sandboxes int           `json:"sandboxes"` // sandboxes from it that run now
	// Stale: its image's files changed since the build. Its sandboxes run
	// what the image held then; the template default is rebuilt on its
	// next use, others when removed and built again.
	Stale bool `json:"stale,omitempty"`
}

// ForkRequest is POST /v1/sandboxes/{id}/fork: Count new sandboxes from
// Snapshot (one of the sandbox's snapshots; empty: take a full one now).
type ForkRequest struct {
	Snapshot string `json:"snapshot,omitempty"`
	Count    int    `json:"count"`
}

// ExecRequest is POST /v1/sandboxes/{id}/exec. The response streams
// ExecEvent lines (application/x-ndjson) as output is produced; with
// "Connection: Upgrade" and "Upgrade: sietch-exec.v1" it is an exec
// stream instead (stdin, resizes and signals too; docs/AGENT.md "Exec streams"); with
// Detach the command runs on and the response is at once (Started).
type ExecRequest struct {
	Cmd       string            `json:"cmd"`
	Args      []string          `json:"args,omitempty"`
	Env       map[string]string `json:"env,omitempty"`
	Cwd       string            `json:"cwd,omitempty"`
	Stdin     string            `json:"stdin,omitempty"` // base64 of bytes fed to stdin, then EOF (the NDJSON form only)
	TimeoutMS int               `json:"timeout_ms,omitempty"`
	TTY       *TTYSize          `json:"tty,omitempty"`    // a terminal of this size: an exec stream or a detached process
	Detach    bool              `json:"detach,omitempty"` // run on in the background: see Process
}

// TTYSize is a terminal's size in character cells.
type TTYSize struct {
	Rows uint16 `json:"rows"`
	Cols uint16 `json:"cols"`
}

// Started answers a detached exec.
type Started struct {
	ID  string `json:"id"`  // the process's id in GET .../processes
	PID int    `json:"pid"` // in the guest
}

// Process states.
const (
	ProcessRunning = "running"
	ProcessExited  = "exited"
)

// Process is one process of a sandbox's: a running exec, or a detached
// one (kept after it exits, with its output, until deleted; detached
// processes live on through snapshots, pauses and templates).
type Process struct {
	ID          string     `json:"id"`
	PID         int        `json:"pid"`
	Cmd         string     `json:"cmd"`
	Args        []string   `json:"args,omitempty"`
	TTY         bool       `json:"tty,omitempty"`
	Detached    bool       `json:"detached,omitempty"`
	State       string     `json:"state"`          // running or exited
	Exit        *ExecExit  `json:"exit,omitempty"` // once exited
	OutputBytes int64      `json:"output_bytes"`   // detached: written so far; the last 256 KiB are kept
	StartedAt   time.Time  `json:"started_at"`
	EndedAt     *time.Time `json:"ended_at,omitempty"`
}

// SignalRequest is POST .../processes/{proc}/signal.
type SignalRequest struct {
	Signal string `json:"signal"` // "SIGTERM", "TERM" or "15"
}

// ExecEvent is one line of an exec response: Stdout/Stderr carry base64
// chunks in order; the last line has Exit set. Reading a detached
// process's output, Dropped says how many bytes the bound lost before the
// chunks that follow.
type ExecEvent struct {
	Stdout  string    `json:"stdout,omitempty"`
	Stderr  string    `json:"stderr,omitempty"`
	Exit    *ExecExit `json:"exit,omitempty"`
	Dropped int64     `json:"dropped,omitempty"`
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
	// Source is "dockerfile" for an image sietchd built (POST /v1/images);
	// absent for one it was configured with.
	Source string       `json:"source,omitempty"`
	Config *ImageConfig `json:"config,omitempty"`
}

// ImageConfig is a built image's runtime config: ENV, WORKDIR and USER are
// every exec's defaults in sandboxes created from it, ENTRYPOINT and CMD
// the start command of a template built from it, EXPOSE the ports it
// suggests forwarding.
type ImageConfig struct {
	Env          []string          `json:"env,omitempty"` // K=V
	Workdir      string            `json:"workdir,omitempty"`
	User         string            `json:"user,omitempty"`
	Entrypoint   []string          `json:"entrypoint,omitempty"`
	Cmd          []string          `json:"cmd,omitempty"`
	ExposedPorts []string          `json:"exposed_ports,omitempty"` // "8000/tcp"
	Labels       map[string]string `json:"labels,omitempty"`
}

// ImageBuildEvent is one line of POST /v1/images' application/x-ndjson
// stream: build output as it comes, then the image or the error.
type ImageBuildEvent struct {
	Log   string `json:"log,omitempty"`
	Image *Image `json:"image,omitempty"`
	Error *Error `json:"error,omitempty"`
}

// SandboxStats is GET /v1/sandboxes/{id}/stats: a running sandbox's
// resource use (its vmm and device processes together) and its limits.
// Counters count from its vmm's start.
type SandboxStats struct {
	Cgroup              string  `json:"cgroup,omitempty"` // "v2" or "v1"; absent: no group of its own (usage from /proc, no limits)
	CPUUserS            float64 `json:"cpu_user_s"`
	CPUSystemS          float64 `json:"cpu_system_s"` // a vCPU's guest time counts here
	CPULimit            float64 `json:"cpu_limit,omitempty"`
	CPUPeriods          int64   `json:"cpu_periods"`
	CPUThrottledPeriods int64   `json:"cpu_throttled_periods"`
	CPUThrottledS       float64 `json:"cpu_throttled_s"`
	MemoryBytes         int64   `json:"memory_bytes"`
	MemoryPeakBytes     int64   `json:"memory_peak_bytes,omitempty"`
	MemoryLimitBytes    int64   `json:"memory_limit_bytes,omitempty"`
	MemoryOOMKills      int64   `json:"memory_oom_kills"`
	Pids                int64   `json:"pids"`
	PidsLimit           int64   `json:"pids_limit,omitempty"`
	DiskReadBytes       int64   `json:"disk_read_bytes"`
	DiskWriteBytes      int64   `json:"disk_write_bytes"`
	NetRxBytes          *int64  `json:"net_rx_bytes,omitempty"` // nil: no TAP
	NetTxBytes          *int64  `json:"net_tx_bytes,omitempty"`
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
	CodeInUse            = "in_use"   // something still depends on it (the message names what)
	CodeConflict         = "conflict" // the guest refuses it as things stand: an id in use, a process that closed its stdin, a file in the way (exists, a directory not empty, a file where a directory must be)
	CodeBodyTooLarge     = "body_too_large"
	CodeInternal         = "internal"
)

// FileInfo describes one file in a sandbox (GET .../files/stat, .../files/list).
type FileInfo struct {
	Name    string    `json:"name"`
	Type    string    `json:"type"` // "file", "dir", "symlink" or "other"
	Size    int64     `json:"size"`
	Mode    string    `json:"mode"` // octal Unix bits with setuid, setgid, sticky: "0755", "4755"
	ModTime time.Time `json:"mtime"`
	Target  string    `json:"target,omitempty"` // of a symlink
}

// FileList is GET /v1/sandboxes/{id}/files/list: a directory's entries by name.
type FileList struct {
	Entries []FileInfo `json:"entries"`
}

// MkdirRequest is POST /v1/sandboxes/{id}/files/mkdir.
type MkdirRequest struct {
	Path    string `json:"path"`
	Parents bool   `json:"parents,omitempty"` // make missing parents; an existing directory is then no error
	Mode    string `json:"mode,omitempty"`    // octal, default "0755"
}

// RenameRequest is POST /v1/sandboxes/{id}/files/rename. A file or
// symlink at To is replaced; a directory never is.
type RenameRequest struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// TarResult is the reply of PUT /v1/sandboxes/{id}/files/tar.
type TarResult struct {
	Files    int64 `json:"files"` // regular files, hard links included
	Dirs     int64 `json:"dirs"`
	Symlinks int64 `json:"symlinks"`
	Bytes    int64 `json:"bytes"` // of regular files' contents
}

// Watch event types (WatchEvent.Type).
const (
	WatchCreate   = "create"   // made, or moved in (a rename's new name)
	WatchWrite    = "write"    // written
	WatchRemove   = "remove"   // removed
	WatchRename   = "rename"   // moved away: the old name
	WatchChmod    = "chmod"    // mode, owner, times
	WatchOverflow = "overflow" // events were lost: rescan
)

// WatchEvent is one line of GET /v1/sandboxes/{id}/files/watch
// (application/x-ndjson).
type WatchEvent struct {
	Type  string    `json:"type"`
	Path  string    `json:"path,omitempty"`
	IsDir bool      `json:"is_dir,omitempty"`
	Time  time.Time `json:"time"`
}

// DesktopAction is one input action on a sandbox's X display. Type is
// "move" (x, y), "click" (x, y, button 1–3, count 1–3), "drag" (x, y to
// x2, y2), "scroll" (dy: negative up), "type" (text, any Unicode) or "key"
// (keys: a combination such as "ctrl+l").
type DesktopAction struct {
	Type   string `json:"type"`
	X      int    `json:"x,omitempty"`
	Y      int    `json:"y,omitempty"`
	X2     int    `json:"x2,omitempty"`
	Y2     int    `json:"y2,omitempty"`
	Button int    `json:"button,omitempty"`
	Count  int    `json:"count,omitempty"`
	DY     int    `json:"dy,omitempty"`
	Text   string `json:"text,omitempty"`
	Keys   string `json:"keys,omitempty"`
}

// DesktopInput is the body of POST /v1/sandboxes/{id}/input.
type DesktopInput struct {
	Display string          `json:"display,omitempty"` // default ":1"
	Actions []DesktopAction `json:"actions"`
}

// DesktopState is a display's screen size and pointer position.
type DesktopState struct {
	Width   int `json:"width"`
	Height  int `json:"height"`
	CursorX int `json:"cursor_x"`
	CursorY int `json:"cursor_y"`
}

// VNCRequest is the body of POST /v1/sandboxes/{id}/vnc.
type VNCRequest struct {
	Display  string `json:"display,omitempty"`   // default ":1"
	HostAddr string `json:"host_addr,omitempty"` // default 127.0.0.1
	HostPort int    `json:"host_port,omitempty"` // 0: any free port, or the forward made before
}

// VNC is how to view a sandbox's desktop: a VNC server (RFB, VNC
// authentication) at host_addr:host_port with password, made for this
// request (the one before stops working), and noVNC's page in a browser at
// web_url when the image has noVNC.
type VNC struct {
	Display  string `json:"display"`
	Password string `json:"password"`
	HostAddr string `json:"host_addr"`
	HostPort int    `json:"host_port"`
	WebURL   string `json:"web_url,omitempty"`
}

// BrowserRequest is the body of POST /v1/sandboxes/{id}/browser.
type BrowserRequest struct {
	Display string `json:"display,omitempty"` // default ":1"
	URL     string `json:"url"`
}

// Browser is the reply of POST /v1/sandboxes/{id}/browser: started (the
// browser was not running and now starts with the URL) or not (a new tab
// of the running browser), and the guest port of its DevTools protocol,
// which `POST …/ports` forwards for CDP tools.
type Browser struct {
	Started      bool `json:"started"`
	DevToolsPort int  `json:"devtools_port"`
	PID          int  `json:"pid,omitempty"`
}
