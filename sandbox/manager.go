// Package sandbox is sietchd's sandbox lifecycle manager: one supervised vmm process per sandbox, persisted state, limits, snapshots, forks and the guest agent.
package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sietch-vm/sietch/internal/cgroups"
	"github.com/sietch-vm/sietch/wire/agentproto"
	"github.com/sietch-vm/sietch/wire/control"
)

// Image kinds.
const (
	KindLinux     = "linux"     // kernel + initramfs (guest-init and agent) + root disk
	KindTestguest = "testguest" // a freestanding test guest ELF: no agent, no disks
)

// ImageSpec is an image sandboxes start from.
type ImageSpec struct {
	Name    string
	Kind    string // KindLinux or KindTestguest
	Kernel  string // path of the kernel (or test guest ELF)
	Initrd  string // linux: the initramfs
	RootFS  string // linux: ext4 root disk, attached read-only as /dev/vda
	Cmdline string // kernel command line
	MemMiB  int    // default memory for this image; 0: Config.Defaults
	// Config is a built image's runtime config (its Dockerfile's ENV,
	// WORKDIR, USER, CMD…); nil for configured images.
	Config *ImageConfig
}

// HostLimits bound all sandboxes with a vmm process together; 0 is no limit.
type HostLimits struct {
	Sandboxes int
	MemoryMiB int
	CPUs      int
}

// Config is what Open needs.
type Config struct {
	StateDir string     // sandboxes, snapshots and sietch.db live here
	VMMPath  string     // the vmm binary
	Host     HostLimits // host-wide
	Defaults Limits
	Max      Limits // per-sandbox ceilings; 0 fields: only the host limits
	Images   []ImageSpec
	Logger   *slog.Logger
	// BootTimeout bounds a Linux sandbox's create: its guest agent must
	// answer by then (0: DefaultBootTimeout).
	BootTimeout time.Duration
	// RestoreMemory is how restored sandboxes get their memory: "ondemand"
	// (the default: a page on first touch only, so idle sandboxes of one
	// snapshot share it) or "lazy" (the rest copied in the background:
	// more memory per sandbox, a little faster to first answer here).
	RestoreMemory string
	// AgentDial returns the dialer of a sandbox's guest agent; nil dials the
	// sandbox's vsock socket (agentproto.DialUDS). Tests reach an agent running
	// as a host process this way.
	AgentDial func(sandboxID string) func(ctx context.Context) (net.Conn, error)
	// Cgroups is whether each sandbox gets a cgroup of its own (CgroupsAuto,
	// the default; CgroupsOn; CgroupsOff), made under CgroupParent
	// (default "sietch") below sietchd's own group in each hierarchy.
	Cgroups      string
	CgroupParent string
	// JailUIDBase is the first of the host uids given to sandboxes, one
	// each, for their vmm and device processes (vmm --jail-uid); 0 keeps
	// every vmm uid 0 in its jail.
	JailUIDBase int
	// Network is the host's sandbox networking; nil: none, and NetworkOff
	// says why (in the errors of creates that ask for network).
	Network    HostNetwork
	NetworkOff string
	// NetDefault: sandboxes get network unless their create says
	// otherwise (sietchd --net-default on).
	NetDefault bool
}

// DefaultJailUIDBase is above the ranges systemd gives containers and
// dynamic users (up to 0x6FFF0000) and, with JailUIDSlots, below 2^31.
const DefaultJailUIDBase = 1_900_000_000

// JailUIDSlots is how many uids from Config.JailUIDBase sietchd hands out.
const JailUIDSlots = 1 << 20

// DefaultBootTimeout is how long a cold boot may take to reach the guest
// agent: about a minute on hosts that emulate guest kernel mode.
const DefaultBootTimeout = 5 * time.Minute

// Timeouts of the manager's own calls.
const (
	agentTimeout   = 2 * time.Second  // an agent that does not answer by then is unavailable
	controlTimeout = 60 * time.Second // pause and snapshot wait for every vCPU to park
	startTimeout   = 30 * time.Second // a vmm that does not run by then has failed
	stopTimeout    = 5 * time.Second  // PUT /stop, then SIGKILL
)

// maxSockPath is what a unix socket path may hold (sun_path, 108 bytes
// with the NUL); the longest one under a sandbox is its vsock socket plus
// the "_<port>" the vmm appends for guest-initiated connections.
const maxSockPath = 107

// Manager runs the sandboxes of one sietchd.
type Manager struct {
	cfg      Config
	log      *slog.Logger
	db       *store
	imgMu    sync.RWMutex // images, specs and building: image builds add to them
	images   map[string]Image
	specs    map[string]ImageSpec
	building map[string]bool // image names being built

	wakeR, wakeW *os.File       // closing wakeW ends every supervisor's poll
	quit         chan struct{}  // closed by Close
	wg           sync.WaitGroup // supervisors, port forwards, agent probes

	mu        sync.Mutex
	closed    bool
	sandboxes map[string]*sandbox
	snapshots map[string]*snapRecord
	templates map[string]*template
	hostKVM   func() string   // probeHost, once
	orphans   []string        // snapshots of replaced templates, removed once nothing needs them
	boot      histogram       // create from an image until the vmm runs
	restore   histogram       // create from a snapshot until the vmm runs
	cg        *cgroups.Layout // where sandbox groups go; nil: none
}

