package agent

import (
	"encoding/json"
	"os"
	"time"

	"github.com/sietch-vm/sietch/internal/unixmode"
)

// Port is the vsock port the agent listens on in the guest.
const Port = 1024

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

// execEvent is one line of the application/x-ndjson exec stream.
type execEvent struct {
	ID       string `json:"id,omitempty"`
	PID      int    `json:"pid,omitempty"`
	Stdout   []byte `json:"stdout,omitempty"` // base64 in JSON
	Stderr   []byte `json:"stderr,omitempty"`
	ExitCode *int   `json:"exit_code,omitempty"`
	Signal   string `json:"signal,omitempty"`
	TimedOut bool   `json:"timed_out,omitempty"`
	Error    string `json:"error,omitempty"`
}

// signalRequest is the body of POST /v1/exec/{id}/signal.
type signalRequest struct {
	Signal string `json:"signal"`
}

// shutdownRequest is the body of POST /v1/shutdown.
type shutdownRequest struct {
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

// modeBits keeps the parts of an os.FileMode that chmod sets.
func modeBits(m os.FileMode) os.FileMode {
	return m & (os.ModePerm | os.ModeSetuid | os.ModeSetgid | os.ModeSticky)
}
