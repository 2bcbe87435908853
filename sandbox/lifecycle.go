package sandbox

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sietch-vm/sietch/wire/control"
)

// Bounds on labels: they are stored with every record.
const (
	maxLabels     = 64
	maxLabelBytes = 256
)

// Create starts a sandbox from a template (the default when the request
// names nothing), an image or a snapshot, and returns it running: for a
// Linux sandbox, once its guest agent answers with its identity applied.
func (m *Manager) Create(ctx context.Context, req CreateSpec) (Sandbox, error) {
	if err := checkLabels(req.Labels); err != nil {
		return Sandbox{}, err
	}
	if err := checkEnv(req.Env); err != nil {
		return Sandbox{}, err
	}
	given := 0
	for _, s := range []string{req.Template, req.Image, req.Snapshot} {
		if s != "" {
			given++
		}
	}
	if given > 1 {
		return Sandbox{}, fmt.Errorf("%w: give one of template, image or snapshot", ErrInvalid)
	}
	o := restoreOpts{limits: req.Limits, labels: req.Labels, env: req.Env, network: req.Network}
	switch {
	case req.Snapshot != "":
		return one(m.restoreN(ctx, req.Snapshot, 1, o))
	case req.Image != "":
		return m.coldBoot(ctx, req)
	}
	o.template = req.Template
	if o.template == "" {
		o.template = DefaultTemplate
	}
	snap, err := m.readyTemplate(ctx, o.template)
	if err != nil {
		return Sandbox{}, err
	}
	return one(m.restoreN(ctx, snap, 1, o))
}

func one(sbs []Sandbox, err error) (Sandbox, error) {
	if err != nil {
		return Sandbox{}, err
	}
	return sbs[0], nil
}

