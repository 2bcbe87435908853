package agentproto

import (
	"encoding/json"
	"os"
	"time"

	"github.com/sietch-vm/sietch/internal/unixmode"
)

// Port is the vsock port the agent listens on in the guest.
const Port = 1024

// ModeHeader carries a downloaded file's mode, as octal Unix bits.
const ModeHeader = "X-Sietch-Mode"

// ExecRequest is the body of POST /v1/exec.
type ExecRequest struct {
	ID        string            `json:"id,omitempty"`   // chosen by the client, or generated; unique among running execs
	Cmd       string            `json:"cmd"`            // program: a name looked up in PATH, or a path
	Args      []string          `json:"args,omitempty"` // arguments after argv[0]
	Env       map[string]string `json:"env,omitempty"`  // added to (and overriding) the agent's base environment
	Cwd       string            `json:"cwd,omitempty"`  // working directory; default the agent's root
	User      string            `json:"user,omitempty"` // user name or decimal uid; default the agent's user
	Stdin     bool              `json:"stdin,omitempty"`
	TTY       *TTYSize          `json:"tty,omitempty"`        // run on a pseudo-terminal of this size; stderr joins stdout
	TimeoutMS int64             `json:"timeout_ms,omitempty"` // kill the process group after this long; 0: never
	// Detach starts the process in a session of its own and answers at
	// once (201, Started): its output goes to a bounded ring that GET
	// /v1/exec/{id}/output reads from the start, and it stays listed
	// after it exits until DELETE /v1/exec/{id}.
	Detach bool `json:"detach,omitempty"`
	// Log (with Detach) also appends the output to this guest file.
	Log string `json:"log,omitempty"`
}

// Process states.
const (
	ProcessRunning = "running"
	ProcessExited  = "exited"
)

// Process is one exec as GET /v1/exec lists it: every running one, and
// the detached ones that exited and were not deleted yet.
type Process struct {
	ID          string     `json:"id"`
	PID         int        `json:"pid"`
	Cmd         string     `json:"cmd"`
	Args        []string   `json:"args,omitempty"`
	TTY         bool       `json:"tty,omitempty"`
	Detached    bool       `json:"detached,omitempty"`
	State       string     `json:"state"`                  // ProcessRunning or ProcessExited
	ExitCode    *int       `json:"exit_code,omitempty"`    // once exited, unless a signal ended it
	Signal      string     `json:"signal,omitempty"`       // the signal that ended it
	TimedOut    bool       `json:"timed_out,omitempty"`    // killed at its timeout_ms
	OutputBytes int64      `json:"output_bytes,omitempty"` // detached: written so far (the agent keeps the last 256 KiB)
	StartedAt   time.Time  `json:"started_at"`
	EndedAt     *time.Time `json:"ended_at,omitempty"`
}

// TTYSize is a terminal size in character cells.
type TTYSize struct {
	Rows uint16 `json:"rows"`
	Cols uint16 `json:"cols"`
}

// ExecResult is how an exec ended.
type ExecResult struct {
	ID       string
	ExitCode int    // -1 when a signal ended the process
	Signal   string // "SIGKILL" when a signal ended it
	TimedOut bool   // the agent killed it at timeout_ms
}

// ExecEvent is one line of the application/x-ndjson exec stream.
type ExecEvent struct {
	ID       string `json:"id,omitempty"`
	PID      int    `json:"pid,omitempty"`
	Stdout   []byte `json:"stdout,omitempty"` // base64 in JSON
	Stderr   []byte `json:"stderr,omitempty"`
	ExitCode *int   `json:"exit_code,omitempty"`
	Signal   string `json:"signal,omitempty"`
	TimedOut bool   `json:"timed_out,omitempty"`
	Error    string `json:"error,omitempty"`
	// Dropped: output of a detached process this many bytes long was
	// lost to the ring's bound before the chunks that follow.
	Dropped int64 `json:"dropped,omitempty"`
}

// SignalRequest is the body of POST /v1/exec/{id}/signal.
type SignalRequest struct {
	Signal string `json:"signal"`
}

// ShutdownRequest is the body of POST /v1/shutdown.
type ShutdownRequest struct {
	Poweroff bool `json:"poweroff"`
}

// Health is the reply of GET /v1/health.
type Health struct {
	Status       string  `json:"status"`
	UptimeS      float64 `json:"uptime_s"`
	Load1        float64 `json:"load1"`
	MemTotal     uint64  `json:"mem_total"`
	MemAvailable uint64  `json:"mem_available"`
	DiskTotal    uint64  `json:"disk_total"` // of Config.Root's file system
	DiskFree     uint64  `json:"disk_free"`
	CPUs         int     `json:"cpus"`
	Execs        int     `json:"execs"` // running
}