// sandbox is one sandbox at run time.
type sandbox struct {
	op  sync.Mutex // one lifecycle operation (pause, snapshot, delete…) at a time
	id  string
	dir string
	ctl *control.Client

	agentOnce sync.Once
	agent     *agentproto.Client // agentFor makes it; its idle streams are reused

	// Guarded by Manager.mu.
	rec        record
	pidfd      int           // the vmm's, while supervised; -1 otherwise
	done       chan struct{} // closed once the vmm has exited, or at once without one
	deleting   bool
	stopReason string // why sietchd stopped it (timeout), for the record
	suspendTo  string // the snapshot its vmm is being stopped for: it becomes suspended
	ports      map[int]*forward
	timer      *time.Timer
}

// Open opens the state directory, re-attaches to the vmm processes that
// are still alive and marks the others failed.
func Open(cfg Config) (*Manager, error) {
	if cfg.StateDir == "" {
		return nil, errors.New("sandbox manager: StateDir is empty; give the state directory (sietchd --state-dir)")
	}
	if cfg.VMMPath == "" {
		return nil, errors.New("sandbox manager: VMMPath is empty; give the vmm binary (sietchd --vmm)")
	}
	state, err := filepath.Abs(cfg.StateDir)
	if err != nil {
		return nil, fmt.Errorf("state directory %s: %w", cfg.StateDir, err)
	}
	cfg.StateDir = state
	if n := len(state) + len("/sandboxes/") + idLen + len("/vsock_4294967295"); n > maxSockPath {
		return nil, fmt.Errorf("state directory %s is too long: sandbox socket paths would be %d bytes, over the %d a unix socket path holds; choose a shorter --state-dir", state, n, maxSockPath)
	}
	for _, d := range []string{state, filepath.Join(state, "sandboxes"), filepath.Join(state, "snapshots")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("create state directory: %w", err)
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.BootTimeout <= 0 {
		cfg.BootTimeout = DefaultBootTimeout
	}
	switch cfg.RestoreMemory {
	case "":
		cfg.RestoreMemory = "ondemand"
	case "ondemand", "lazy":
	default:
		return nil, fmt.Errorf("sandbox manager: restore memory %q: want ondemand or lazy", cfg.RestoreMemory)
	}
	cfg.Defaults = withDefaults(cfg.Defaults, Limits{CPUs: 1, MemoryMiB: 128, OnTimeout: OnTimeoutStop})
	db, err := openStore(filepath.Join(state, "sietch.db"))
	if err != nil {
		return nil, err
	}
	m := &Manager{
		cfg:       cfg,
		log:       cfg.Logger,
		db:        db,
		images:    map[string]Image{},
		specs:     map[string]ImageSpec{},
		sandboxes: map[string]*sandbox{},
		snapshots: map[string]*snapRecord{},
		templates: map[string]*template{},
		quit:      make(chan struct{}),
		boot:      newHistogram(),
		restore:   newHistogram(),
	}
	m.hostKVM = sync.OnceValue(m.probeHost)
	if err := m.openCgroups(); err != nil {
		db.close()
		return nil, err
	}
	if m.wakeR, m.wakeW, err = os.Pipe(); err != nil {
		db.close()
		return nil, fmt.Errorf("sandbox manager: %w", err)
	}
	if err := m.loadImages(); err != nil {
		m.Close()
		return nil, err
	}
	m.loadBuiltImages()
	for _, e := range m.db.each(bucketSnapshots, func(id string, b []byte) error {
		var s snapRecord
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		m.snapshots[id] = &s
		return nil
	}) {
		m.log.Warn("skipping a snapshot record that does not decode", "err", e)
	}
	var recs []record
	for _, e := range m.db.each(bucketSandboxes, func(id string, b []byte) error {
		var r record
		if err := json.Unmarshal(b, &r); err != nil {
			return err
		}
		recs = append(recs, r)
		return nil
	}) {
		m.log.Warn("skipping a sandbox record that does not decode", "err", e)
	}
	for _, r := range recs {
		m.reattach(r)
	}
	m.reattachNetworks()
	for _, id := range m.loadTemplates() {
		if sb, err := m.lookup(id); err == nil {
			m.log.Info("removing the sandbox of a template build cut short by a restart", "sandbox", id)
			m.remove(sb)
		}
	}
	m.collectGarbage()
	m.collectCgroups()
	m.reapSnapshots()
	return m, nil
}

// loadImages records the configured images, keeping the creation time of
// those sietchd has seen before.
func (m *Manager) loadImages() error {
	known := map[string]Image{}
	m.db.each(bucketImages, func(id string, b []byte) error {
		var im Image
		if err := json.Unmarshal(b, &im); err != nil {
			return err
		}
		known[id] = im
		return nil
	})
	for _, spec := range m.cfg.Images {
		if err := checkImage(spec); err != nil {
			return err
		}
		if _, dup := m.specs[spec.Name]; dup {
			return fmt.Errorf("image %q is configured twice; give each image its own name", spec.Name)
		}
		im := Image{Name: spec.Name, Kind: spec.Kind, CreatedAt: time.Now().UTC()}
		if old, ok := known[spec.Name]; ok {
			im.CreatedAt = old.CreatedAt
		}
		for _, p := range []string{spec.Kernel, spec.Initrd, spec.RootFS} {
			if fi, err := os.Stat(p); p != "" && err == nil {
				im.SizeBytes += fi.Size()
			}
		}
		if err := m.db.put(bucketImages, spec.Name, im); err != nil {
			return err
		}
		m.images[spec.Name] = im
		m.specs[spec.Name] = spec
	}
	return nil
}

func checkImage(s ImageSpec) error {
	switch {
	case s.Name == "" || strings.ContainsAny(s.Name, " /:,="):
		return fmt.Errorf("image name %q: use letters, digits, '.', '_' or '-'", s.Name)
	case s.Kind != KindLinux && s.Kind != KindTestguest:
		return fmt.Errorf("image %s: kind %q is not %q or %q", s.Name, s.Kind, KindLinux, KindTestguest)
	case s.Kernel == "":
		return fmt.Errorf("image %s: no kernel; give kernel=PATH", s.Name)
	case s.MemMiB < 0:
		return fmt.Errorf("image %s: memory %d MiB is negative", s.Name, s.MemMiB)
	}
	for _, p := range []string{s.Kernel, s.Initrd, s.RootFS} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("image %s: %w", s.Name, err)
		}
	}
	return nil
}

