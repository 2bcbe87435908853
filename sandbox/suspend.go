package sandbox

import (
	"context"
	"fmt"
	"time"

	"github.com/sietch-vm/sietch/wire/control"
)

// Suspend pauses a sandbox to disk: a full snapshot, then its vmm exits
// and its memory is freed. It stays suspended across sietchd restarts and
// host reboots; Resume, or any exec, file or port call, restores it under
// its id.
func (m *Manager) Suspend(ctx context.Context, id string) (Sandbox, error) {
	sb, err := m.lookup(id)
	if err != nil {
		return Sandbox{}, err
	}
	sb.op.Lock()
	defer sb.op.Unlock()
	if err := m.suspendLocked(ctx, sb); err != nil {
		return Sandbox{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return sb.view(), nil
}

// suspendLocked is Suspend for a caller holding sb.op.
func (m *Manager) suspendLocked(ctx context.Context, sb *sandbox) error {
	m.mu.Lock()
	err := checkMove(sb.id, sb.rec.State, StateSuspended, "be paused to disk")
	old := sb.rec.Suspended
	m.mu.Unlock()
	if err != nil {
		return err
	}
	snap, err := m.snapshotLocked(ctx, sb, control.SnapshotFull, snapRole{role: RoleSuspend})
	if err != nil {
		return fmt.Errorf("pause sandbox %s to disk: %w", sb.id, err)
	}
	m.mu.Lock()
	sb.suspendTo = snap.ID
	if sb.timer != nil {
		sb.timer.Stop()
	}
	m.mu.Unlock()
	m.stopVMM(sb)
	m.mu.Lock()
	st := sb.rec.State
	m.mu.Unlock()
	if st != StateSuspended {
		return fmt.Errorf("pause sandbox %s to disk: its vmm ended %s: %s", sb.id, st, sb.rec.Reason)
	}
	if old != "" && old != snap.ID {
		// The state it was resumed from is superseded; it goes unless a
		// diff still builds on it.
		m.reapSnapshots()
	}
	m.log.Info("sandbox suspended", "sandbox", sb.id, "snapshot", snap.ID, "bytes", snap.SizeBytes)
	return nil
}

// resumeLocked restores a suspended sandbox from its snapshot under its
// own id; the caller holds sb.op. Its lifetime, if it has one, starts
// again.
func (m *Manager) resumeLocked(ctx context.Context, sb *sandbox) error {
	m.mu.Lock()
	snap, ok := m.snapshots[sb.rec.Suspended]
	st, l := sb.rec.State, sb.rec.Limits
	if err := m.checkHost(1, l); err != nil {
		m.mu.Unlock()
		return err
	}
	m.mu.Unlock()
	if st != StateSuspended {
		return nil // resumed by the caller we waited for
	}
	if !ok {
		return fmt.Errorf("sandbox %s is suspended in snapshot %s, which is gone; remove the sandbox", sb.id, sb.rec.Suspended)
	}
	m.mu.Lock()
	sb.rec.ExpiresAt = time.Time{}
	if l.TimeoutS > 0 {
		sb.rec.ExpiresAt = time.Now().UTC().Add(time.Duration(l.TimeoutS) * time.Second)
	}
	m.mu.Unlock()
	err := m.attachNetwork(sb)
	if err == nil {
		err = m.launch(ctx, sb, func() ([]string, error) { return m.restoreArgs(sb, snap.Dir), nil }, &m.restore)
	}
	if err != nil {
		m.mu.Lock()
		sb.rec.Reason = "the last resume failed: " + err.Error()
		m.save(sb)
		m.mu.Unlock()
		return fmt.Errorf("resume sandbox %s from snapshot %s: %w", sb.id, snap.ID, err)
	}
	m.mu.Lock()
	m.reopenPortsLocked(sb)
	m.save(sb)
	m.mu.Unlock()
	m.log.Info("sandbox resumed from disk", "sandbox", sb.id, "snapshot", snap.ID)
	return nil
}

// wake resumes sb if it is suspended, for a call that needs it running.
func (m *Manager) wake(ctx context.Context, sb *sandbox) error {
	sb.op.Lock()
	defer sb.op.Unlock()
	if _, err := m.lookup(sb.id); err != nil {
		return err // deleted while we waited
	}
	return m.resumeLocked(ctx, sb)
}

// awake returns sandbox id, resumed first if it is suspended: exec, files
// and ports need it running.
func (m *Manager) awake(ctx context.Context, id string) (*sandbox, error) {
	sb, err := m.lookup(id)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	suspended := sb.rec.State == StateSuspended
	m.mu.Unlock()
	if suspended {
		if err := m.wake(ctx, sb); err != nil {
			return nil, err
		}
	}
	return sb, nil
}
