package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// dependentsLocked names what needs snapshot id: diffs built on it, the
// template it backs (unless forTemplate: the template itself asks),
// sandboxes running from it (a lazy restore reads its memory file for as
// long as the vmm runs) and sandboxes suspended in it. The caller holds
// m.mu.
func (m *Manager) dependentsLocked(id string, forTemplate bool) []string {
	var deps []string
	for _, s := range m.snapshots {
		if s.Base == id {
			deps = append(deps, "snapshot "+s.ID+" (a diff on it)")
		}
	}
	if !forTemplate {
		for _, t := range m.templates {
			if t.rec.Snapshot == id {
				deps = append(deps, "template "+t.rec.Name)
			}
		}
	}
	for _, sb := range m.sandboxes {
		switch {
		case (sb.rec.Snapshot == id || sb.rec.Suspended == id) && active(sb.rec.State):
			deps = append(deps, "sandbox "+sb.id+" (runs from it)")
		case sb.rec.Suspended == id && sb.rec.State == StateSuspended:
			deps = append(deps, "sandbox "+sb.id+" (suspended in it)")
		}
	}
	slices.Sort(deps)
	return deps
}

// snapshotView is the API's view of s; the caller holds m.mu.
func (m *Manager) snapshotView(s *snapRecord) Snapshot {
	v := s.Snapshot
	v.Dependents = m.dependentsLocked(s.ID, false)
	return v
}

// AllSnapshots lists every snapshot, oldest first, with what depends on it.
func (m *Manager) AllSnapshots() []Snapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Snapshot, 0, len(m.snapshots))
	for _, s := range m.snapshots {
		out = append(out, m.snapshotView(s))
	}
	slices.SortFunc(out, func(a, b Snapshot) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// GetSnapshot returns one snapshot.
func (m *Manager) GetSnapshot(id string) (Snapshot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.snapshots[id]
	if !ok {
		return Snapshot{}, fmt.Errorf("%w: no snapshot %q (sietch snapshots lists them)", ErrNotFound, id)
	}
	return m.snapshotView(s), nil
}

// DeleteSnapshot removes a snapshot and its files; refused while
// anything depends on it.
func (m *Manager) DeleteSnapshot(id string) error {
	m.mu.Lock()
	if _, ok := m.snapshots[id]; !ok {
		m.mu.Unlock()
		return fmt.Errorf("%w: no snapshot %q (sietch snapshots lists them)", ErrNotFound, id)
	}
	if deps := m.dependentsLocked(id, false); len(deps) > 0 {
		m.mu.Unlock()
		return fmt.Errorf("%w: snapshot %s is needed by %s; remove those first", ErrInUse, id, strings.Join(deps, ", "))
	}
	s := m.forgetSnapshotLocked(id)
	m.mu.Unlock()
	if err := m.removeSnapshotFiles(s); err != nil {
		return err
	}
	m.reapSnapshots() // a base of it sietchd kept only for it
	return nil
}

// removeSnapshot deletes snapshot id, whatever depends on it.
func (m *Manager) removeSnapshot(id string) error {
	m.mu.Lock()
	s := m.forgetSnapshotLocked(id)
	m.mu.Unlock()
	return m.removeSnapshotFiles(s)
}

// forgetSnapshotLocked drops snapshot id from the tables, and as any
// sandbox's base for a diff; nil if there is none. The caller holds m.mu.
func (m *Manager) forgetSnapshotLocked(id string) *snapRecord {
	s, ok := m.snapshots[id]
	if !ok {
		return nil
	}
	delete(m.snapshots, id)
	for _, sb := range m.sandboxes {
		if sb.rec.LastSnapshot == id {
			sb.rec.LastSnapshot = ""
			m.save(sb)
		}
	}
	return s
}

// removeSnapshotFiles deletes a forgotten snapshot's record and files.
func (m *Manager) removeSnapshotFiles(s *snapRecord) error {
	if s == nil {
		return nil
	}
	if err := m.db.delete(bucketSnapshots, s.ID); err != nil {
		return err
	}
	if err := os.RemoveAll(s.Dir); err != nil {
		return fmt.Errorf("remove snapshot %s's files: %w", s.ID, err)
	}
	m.log.Info("snapshot deleted", "snapshot", s.ID)
	return nil
}

// collectGarbage removes what a crash left under the state directory:
// snapshot and sandbox directories no record names (a snapshot or create
// cut short). It runs at Open, before anything new is made.
func (m *Manager) collectGarbage() {
	m.mu.Lock()
	keep := map[string]bool{}
	for _, s := range m.snapshots {
		keep[filepath.Clean(s.Dir)] = true
	}
	for _, sb := range m.sandboxes {
		keep[filepath.Clean(sb.dir)] = true
	}
	m.mu.Unlock()
	for _, sub := range []string{"snapshots", "sandboxes"} {
		dir := filepath.Join(m.cfg.StateDir, sub)
		ents, err := os.ReadDir(dir)
		if err != nil {
			m.log.Warn("list the state directory", "dir", dir, "err", err)
			continue
		}
		for _, e := range ents {
			p := filepath.Join(dir, e.Name())
			if keep[p] {
				continue
			}
			if err := os.RemoveAll(p); err != nil {
				m.log.Warn("remove a leftover from before a crash", "path", p, "err", err)
			} else {
				m.log.Info("removed a leftover from before a crash", "path", p)
			}
		}
	}
}