// FileInfo describes one file, as GET /v1/stat and GET /v1/list return it.
type FileInfo struct {
	Name    string
	Type    string      // "file", "dir", "symlink" or "other"
	Size    int64       // bytes
	Mode    os.FileMode // permission bits with setuid, setgid and sticky; no type bits
	ModTime time.Time
	Target  string // of a symlink
}

// fileInfoJSON is FileInfo on the wire: the mode as an octal string, as chmod takes it.
type fileInfoJSON struct {
	Name    string    `json:"name"`
	Type    string    `json:"type"`
	Size    int64     `json:"size"`
	Mode    string    `json:"mode"`
	ModTime time.Time `json:"mtime"`
	Target  string    `json:"target,omitempty"`
}

// MarshalJSON writes the mode as octal Unix bits ("0755").
func (fi FileInfo) MarshalJSON() ([]byte, error) {
	return json.Marshal(fileInfoJSON{fi.Name, fi.Type, fi.Size, unixmode.Format(fi.Mode), fi.ModTime, fi.Target})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (fi *FileInfo) UnmarshalJSON(b []byte) error {
	var j fileInfoJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	m, err := unixmode.Parse(j.Mode)
	if err != nil {
		return err
	}
	*fi = FileInfo{j.Name, j.Type, j.Size, m, j.ModTime, j.Target}
	return nil
}

// ListReply is the body of GET /v1/list.
type ListReply struct {
	Entries []FileInfo `json:"entries"`
}

// StartRequest is the body of POST /v1/start: a background process that
// outlives the request, such as a template's server. Its stdin is
// /dev/null; stdout and stderr are appended to Log (default: discarded).
type StartRequest struct {
	ID   string            `json:"id,omitempty"`
	Cmd  string            `json:"cmd"`
	Args []string          `json:"args,omitempty"`
	Env  map[string]string `json:"env,omitempty"`
	Cwd  string            `json:"cwd,omitempty"`
	User string            `json:"user,omitempty"`
	Log  string            `json:"log,omitempty"` // absolute path in the guest; its directory must exist
}

// Started is the reply of POST /v1/start.
type Started struct {
	ID  string `json:"id"`
	PID int    `json:"pid"`
}

// Identity is the body of POST /v1/identity: who this machine is now.
// sietchd sends it after every restore, fork and template create, since a
// snapshot is a moment, not an identity: the restored guest still has the
// source's hostname, a clock stopped at the snapshot, and the same random
// state as every other copy. Zero fields are left as they are.
type Identity struct {
	SandboxID string            `json:"sandbox_id,omitempty"` // SIETCH_SANDBOX_ID in every later exec
	Hostname  string            `json:"hostname,omitempty"`
	Time      time.Time         `json:"time,omitzero"`     // the host's wall clock when sent
	Entropy   []byte            `json:"entropy,omitempty"` // fresh host randomness for the kernel's pool (base64)
	Env       map[string]string `json:"env,omitempty"`     // added to every later exec's environment
	Labels    map[string]string `json:"labels,omitempty"`  // written to LabelsFile for programs to read
	// Workdir and User are every later exec's working directory and user
	// when the exec names none: an image's WORKDIR and USER.
	Workdir string `json:"workdir,omitempty"`
	User    string `json:"user,omitempty"`
	// Network is eth0's new address, default route and name servers: a
	// restored sandbox has a TAP and an address of its own, not its
	// snapshot's.
	Network *NetIdentity `json:"network,omitempty"`
}

// NetIdentity is a guest's network configuration.
type NetIdentity struct {
	Address string   `json:"address"` // IPv4 with prefix length: 10.99.0.6/30
	Gateway string   `json:"gateway"` // IPv4, inside Address's prefix
	DNS     []string `json:"dns,omitempty"`
}

// LabelsFile is where the sandbox's labels are, as a JSON object, for
// programs in the guest.
const LabelsFile = "/run/sietch/labels.json"

// IdentityResult is the reply of POST /v1/identity.
type IdentityResult struct {
	// ClockStepNS is how far the guest's wall clock moved to the host's
	// (positive: it was behind).
	ClockStepNS int64 `json:"clock_step_ns"`
}

// Clock is the reply of GET /v1/clock and POST /v1/clock: the guest's
// wall clock when the agent answered, in nanoseconds since the epoch.
type Clock struct {
	TimeNS int64 `json:"time_ns"`
}

// ClockStep is the body of POST /v1/clock: move the guest's wall clock by
// StepNS from wherever it is when the agent reads the request. A relative
// step does not depend on how long the request took to arrive, which an
// absolute time (Identity.Time) does.
type ClockStep struct {
	StepNS int64 `json:"step_ns"`
}
