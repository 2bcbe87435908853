package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/sietch-vm/sietch/wire/control"
)

// maxFork bounds one fork request.
const maxFork = 64

// Snapshot checkpoints a running or paused sandbox into
// <state>/snapshots/<id>; the sandbox goes on in the state it was in. kind
// is control.SnapshotFull (or empty) or control.SnapshotDiff.
func (m *Manager) Snapshot(ctx context.Context, id, kind string) (Snapshot, error) {
	sb, err := m.lookup(id)
	if err != nil {
		return Snapshot{}, err
	}
	sb.op.Lock()
	defer sb.op.Unlock()
	return m.snapshotLocked(ctx, sb, kind, snapRole{})
}

// snapRole is what a snapshot sietchd takes for itself is for.
type snapRole struct {
	role     string // RoleTemplate or RoleSuspend; empty: a user's
	template string
}

// snapshotLocked is Snapshot for a caller holding sb.op.
func (m *Manager) snapshotLocked(ctx context.Context, sb *sandbox, kind string, role snapRole) (Snapshot, error) {
	switch kind {
	case "":
		kind = control.SnapshotFull
	case control.SnapshotFull, control.SnapshotDiff:
	default:
		return Snapshot{}, fmt.Errorf("%w: snapshot kind %q: want %q or %q", ErrInvalid, kind, control.SnapshotFull, control.SnapshotDiff)
	}
	m.mu.Lock()
	prev := sb.rec.State
	base := sb.rec.LastSnapshot
	err := checkMove(sb.id, prev, StateSnapshotting, "be snapshotted")
	if err == nil && kind == control.SnapshotDiff && base == "" {
		err = fmt.Errorf("%w: sandbox %s has no earlier snapshot for a diff to build on; take a full one first", ErrWrongState, sb.id)
	}
	if err == nil {
		sb.rec.Prev = prev
		m.setState(sb, StateSnapshotting, "")
	}
	m.mu.Unlock()
	if err != nil {
		return Snapshot{}, err
	}
	snap := &snapRecord{
		Snapshot: Snapshot{ID: newID("snap-"), SandboxID: sb.id, Kind: kind, CreatedAt: time.Now().UTC(),
			Role: role.role, Template: role.template},
		Kind: sb.rec.Kind,
	}
	if kind == control.SnapshotDiff {
		snap.Base = base
	}
	snap.Dir = filepath.Join(m.cfg.StateDir, "snapshots", snap.ID)
	// An idle agent stream kept open would be part of the snapshot, and
	// every restored copy would hold (and then drop) it: close them first.
	m.agentFor(sb).CloseIdle()
	cctx, cancel := context.WithTimeout(ctx, controlTimeout)
	err = sb.ctl.Snapshot(cctx, control.SnapshotRequest{Dir: snap.Dir, Kind: kind})
	cancel()
	if err == nil {
		err = collectSnapshot(sb, snap.Dir)
	} else {
		os.RemoveAll(filepath.Join(sb.dir, dirOutbox, snap.ID))
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	sb.rec.Prev = ""
	if sb.rec.State == StateSnapshotting {
		m.setState(sb, prev, "")
	}
	if err != nil {
		os.RemoveAll(snap.Dir)
		return Snapshot{}, controlError(sb.id, "snapshot", err)
	}
	snap.Image, snap.Limits, snap.Env, snap.Net = sb.rec.Image, sb.rec.Limits, cloneMap(sb.rec.Env), sb.rec.Network
	snap.Limits.TimeoutS, snap.Limits.OnTimeout = 0, ""
	snap.SizeBytes = diskUsage(snap.Dir)
	if err := m.db.put(bucketSnapshots, snap.ID, snap); err != nil {
		os.RemoveAll(snap.Dir)
		return Snapshot{}, err
	}
	m.snapshots[snap.ID] = snap
	if role.role == RoleSuspend {
		// Claimed in the same breath it is known: reapSnapshots must not
		// take it for a superseded one before the vmm has stopped.
		sb.suspendTo = snap.ID
	}
	if role.role != RoleTemplate {
		// A template's sandboxes build their diffs on it; the build
		// sandbox itself goes.
		sb.rec.LastSnapshot = snap.ID
	}
	m.save(sb)
	m.log.Info("snapshot taken", "sandbox", sb.id, "snapshot", snap.ID, "kind", kind, "bytes", snap.SizeBytes)
	return snap.Snapshot, nil
}

// diskUsage is the space the files under dir take (sparse files count
// only their allocated blocks).
func diskUsage(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				n += st.Blocks * 512
			} else {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// Snapshots lists the snapshots taken of sandbox id, oldest first. A
// deleted sandbox's snapshots stay usable by id but are listed under no
// sandbox.
func (m *Manager) Snapshots(id string) ([]Snapshot, error) {
	if _, err := m.lookup(id); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	out := []Snapshot{}
	for _, s := range m.snapshots {
		if s.SandboxID == id {
			out = append(out, m.snapshotView(s))
		}
	}
	slices.SortFunc(out, func(a, b Snapshot) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}

// Fork starts count new sandboxes from snapID, one of sandbox id's
// snapshots, or from a full snapshot taken now when snapID is empty.
func (m *Manager) Fork(ctx context.Context, id, snapID string, count int) ([]Sandbox, error) {
	if count < 1 || count > maxFork {
		return nil, fmt.Errorf("%w: count %d: want 1 to %d", ErrInvalid, count, maxFork)
	}
	sb, err := m.lookup(id)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	labels := cloneMap(sb.rec.Labels)
	network := specOf(sb.rec.Network)
	if snapID != "" {
		if s, ok := m.snapshots[snapID]; !ok || s.SandboxID != id {
			m.mu.Unlock()
			return nil, fmt.Errorf("%w: sandbox %s has no snapshot %q (its snapshots are listed with it)", ErrNotFound, id, snapID)
		}
	}
	m.mu.Unlock()
	if snapID == "" {
		snap, err := m.Snapshot(ctx, id, control.SnapshotFull)
		if err != nil {
			return nil, err
		}
		snapID = snap.ID
	}
	return m.restoreN(ctx, snapID, count, restoreOpts{labels: labels, network: network})
}

// restoreOpts are what a restore takes from its request.
type restoreOpts struct {
	limits   Limits            // cpus, memory and disk must match the snapshot's; timeout is the new sandbox's
	labels   map[string]string // of every new sandbox
	env      map[string]string // nil: the snapshot's
	template string            // created from this template
	network  *NetworkSpec      // nil: sietchd's default
}

// restoreN starts n sandboxes from snapshot snapID, all or none.
func (m *Manager) restoreN(ctx context.Context, snapID string, n int, o restoreOpts) ([]Sandbox, error) {
	req := o.limits
	m.mu.Lock()
	snap, ok := m.snapshots[snapID]
	m.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("%w: no snapshot %q", ErrNotFound, snapID)
	}
	if _, err := os.Stat(snap.Dir); err != nil {
		return nil, fmt.Errorf("%w: snapshot %s: its files are gone: %v", ErrNotFound, snapID, err)
	}
	l := snap.Limits
	if (req.CPUs != 0 && req.CPUs != l.CPUs) || (req.MemoryMiB != 0 && req.MemoryMiB != l.MemoryMiB) || (req.DiskMiB != 0 && req.DiskMiB != l.DiskMiB) {
		return nil, fmt.Errorf("%w: a sandbox from snapshot %s has its cpus (%d), memory (%d MiB) and disk (%d MiB); leave those limits out", ErrInvalid, snapID, l.CPUs, l.MemoryMiB, l.DiskMiB)
	}
	l.TimeoutS, l.OnTimeout = req.TimeoutS, req.OnTimeout
	l = withDefaults(l, m.cfg.Defaults)
	if err := checkLimits(l, m.cfg.Max); err != nil {
		return nil, err
	}
	from := "snapshot " + snapID
	if o.template != "" {
		from = "template " + o.template
	}
	network, err := m.networkFor(o.network, snap.Kind, true, snap.Net != nil, from)
	if err != nil {
		return nil, err
	}
	sbs := make([]*sandbox, n)
	for i := range sbs {
		env := o.env
		if env == nil {
			env = snap.Env
		}
		sbs[i] = m.newSandbox(snap.Kind, l, o.labels, env)
		sbs[i].rec.Image, sbs[i].rec.Snapshot, sbs[i].rec.LastSnapshot = snap.Image, snap.ID, snap.ID
		sbs[i].rec.Template = o.template
		sbs[i].rec.Network = network
	}
	// Held until they run: a delete of a new id waits for the create.
	for _, sb := range sbs {
		sb.op.Lock()
		defer sb.op.Unlock()
	}
	if err := m.reserve(sbs, l); err != nil {
		return nil, err
	}
	var errs []error
	for _, sb := range sbs {
		if err := m.attachNetwork(sb); err != nil {
			errs = append(errs, err)
			break
		}
		if err := m.launch(ctx, sb, func() ([]string, error) { return m.restoreArgs(sb, snap.Dir), nil }, &m.restore); err != nil {
			errs = append(errs, fmt.Errorf("restore snapshot %s as sandbox %s: %w", snapID, sb.id, err))
			break
		}
	}
	if len(errs) > 0 {
		for _, sb := range sbs {
			m.remove(sb)
		}
		return nil, errors.Join(errs...)
	}
	out := make([]Sandbox, n)
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, sb := range sbs {
		out[i] = sb.view()
	}
	return out, nil
}
