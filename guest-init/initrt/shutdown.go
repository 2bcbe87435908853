package initrt

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Grace periods of a shutdown: programs get TermGrace to exit after SIGTERM,
// then KillGrace to vanish after SIGKILL.
const (
	TermGrace = 3 * time.Second
	KillGrace = 2 * time.Second
)

// Shutdowner stops the guest cleanly: every process ends, data reaches the
// disks, file systems are left clean, then the kernel powers off or reboots.
type Shutdowner struct {
	Mounter  *Mounter
	ReadOnly []string // ReadOnlyOnShutdown(cfg)
	Logger   *slog.Logger
	// Reboot is reboot(2); tests replace it. It returns only on failure.
	Reboot func(cmd int) error

	mu sync.Mutex // one shutdown at a time; a second request waits for it
}

// Shutdown ends every process (SIGTERM, TermGrace, SIGKILL), syncs,
// remounts the root layers read-only, and powers off (or restarts). It
// returns only if the kernel refused, with the reason.
func (s *Shutdowner) Shutdown(poweroff bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	what, cmd := "power off", unix.LINUX_REBOOT_CMD_POWER_OFF
	if !poweroff {
		what, cmd = "reboot", unix.LINUX_REBOOT_CMD_RESTART
	}
	s.Logger.Info("shutting down", "then", what)
	start := time.Now()
	if left := KillAll(TermGrace, KillGrace); left > 0 {
		s.Logger.Warn("processes survived SIGKILL (stuck in the kernel?)", "count", left)
	}
	killed := time.Now()
	unix.Sync()
	if s.Mounter != nil {
		if err := s.Mounter.RemountReadOnly(s.ReadOnly); err != nil {
			s.Logger.Warn("file systems stay writable (data is synced)", "err", err)
		}
	}
	unix.Sync()
	s.Logger.Debug("shutdown steps", "kill", killed.Sub(start).Round(time.Millisecond),
		"sync+remount", time.Since(killed).Round(time.Millisecond))
	reboot := s.Reboot
	if reboot == nil {
		reboot = unix.Reboot
	}
	err := reboot(cmd)
	return fmt.Errorf("%s: reboot(2): %w", what, err)
}

// KillAll sends SIGTERM to every process but PID 1, waits up to term for
// them to exit, then SIGKILLs what is left and waits up to kill. PID 1 must
// reap them meanwhile (its reaper does). It returns how many user processes
// remain.
func KillAll(term, kill time.Duration) int {
	pids := userProcesses()
	if len(pids) == 0 {
		return 0
	}
	unix.Kill(-1, unix.SIGTERM)
	if pids = waitGone(pids, term); len(pids) == 0 {
		return 0
	}
	unix.Kill(-1, unix.SIGKILL)
	return len(waitGone(pids, kill))
}

// waitGone polls pids with kill(pid, 0) until none exists or d passes.
func waitGone(pids []int, d time.Duration) []int {
	deadline := time.Now().Add(d)
	for {
		alive := pids[:0]
		for _, p := range pids {
			if err := unix.Kill(p, 0); !errors.Is(err, unix.ESRCH) {
				alive = append(alive, p)
			}
		}
		pids = alive
		if len(pids) == 0 || time.Now().After(deadline) {
			return pids
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// userProcesses lists the live processes other than PID 1 and kernel
// threads (kill(-1) reaches kernel threads too, which ignore it, so
// kill(-1, 0) cannot tell when user space is empty).
func userProcesses() []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 1 {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // gone meanwhile
		}
		if st, ok := ParseStat(b); ok && !st.KernelThread && st.State != 'Z' {
			pids = append(pids, pid)
		}
	}
	return pids
}

// ProcStat is what shutdown needs from /proc/PID/stat.
type ProcStat struct {
	State        byte
	PPID         int
	KernelThread bool
}

// pfKthread is PF_KTHREAD (include/linux/sched.h).
const pfKthread = 0x00200000

// ParseStat reads /proc/PID/stat (proc(5)): the command name is in
// parentheses and may itself hold spaces and ')', so fields are counted
// from the last ')'.
func ParseStat(b []byte) (ProcStat, bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return ProcStat{}, false
	}
	f := bytes.Fields(b[i+1:])
	// state(3) ppid(4) pgrp session tty_nr tpgid flags(9)
	if len(f) < 7 || len(f[0]) != 1 {
		return ProcStat{}, false
	}
	ppid, err := strconv.Atoi(string(f[1]))
	if err != nil {
		return ProcStat{}, false
	}
	flags, err := strconv.ParseUint(string(f[6]), 10, 64)
	if err != nil {
		return ProcStat{}, false
	}
	return ProcStat{State: f[0][0], PPID: ppid, KernelThread: flags&pfKthread != 0}, true
}
