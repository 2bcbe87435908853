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

	"github.com/sietch-vm/sietch/api/model"
	"github.com/sietch-vm/sietch/wire/control"
)

// maxFork bounds one fork request.
const maxFork = 64

// Snapshot checkpoints a running or paused sandbox into
// <state>/snapshots/<id>; the sandbox goes on in the state it was in.
func (m *Manager) Snapshot(ctx context.Context, id string, req model.SnapshotRequest) (model.Snapshot, error) {
	sb, err := m.lookup(id)
	if err != nil {
		return model.Snapshot{}, err
	}
	sb.op.Lock()
	defer sb.op.Unlock()
	return m.snapshotLocked(ctx, sb, req, snapRole{})
}

// snapRole is what a snapshot sietchd takes for itself is for.
type snapRole struct {
	role     string // model.RoleTemplate or model.RoleSuspend; empty: a user's
	template string
}

// snapshotLocked is Snapshot for a caller holding sb.op.
func (m *Manager) snapshotLocked(ctx context.Context, sb *sandbox, req model.SnapshotRequest, role snapRole) (model.Snapshot, error) {
	switch req.Kind {
	case "":
		req.Kind = control.SnapshotFull
	case control.SnapshotFull, control.SnapshotDiff:
	default:
		return model.Snapshot{}, fmt.Errorf("%w: snapshot kind %q: want %q or %q", ErrInvalid, req.Kind, control.SnapshotFull, control.SnapshotDiff)
	}
	m.mu.Lock()
	prev := sb.rec.State
	base := sb.rec.LastSnapshot
	err := checkMove(sb.id, prev, model.StateSnapshotting, "be snapshotted")
	if err == nil && req.Kind == control.SnapshotDiff && base == "" {
		err = fmt.Errorf("%w: sandbox %s has no earlier snapshot for a diff to build on; take a full one first", ErrWrongState, sb.id)
	}
	if err == nil {
		sb.rec.Prev = prev
		m.setState(sb, model.StateSnapshotting, "")
	}
	m.mu.Unlock()
	if err != nil {
		return model.Snapshot{}, err
	}
	snap := &snapRecord{
		Snapshot: model.Snapshot{ID: newID("snap-"), SandboxID: sb.id, Kind: req.Kind, CreatedAt: time.Now().UTC(),
			Role: role.role, Template: role.template},
		Kind: sb.rec.Kind,
	}
	if req.Kind == control.SnapshotDiff {
		snap.Base = base
	}
	snap.Dir = filepath.Join(m.cfg.StateDir, "snapshots", snap.ID)
	cctx, cancel := context.WithTimeout(ctx, controlTimeout)
	err = sb.ctl.Snapshot(cctx, control.SnapshotRequest{Dir: snap.Dir, Kind: req.Kind})
	cancel()
	m.mu.Lock()
	defer m.mu.Unlock()
	sb.rec.Prev = ""
	if sb.rec.State == model.StateSnapshotting {
		m.setState(sb, prev, "")
	}
	if err != nil {
		os.RemoveAll(snap.Dir)
		return model.Snapshot{}, controlError(sb.id, "snapshot", err)
	}
	snap.Image, snap.Limits, snap.Env = sb.rec.Image, sb.rec.Limits, cloneMap(sb.rec.Env)
	snap.Limits.TimeoutS, snap.Limits.OnTimeout = 0, ""
	snap.SizeBytes = diskUsage(snap.Dir)
	if err := m.db.put(bucketSnapshots, snap.ID, snap); err != nil {
		os.RemoveAll(snap.Dir)
		return model.Snapshot{}, err
	}
	m.snapshots[snap.ID] = snap
	if role.role != model.RoleTemplate {
		// A template's sandboxes build their diffs on it; the build
		// sandbox itself goes.
		sb.rec.LastSnapshot = snap.ID
	}
	m.save(sb)
	m.log.Info("snapshot taken", "sandbox", sb.id, "snapshot", snap.ID, "kind", req.Kind, "bytes", snap.SizeBytes)
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
func (m *Manager) Snapshots(id string) ([]model.Snapshot, error) {
	if _, err := m.lookup(id); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	out := []model.Snapshot{}
	for _, s := range m.snapshots {
		if s.SandboxID == id {
			out = append(out, m.snapshotView(s))
		}
	}
	slices.SortFunc(out, func(a, b model.Snapshot) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}

// Fork starts req.Count new sandboxes from one of sandbox id's snapshots,
// or from a full snapshot taken now when req.Snapshot is empty.
func (m *Manager) Fork(ctx context.Context, id string, req model.ForkRequest) ([]model.Sandbox, error) {
	if req.Count < 1 || req.Count > maxFork {
		return nil, fmt.Errorf("%w: count %d: want 1 to %d", ErrInvalid, req.Count, maxFork)
	}
	sb, err := m.lookup(id)
	if err != nil {
		return nil, err
	}
	snapID := req.Snapshot
	m.mu.Lock()
	labels := cloneMap(sb.rec.Labels)
	if snapID != "" {
		if s, ok := m.snapshots[snapID]; !ok || s.SandboxID != id {
			m.mu.Unlock()
			return nil, fmt.Errorf("%w: sandbox %s has no snapshot %q (GET /v1/sandboxes/%s/snapshots lists them)", ErrNotFound, id, snapID, id)
		}
	}
	m.mu.Unlock()
	if snapID == "" {
		snap, err := m.Snapshot(ctx, id, model.SnapshotRequest{Kind: control.SnapshotFull})
		if err != nil {
			return nil, err
		}
		snapID = snap.ID
	}
	return m.restoreN(ctx, snapID, req.Count, restoreOpts{labels: labels})
}

// restoreOpts are what a restore takes from its request.
type restoreOpts struct {
	limits   model.Limits      // cpus, memory and disk must match the snapshot's; timeout is the new sandbox's
	labels   map[string]string // of every new sandbox
	env      map[string]string // nil: the snapshot's
	template string            // created from this template
}

// restoreN starts n sandboxes from snapshot snapID, all or none.
func (m *Manager) restoreN(ctx context.Context, snapID string, n int, o restoreOpts) ([]model.Sandbox, error) {
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
	sbs := make([]*sandbox, n)
	for i := range sbs {
		env := o.env
		if env == nil {
			env = snap.Env
		}
		sbs[i] = m.newSandbox(snap.Kind, l, o.labels, env)
		sbs[i].rec.Image, sbs[i].rec.Snapshot, sbs[i].rec.LastSnapshot = snap.Image, snap.ID, snap.ID
		sbs[i].rec.Template = o.template
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
	out := make([]model.Sandbox, n)
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, sb := range sbs {
		out[i] = sb.view()
	}
	return out, nil
}