// Close stops supervising and serving ports and closes the state
// database. The vmm processes keep running; the next Open re-attaches.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	var fwds []*forward
	for _, sb := range m.sandboxes {
		if sb.timer != nil {
			sb.timer.Stop()
		}
		for _, f := range sb.ports {
			fwds = append(fwds, f)
		}
	}
	close(m.quit)
	m.mu.Unlock()
	for _, f := range fwds {
		f.close()
	}
	m.wakeW.Close()
	m.wg.Wait()
	m.wakeR.Close()
	m.closeCgroups()
	return m.db.close()
}

// idLen is the length of a sandbox id: "sb-" and 10 hex digits.
const idLen = 13

func newID(prefix string) string {
	b := make([]byte, 5)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// lookup returns the sandbox id; the caller must not hold m.mu.
func (m *Manager) lookup(id string) (*sandbox, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	sb, ok := m.sandboxes[id]
	if !ok {
		return nil, fmt.Errorf("%w: no sandbox %q (the sandbox list names them)", ErrNotFound, id)
	}
	return sb, nil
}

// view is the API's view of sb; the caller holds m.mu.
func (sb *sandbox) view() Sandbox {
	s := sb.rec.Sandbox
	s.Labels = cloneMap(s.Labels)
	s.Ports = slices.Clone(s.Ports)
	if s.Network != nil {
		n := cloneNetwork(s.Network)
		s.Network = &n
	}
	return s
}

// Get returns one sandbox.
func (m *Manager) Get(id string) (Sandbox, error) {
	sb, err := m.lookup(id)
	if err != nil {
		return Sandbox{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return sb.view(), nil
}

// List returns every sandbox, oldest first.
func (m *Manager) List() []Sandbox {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Sandbox, 0, len(m.sandboxes))
	for _, sb := range m.sandboxes {
		out = append(out, sb.view())
	}
	slices.SortFunc(out, func(a, b Sandbox) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// HostKVM says in one line what `vmm check` finds on this host; the probe
// runs once, in the vmm binary (sietchd links no machine code).
func (m *Manager) HostKVM() string { return m.hostKVM() }

// probeHost runs `vmm check --json`.
func (m *Manager) probeHost() string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, m.cfg.VMMPath, "check", "--json").Output()
	var h control.HostCheck
	if jerr := json.Unmarshal(out, &h); jerr != nil {
		return fmt.Sprintf("unknown: %s check --json failed: %v", m.cfg.VMMPath, errors.Join(err, jerr))
	}
	return h.Summary()
}

// Images returns the configured images by name.
func (m *Manager) Images() []Image {
	m.imgMu.RLock()
	defer m.imgMu.RUnlock()
	out := make([]Image, 0, len(m.images))
	for _, im := range m.images {
		out = append(out, im)
	}
	slices.SortFunc(out, func(a, b Image) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// save persists sb's record; the caller holds m.mu.
func (m *Manager) save(sb *sandbox) {
	if sb.deleting {
		return
	}
	if err := m.db.put(bucketSandboxes, sb.id, sb.rec); err != nil {
		m.log.Error("persist sandbox", "sandbox", sb.id, "err", err)
	}
}

// setState moves sb to state st (with reason) if the table allows it; the
// caller holds m.mu.
func (m *Manager) setState(sb *sandbox, st State, reason string) bool {
	if !canMove(sb.rec.State, st) {
		return false
	}
	sb.rec.State, sb.rec.Reason = st, reason
	m.save(sb)
	m.log.Info("sandbox state", "sandbox", sb.id, "state", st, "reason", reason)
	return true
}

func cloneMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
