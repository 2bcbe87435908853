package sandbox

import (
	"fmt"
)

// What a sandbox does when its lifetime (Limits.TimeoutS) ends.
const (
	OnTimeoutStop     = "stop"
	OnTimeoutSnapshot = "snapshot" // take a full snapshot, then stop
	OnTimeoutPause    = "pause"    // suspend to disk; the next call that needs it resumes it
)

// Bounds no configuration lifts: the vmm takes memory in 2 MiB steps.
const (
	minMemoryMiB = 16
	maxCPUs      = 64
)

// withDefaults fills l's zero fields from d.
func withDefaults(l, d Limits) Limits {
	if l.CPUs == 0 {
		l.CPUs = d.CPUs
	}
	if l.MemoryMiB == 0 {
		l.MemoryMiB = d.MemoryMiB
	}
	if l.DiskMiB == 0 {
		l.DiskMiB = d.DiskMiB
	}
	if l.TimeoutS == 0 {
		l.TimeoutS = d.TimeoutS
	}
	if l.OnTimeout == "" {
		l.OnTimeout = d.OnTimeout
	}
	return l
}

// checkLimits refuses limits that are malformed (ErrInvalid) or over a
// per-sandbox ceiling (ErrLimit), naming the limit.
func checkLimits(l, max Limits) error {
	switch {
	case l.CPUs < 1 || l.CPUs > maxCPUs:
		return fmt.Errorf("%w: limits.cpus %d: want 1 to %d", ErrInvalid, l.CPUs, maxCPUs)
	case l.MemoryMiB < minMemoryMiB || l.MemoryMiB%2 != 0:
		return fmt.Errorf("%w: limits.memory_mib %d: want an even number of MiB, at least %d", ErrInvalid, l.MemoryMiB, minMemoryMiB)
	case l.DiskMiB < 0:
		return fmt.Errorf("%w: limits.disk_mib %d is negative", ErrInvalid, l.DiskMiB)
	case l.TimeoutS < 0:
		return fmt.Errorf("%w: limits.timeout_s %d is negative", ErrInvalid, l.TimeoutS)
	case l.OnTimeout != OnTimeoutStop && l.OnTimeout != OnTimeoutSnapshot && l.OnTimeout != OnTimeoutPause:
		return fmt.Errorf("%w: limits.on_timeout %q: want %q, %q or %q", ErrInvalid, l.OnTimeout, OnTimeoutStop, OnTimeoutSnapshot, OnTimeoutPause)
	}
	over := func(name string, v, limit int) error {
		if limit > 0 && v > limit {
			return fmt.Errorf("%w: %s %d asked, the per-sandbox limit is %d", ErrLimit, name, v, limit)
		}
		return nil
	}
	if err := over("cpus", l.CPUs, max.CPUs); err != nil {
		return err
	}
	if err := over("memory_mib", l.MemoryMiB, max.MemoryMiB); err != nil {
		return err
	}
	if err := over("disk_mib", l.DiskMiB, max.DiskMiB); err != nil {
		return err
	}
	return over("timeout_s", l.TimeoutS, max.TimeoutS)
}

// checkHost refuses n more sandboxes of limits l when the active ones
// already use too much of the host; the caller holds m.mu.
func (m *Manager) checkHost(n int, l Limits) error {
	count, mem, cpus := 0, 0, 0
	for _, sb := range m.sandboxes {
		if active(sb.rec.State) {
			count++
			mem += sb.rec.Limits.MemoryMiB
			cpus += sb.rec.Limits.CPUs
		}
	}
	h := m.cfg.Host
	switch {
	case h.Sandboxes > 0 && count+n > h.Sandboxes:
		return fmt.Errorf("%w: %d sandboxes running, the host limit is %d", ErrLimit, count, h.Sandboxes)
	case h.MemoryMiB > 0 && mem+n*l.MemoryMiB > h.MemoryMiB:
		return fmt.Errorf("%w: %d MiB of memory in use and %d MiB asked, the host limit is %d MiB", ErrLimit, mem, n*l.MemoryMiB, h.MemoryMiB)
	case h.CPUs > 0 && cpus+n*l.CPUs > h.CPUs:
		return fmt.Errorf("%w: %d vCPUs in use and %d asked, the host limit is %d", ErrLimit, cpus, n*l.CPUs, h.CPUs)
	}
	return nil
}