// coldBoot boots a sandbox from an image.
func (m *Manager) coldBoot(ctx context.Context, req CreateSpec) (Sandbox, error) {
	spec, ok := m.spec(req.Image)
	if !ok {
		return Sandbox{}, fmt.Errorf("%w: no image %q (the image list names them)", ErrNotFound, req.Image)
	}
	sb, err := m.bootSpec(ctx, spec, req)
	if err != nil {
		return Sandbox{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return sb.view(), nil
}

// bootSpec boots a sandbox from spec; an image built from a Dockerfile
// gives it its ENV (under the create's), WORKDIR and USER.
func (m *Manager) bootSpec(ctx context.Context, spec ImageSpec, req CreateSpec) (*sandbox, error) {
	if c := spec.Config; c != nil {
		env := envMap(c.Env)
		for k, v := range req.Env {
			env[k] = v
		}
		req.Env = env
		if err := checkEnv(req.Env); err != nil {
			return nil, err
		}
	}
	def := m.cfg.Defaults
	if spec.MemMiB > 0 {
		def.MemoryMiB = spec.MemMiB
	}
	l := withDefaults(req.Limits, def)
	if err := checkLimits(l, m.cfg.Max); err != nil {
		return nil, err
	}
	network, err := m.networkFor(req.Network, spec.Kind, false, false, "")
	if err != nil {
		return nil, err
	}
	sb := m.newSandbox(spec.Kind, l, req.Labels, req.Env)
	sb.rec.Image = spec.Name
	sb.rec.Network = network
	if c := spec.Config; c != nil {
		sb.rec.Workdir = c.Workdir
		sb.rec.User, _, _ = strings.Cut(c.User, ":")
	}
	// Held until it runs: a delete of the new id waits for the create.
	sb.op.Lock()
	defer sb.op.Unlock()
	if err := m.reserve([]*sandbox{sb}, l); err != nil {
		return nil, err
	}
	err = m.attachNetwork(sb)
	if err == nil {
		err = m.launch(ctx, sb, func() ([]string, error) { return m.runArgs(sb, spec, l) }, &m.boot)
	}
	if err != nil {
		m.remove(sb)
		return nil, fmt.Errorf("create a sandbox from image %s: %w", spec.Name, err)
	}
	return sb, nil
}

// checkEnv bounds the environment given at create.
func checkEnv(env map[string]string) error {
	if len(env) > maxLabels {
		return fmt.Errorf("%w: %d env entries; at most %d", ErrInvalid, len(env), maxLabels)
	}
	for k, v := range env {
		if k == "" || len(k) > maxLabelBytes || strings.ContainsAny(k, "=\x00") || len(v) > 4096 || strings.ContainsRune(v, 0) {
			return fmt.Errorf("%w: env %.40q: names are 1 to %d bytes without '=' or NUL, values at most 4096 bytes without NUL", ErrInvalid, k, maxLabelBytes)
		}
	}
	return nil
}

func checkLabels(labels map[string]string) error {
	if len(labels) > maxLabels {
		return fmt.Errorf("%w: %d labels; at most %d", ErrInvalid, len(labels), maxLabels)
	}
	for k, v := range labels {
		if k == "" || len(k) > maxLabelBytes || len(v) > maxLabelBytes {
			return fmt.Errorf("%w: label %.40q: keys must be 1 to %d bytes and values at most %d", ErrInvalid, k, maxLabelBytes, maxLabelBytes)
		}
	}
	return nil
}

// newSandbox returns a sandbox record in state creating.
func (m *Manager) newSandbox(kind string, l Limits, labels, env map[string]string) *sandbox {
	id := newID("sb-")
	sb := &sandbox{id: id, dir: filepath.Join(m.cfg.StateDir, "sandboxes", id), pidfd: -1, done: closedChan(), ports: map[int]*forward{}}
	sb.ctl = control.NewClient(filepath.Join(sb.dir, fileAPISock))
	sb.rec = record{Kind: kind, Env: cloneMap(env), Sandbox: Sandbox{
		ID: id, State: StateCreating, Limits: l, Labels: cloneMap(labels), CreatedAt: time.Now().UTC(),
	}}
	return sb
}

// reserve admits new sandboxes of limits l under the host limits and
// records them, all or none.
func (m *Manager) reserve(sbs []*sandbox, l Limits) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if err := m.checkHost(len(sbs), l); err != nil {
		return err
	}
	for _, sb := range sbs {
		if _, dup := m.sandboxes[sb.id]; dup {
			return fmt.Errorf("sandbox id %s is taken; try again", sb.id)
		}
	}
	for _, sb := range sbs {
		uid, err := m.freeJailUIDLocked()
		if err != nil {
			for _, o := range sbs {
				if m.sandboxes[o.id] == o {
					delete(m.sandboxes, o.id)
					m.db.delete(bucketSandboxes, o.id)
				}
			}
			return err
		}
		sb.rec.JailUID = uid
		m.sandboxes[sb.id] = sb
		m.save(sb)
	}
	return nil
}

// freeJailUIDLocked is the lowest uid from Config.JailUIDBase that no
// sandbox holds (0 with JailUIDBase 0). The caller holds m.mu.
func (m *Manager) freeJailUIDLocked() (int, error) {
	base := m.cfg.JailUIDBase
	if base <= 0 {
		return 0, nil
	}
	used := make(map[int]bool, len(m.sandboxes))
	for _, o := range m.sandboxes {
		used[o.rec.JailUID] = true
	}
	for u := base; u < base+JailUIDSlots; u++ {
		if !used[u] {
			return u, nil
		}
	}
	return 0, fmt.Errorf("%w: all %d jail uids from %d are taken; delete sandboxes", ErrLimit, JailUIDSlots, base)
}

// launch makes sb's directory, starts its vmm with the arguments args
// returns, supervises it and waits until it runs (a Linux guest: until its
// agent answers).
func (m *Manager) launch(ctx context.Context, sb *sandbox, args func() ([]string, error), h *histogram) error {
	start := time.Now()
	for _, d := range []string{dirWork, dirOutbox} {
		if err := os.MkdirAll(filepath.Join(sb.dir, d), 0o700); err != nil {
			return fmt.Errorf("sandbox directory: %w", err)
		}
	}
	a, err := args()
	if err != nil {
		return err
	}
	m.mu.Lock()
	l := sb.rec.Limits
	m.mu.Unlock()
	cg, err := m.cgroupArgs(sb, l)
	if err != nil {
		return err
	}
	pid, pidfd, err := m.startVMM(sb, append(a, cg...))
	if err != nil {
		return err
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		syscallKill(pidfd)
		return ErrClosed
	}
	m.supervise(sb, pid, pidfd)
	m.save(sb)
	done := sb.done
	m.mu.Unlock()
	if err := m.waitRunning(ctx, sb, done); err != nil {
		return err
	}
	if sb.rec.Kind == KindLinux {
		// Running means exec works: a Linux sandbox is still creating
		// until its guest agent answers.
		if err := m.waitAgent(ctx, sb, done); err != nil {
			return err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.setState(sb, StateRunning, "") {
		return fmt.Errorf("the vmm exited as it started: %s", sb.rec.Reason)
	}
	h.observe(time.Since(start).Seconds())
	m.armTimeout(sb)
	return nil
}

// Delete stops a sandbox's vmm (if it runs) and removes the sandbox with
// its files. Its snapshots stay.
func (m *Manager) Delete(ctx context.Context, id string) error {
	sb, err := m.lookup(id)
	if err != nil {
		return err
	}
	sb.op.Lock()
	defer sb.op.Unlock()
	if _, err := m.lookup(id); err != nil {
		return err // deleted while we waited
	}
	m.remove(sb)
	return nil
}

// remove stops sb's vmm and deletes the sandbox; the caller holds sb.op or
// owns sb alone (a create that failed).
func (m *Manager) remove(sb *sandbox) {
	m.mu.Lock()
	sb.deleting = true
	if sb.timer != nil {
		sb.timer.Stop()
	}
	fwds := sb.takeForwards()
	m.mu.Unlock()
	for _, f := range fwds {
		f.close()
	}
	m.stopVMM(sb)
	m.removeCgroup(sb)
	m.detachNetwork(sb)
	if err := os.RemoveAll(sb.dir); err != nil {
		m.log.Warn("remove sandbox directory", "sandbox", sb.id, "err", err)
	}
	if err := m.db.delete(bucketSandboxes, sb.id); err != nil {
		m.log.Warn("remove sandbox record", "sandbox", sb.id, "err", err)
	}
	m.mu.Lock()
	delete(m.sandboxes, sb.id)
	m.mu.Unlock()
	// Its suspend snapshot, or a replaced template's it ran from, may be
	// needed by nothing now.
	m.reapSnapshots()
	m.log.Info("sandbox deleted", "sandbox", sb.id)
}

// Pause parks the sandbox's vCPUs.
func (m *Manager) Pause(ctx context.Context, id string) (Sandbox, error) {
	return m.control(ctx, id, StatePaused, "pause", func(ctx context.Context, c *control.Client) error { return c.Pause(ctx) })
}

// Resume lets a paused sandbox run again; a suspended one is restored
// from its snapshot.
func (m *Manager) Resume(ctx context.Context, id string) (Sandbox, error) {
	sb, err := m.lookup(id)
	if err != nil {
		return Sandbox{}, err
	}
	m.mu.Lock()
	suspended := sb.rec.State == StateSuspended
	m.mu.Unlock()
	if suspended {
		if err := m.wake(ctx, sb); err != nil {
			return Sandbox{}, err
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		return sb.view(), nil
	}
	return m.control(ctx, id, StateRunning, "resume", func(ctx context.Context, c *control.Client) error { return c.Resume(ctx) })
}

// control moves sandbox id to state to through call on its control socket.
func (m *Manager) control(ctx context.Context, id string, to State, action string, call func(context.Context, *control.Client) error) (Sandbox, error) {
	sb, err := m.lookup(id)
	if err != nil {
		return Sandbox{}, err
	}
	sb.op.Lock()
	defer sb.op.Unlock()
	m.mu.Lock()
	err = checkMove(id, sb.rec.State, to, action)
	m.mu.Unlock()
	if err != nil {
		return Sandbox{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, controlTimeout)
	defer cancel()
	if err := call(ctx, sb.ctl); err != nil {
		return Sandbox{}, controlError(id, action, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.setState(sb, to, "") {
		return sb.view(), fmt.Errorf("%w: sandbox %s became %s during %s", ErrWrongState, id, sb.rec.State, action)
	}
	return sb.view(), nil
}

// controlError turns the vmm's refusal (409: it stopped, or is not in the
// state we thought) into ErrWrongState.
func controlError(id, action string, err error) error {
	var ce *control.Error
	if errors.As(err, &ce) && ce.Status == http.StatusConflict {
		return fmt.Errorf("%w: sandbox %s: %s: %s", ErrWrongState, id, action, ce.Message)
	}
	return fmt.Errorf("sandbox %s: %s: %w", id, action, err)
}

// armTimeout starts sb's lifetime timer; the caller holds m.mu.
func (m *Manager) armTimeout(sb *sandbox) {
	l := sb.rec.Limits
	if l.TimeoutS <= 0 || !active(sb.rec.State) {
		return
	}
	if sb.rec.ExpiresAt.IsZero() {
		sb.rec.ExpiresAt = sb.rec.CreatedAt.Add(time.Duration(l.TimeoutS) * time.Second)
		m.save(sb)
	}
	if sb.timer != nil {
		sb.timer.Stop()
	}
	sb.timer = time.AfterFunc(max(time.Until(sb.rec.ExpiresAt), 0), func() { m.expire(sb) })
}

// expire ends a sandbox whose lifetime is over, snapshotting it first if
// its limits say so.
func (m *Manager) expire(sb *sandbox) {
	sb.op.Lock()
	defer sb.op.Unlock()
	m.mu.Lock()
	st, closed, deleting := sb.rec.State, m.closed, sb.deleting
	l := sb.rec.Limits
	m.mu.Unlock()
	if closed || deleting || !active(st) {
		return
	}
	reason := fmt.Sprintf("its lifetime of %d s ended", l.TimeoutS)
	if l.OnTimeout == OnTimeoutPause {
		m.log.Info("sandbox lifetime ended; pausing it to disk", "sandbox", sb.id)
		if err := m.suspendLocked(context.Background(), sb); err == nil {
			return
		} else {
			m.log.Error("pause to disk at the end of the lifetime; stopping it", "sandbox", sb.id, "err", err)
			reason += "; pausing it to disk failed: " + err.Error()
		}
	}
	if l.OnTimeout == OnTimeoutSnapshot {
		snap, err := m.snapshotLocked(context.Background(), sb, control.SnapshotFull, snapRole{})
		if err != nil {
			m.log.Error("snapshot at the end of the lifetime", "sandbox", sb.id, "err", err)
			reason += "; the snapshot failed: " + err.Error()
		} else {
			reason += "; snapshot " + snap.ID + " keeps it"
		}
	}
	m.mu.Lock()
	sb.stopReason = reason
	m.mu.Unlock()
	m.log.Info("sandbox lifetime ended", "sandbox", sb.id, "on_timeout", l.OnTimeout)
	m.stopVMM(sb)
}
