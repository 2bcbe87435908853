package sandbox

import "time"

// The manager's own model. The API maps it to its wire types (package
// api/model) at its edge; the JSON tags here are the state database's
// format, so they must not change without a migration.

// State is a sandbox's lifecycle state; the allowed transitions are in
// state.go.
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

// CreateSpec is what a sandbox is created from: at most one of Template,
// Image or Snapshot; none means the template "default".
type CreateSpec struct {
	Template string            `json:"template,omitempty"` // template name (GET /v1/templates): a warm resume
	Image    string            `json:"image,omitempty"`    // image name (GET /v1/images): a cold boot
	Snapshot string            `json:"snapshot,omitempty"` // snapshot id
	Limits   Limits            `json:"limits,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
	Env      map[string]string `json:"env,omitempty"` // added to the environment of every command run in it
	// Network: nil takes sietchd's default (--net-default); see NetworkSpec.
	Network *NetworkSpec `json:"network,omitempty"`
}

// NetworkSpec is the network a create or a change asks for. A sandbox
// with a spec gets a network interface (a TAP on the host, virtio-net in
// the guest) and an address; Enabled off keeps it isolated (nothing
// passes) until a change turns it on. Allow and Deny entries are IPv4
// CIDRs, addresses or domain names (hostnet.ParsePolicy).
type NetworkSpec struct {
	Enabled  bool     `json:"enabled"`
	Internet *bool    `json:"internet,omitempty"` // nil: on
	Allow    []string `json:"allow,omitempty"`
	Deny     []string `json:"deny,omitempty"`
}

// Network is a sandbox's network interface and policy.
type Network struct {
	Enabled   bool     `json:"enabled"`
	Internet  bool     `json:"internet"`
	Allow     []string `json:"allow,omitempty"`
	Deny      []string `json:"deny,omitempty"`
	Address   string   `json:"address"`   // the guest's, with prefix length (10.99.0.2/30)
	Gateway   string   `json:"gateway"`   // the host side: its route out and its DNS server
	Interface string   `json:"interface"` // the host's TAP
}

// Sandbox is one sandbox as the manager reports it.
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
	Network   *Network          `json:"network,omitempty"` // nil: no network interface
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

// TemplateSpec is a template to build: boot Image, start StartCmd, run
// ReadyCmd until it exits 0, snapshot. Sandboxes created from the
// template resume that snapshot with StartCmd already running.
type TemplateSpec struct {
	Name          string `json:"name"`
	Image         string `json:"image,omitempty"`           // default: "default"
	StartCmd      string `json:"start_cmd,omitempty"`       // sh -c; its output goes to /run/sietch-start.log in the guest
	ReadyPort     int    `json:"ready_port,omitempty"`      // ready once a TCP connect to this guest port succeeds (checked through the agent: no process per try)
	ReadyCmd      string `json:"ready_cmd,omitempty"`       // sh -c, after ready_port; empty: ready once the start command runs
	ReadyTimeoutS int    `json:"ready_timeout_s,omitempty"` // default 300
	Limits        Limits `json:"limits,omitempty"`          // cpus, memory_mib, disk_mib of every sandbox from it
	// Contexts are languages (python, node, bash) whose default code
	// context is started before the snapshot, so that it is warm in every
	// sandbox from the template. The template default starts python's
	// when the image has python3.
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

// ExecExit ends an exec: the exit code, or the signal that ended it.
type ExecExit struct {
	Code     int    `json:"code"`
	Signal   string `json:"signal,omitempty"`
	TimedOut bool   `json:"timed_out,omitempty"`
}

// PortSpec is a port forward to open.
type PortSpec struct {
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
	// Source is how it was made: "" for a configured image, "dockerfile"
	// for one sietchd built.
	Source string       `json:"source,omitempty"`
	Config *ImageConfig `json:"config,omitempty"`
}

// ImageConfig is what a built image asks of the sandboxes that start from
// it: its Dockerfile's ENV, WORKDIR and USER become every exec's defaults;
// ENTRYPOINT and CMD the start command of a template built from it; EXPOSE
// the ports it suggests forwarding.
type ImageConfig struct {
	Env          []string          `json:"env,omitempty"` // K=V
	Workdir      string            `json:"workdir,omitempty"`
	User         string            `json:"user,omitempty"`
	Entrypoint   []string          `json:"entrypoint,omitempty"`
	Cmd          []string          `json:"cmd,omitempty"`
	ExposedPorts []string          `json:"exposed_ports,omitempty"` // "8000/tcp"
	Labels       map[string]string `json:"labels,omitempty"`
	// ReadyCmd is a template's ready check when its start command is the
	// image's (the desktop image's waits for its X server).
	ReadyCmd string `json:"ready_cmd,omitempty"`
	// Display is an X display a template of the image warms before its
	// snapshot (the agent's connection and a first screenshot).
	Display string `json:"display,omitempty"`
}

// ExecSpec is a command to run in a sandbox through its agent.
type ExecSpec struct {
	Cmd       string
	Args      []string
	Env       map[string]string
	Cwd       string
	Stdin     []byte // fed to the command, then EOF; nil: none
	TimeoutMS int
	TTY       *TTYSize // run on a terminal of this size (streams and detached processes)
}

// TTYSize is a terminal's size in character cells.
type TTYSize struct {
	Rows, Cols uint16
}
