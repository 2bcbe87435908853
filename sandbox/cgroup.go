package sandbox

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/sietch-vm/sietch/internal/cgroups"
)

// Cgroup modes (Config.Cgroups).
const (
	CgroupsAuto = "auto" // a group per sandbox where the host allows it; without, a warning
	CgroupsOn   = "on"   // a group per sandbox, or sietchd does not start
	CgroupsOff  = "off"
)

// openCgroups finds where this sietchd's sandbox groups go: under
// Config.CgroupParent (default "sietch") and a name for the state
// directory, so that two sietchds on different state directories never
// share a group, below sietchd's own group in each hierarchy.
func (m *Manager) openCgroups() error {
	switch m.cfg.Cgroups {
	case "":
		m.cfg.Cgroups = CgroupsAuto
	case CgroupsAuto, CgroupsOn, CgroupsOff:
	default:
		return fmt.Errorf("sandbox manager: cgroups %q: want auto, on or off", m.cfg.Cgroups)
	}
	if m.cfg.Cgroups == CgroupsOff {
		return nil
	}
	parent := m.cfg.CgroupParent
	if parent == "" {
		parent = "sietch"
	}
	sum := sha256.Sum256([]byte(m.cfg.StateDir))
	l, err := cgroups.Probe(filepath.Join(parent, hex.EncodeToString(sum[:6])))
	if err == nil {
		// A group made and removed proves the host lets us.
		probe := l.Group("probe-" + newID(""))
		if err = probe.Create(cgroups.Limits{CPUPeriodUS: cgroups.CPUPeriodUS}); err == nil {
			err = probe.Remove()
		}
	}
	if err != nil {
		if m.cfg.Cgroups == CgroupsOn {
			return fmt.Errorf("sandbox manager: a cgroup per sandbox: %w", err)
		}
		m.log.Warn("sandboxes run without a cgroup of their own: no CPU, memory or pids limit beyond the vmm's, and their stats come from /proc", "err", err)
		return nil
	}
	m.cg = &l
	m.log.Info("a cgroup per sandbox", "version", l.Version(), "parents", strings.Join(l.ParentDirs(), ","))
	return nil
}

// cgroup is sb's group; nil when sandboxes run without.
func (m *Manager) cgroup(sb *sandbox) *cgroups.Group {
	if m.cg == nil {
		return nil
	}
	return m.cg.Group(sb.id)
}

// cgroupArgs makes sb's group with limits from l and returns the vmm
// flag that joins it.
func (m *Manager) cgroupArgs(sb *sandbox, l Limits) ([]string, error) {
	g := m.cgroup(sb)
	if g == nil {
		return nil, nil
	}
	if err := g.Create(cgroups.ForSandbox(l.CPUs, l.MemoryMiB)); err != nil {
		return nil, fmt.Errorf("sandbox %s: %w", sb.id, err)
	}
	return []string{"--cgroup", strings.Join(g.Dirs(), ",")}, nil
}

// removeCgroup removes sb's group, killing what is left in it: its vmm
// is gone, and device processes must not outlive it.
func (m *Manager) removeCgroup(sb *sandbox) {
	if g := m.cgroup(sb); g != nil {
		if err := g.Remove(); err != nil {
			m.log.Warn("remove the sandbox's cgroup", "sandbox", sb.id, "err", err)
		}
	}
}

// closeCgroups removes this sietchd's parent groups if no sandbox runs
// in them (rmdir refuses a group with children), and the common parent
// if no other sietchd uses it.
func (m *Manager) closeCgroups() {
	if m.cg == nil {
		return
	}
	for _, d := range m.cg.ParentDirs() {
		if os.Remove(d) == nil {
			os.Remove(filepath.Dir(d))
		}
	}
}

// collectCgroups removes groups no running sandbox owns (their vmm died
// while sietchd was down, or a create was cut short); at Open.
func (m *Manager) collectCgroups() {
	if m.cg == nil {
		return
	}
	m.mu.Lock()
	keep := map[string]bool{}
	for id, sb := range m.sandboxes {
		if active(sb.rec.State) {
			keep[id] = true
		}
	}
	m.mu.Unlock()
	for _, name := range m.cg.Children() {
		if !keep[name] {
			if err := m.cg.Group(name).Remove(); err != nil {
				m.log.Warn("remove a leftover cgroup", "group", name, "err", err)
			}
		}
	}
}
