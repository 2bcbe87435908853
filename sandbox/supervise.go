package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sietch-vm/sietch/wire/control"
)

// exitInfo is how a vmm ended. known is false when it was not our child
// (started by an earlier sietchd), so its status could not be read.
type exitInfo struct {
	known  bool
	code   int
	signal syscall.Signal
}

// supervise watches sb's vmm through its pidfd until it exits (then
// records how) or the manager closes (then leaves it running). It owns
// pidfd. The caller holds m.mu and has checked that m is not closed.
func (m *Manager) supervise(sb *sandbox, pid, pidfd int) {
	sb.rec.VMMPID = pid
	sb.pidfd = pidfd
	done := make(chan struct{})
	sb.done = done
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		fds := []unix.PollFd{
			{Fd: int32(pidfd), Events: unix.POLLIN},
			{Fd: int32(m.wakeR.Fd()), Events: unix.POLLIN},
		}
		for {
			_, err := unix.Poll(fds, -1)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil || fds[1].Revents != 0 {
				if err != nil {
					m.log.Error("supervise vmm: poll failed; the sandbox is no longer supervised", "sandbox", sb.id, "err", err)
				}
				m.mu.Lock()
				sb.pidfd = -1
				m.mu.Unlock()
				unix.Close(pidfd)
				return
			}
			if fds[0].Revents != 0 {
				break
			}
		}
		ex := reap(pid)
		m.exited(sb, ex, pidfd, done)
	}()
}

// reap collects the exit status of pid, which has exited.
func reap(pid int) exitInfo {
	var ws syscall.WaitStatus
	for {
		_, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return exitInfo{} // not our child: another sietchd started it
		}
		break
	}
	if ws.Signaled() {
		return exitInfo{known: true, code: -1, signal: ws.Signal()}
	}
	return exitInfo{known: true, code: ws.ExitStatus()}
}

// exited records that sb's vmm ended and releases what it held.
func (m *Manager) exited(sb *sandbox, ex exitInfo, pidfd int, done chan struct{}) {
	// Before done closes: a resume waiting for it makes the group anew.
	m.removeCgroup(sb)
	m.mu.Lock()
	unix.Close(pidfd)
	sb.pidfd = -1
	sb.rec.VMMPID = 0
	fwds := sb.takeForwards()
	if sb.timer != nil {
		sb.timer.Stop()
	}
	if !sb.deleting {
		st, reason := describeExit(sb.dir, ex)
		if sb.stopReason != "" && st == StateStopped {
			reason = sb.stopReason
		}
		if sb.suspendTo != "" && st == StateStopped {
			st, reason = StateSuspended, ""
			// Ports stay in the record: the resume opens them again.
			sb.rec.Suspended, sb.rec.Agent = sb.suspendTo, false
		}
		sb.suspendTo = ""
		if !m.setState(sb, st, reason) {
			m.save(sb)
		}
		m.log.Info("vmm exited", "sandbox", sb.id, "state", st, "reason", reason)
	}
	releaseFiles(sb.dir)
	close(done)
	m.mu.Unlock()
	m.agentFor(sb).CloseIdle() // dead with the vmm's vsock device
	for _, f := range fwds {
		f.close()
	}
}

// releaseFiles removes what a sandbox's vmm needed only while it ran:
// sockets and disk copies. The console log stays for GET /console.
func releaseFiles(dir string) {
	socks, _ := filepath.Glob(filepath.Join(dir, fileVsock+"*"))
	for _, p := range append(socks, filepath.Join(dir, fileAPISock)) {
		os.Remove(p)
	}
	os.RemoveAll(filepath.Join(dir, dirWork))
	os.Remove(filepath.Join(dir, fileOverlay))
}

// describeExit turns a vmm's exit into the sandbox's final state and a
// reason a person can act on (the exit statuses are `vmm run`'s).
func describeExit(dir string, ex exitInfo) (State, string) {
	logLine := lastLine(tailFile(filepath.Join(dir, fileVMMLog), 2048))
	var reason string
	switch {
	case !ex.known:
		switch {
		case strings.Contains(logLine, "VM stopped"):
			return StateStopped, "stopped"
		case strings.Contains(logLine, "guest crashed"), strings.Contains(logLine, "vmm run:"), strings.Contains(logLine, "vmm restore:"):
			reason = logLine
		default:
			reason = "the vmm exited; its exit status is unknown (it was started before sietchd restarted)"
			if logLine != "" {
				reason += "; its log ends: " + logLine
			}
		}
	case ex.signal == unix.SIGSYS:
		// Its seccomp policy (jail.VMMPolicy) caught a system call the
		// vmm never makes: a bug, or a guest that took over the vmm.
		reason = "the vmm was killed by SIGSYS (seccomp: forbidden system call; a vmm bug or an escape attempt, see the host's audit log)"
	case ex.signal != 0:
		reason = fmt.Sprintf("the vmm was killed by signal %s", unix.SignalName(ex.signal))
	case ex.code == 0:
		return StateStopped, "the guest powered off"
	case ex.code == 5:
		return StateStopped, "stopped"
	case ex.code == 3:
		reason = "the guest rebooted (a sandbox does not reboot; create a new one)"
	case ex.code == 4:
		reason = "the guest crashed: " + logLine
	case ex.code == 2:
		reason = "the vmm refused its command line (a sietchd bug): " + logLine
	default:
		reason = fmt.Sprintf("the vmm failed (exit status %d): %s", ex.code, logLine)
	}
	if tail := consoleTail(dir); tail != "" {
		reason += "; console ends: " + tail
	}
	return StateFailed, reason
}

// consoleTail is the last few lines of a sandbox's console, on one line.
func consoleTail(dir string) string {
	b := bytes.TrimSpace(tailFile(filepath.Join(dir, fileConsole), 512))
	lines := strings.Split(string(b), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return strings.TrimSpace(strings.Join(lines, " | "))
}

// tailFile returns at most the last n bytes of path.
func tailFile(path string, n int64) []byte {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil
	}
	off := max(fi.Size()-n, 0)
	b := make([]byte, fi.Size()-off)
	k, _ := f.ReadAt(b, off)
	return b[:k]
}

func lastLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

// reattach takes up a sandbox found in the state database at Open: one
// whose vmm still runs (the pid is alive and answers on its control
// socket with that pid) is supervised again, the others are failed.
func (m *Manager) reattach(r record) {
	sb := &sandbox{id: r.ID, dir: filepath.Join(m.cfg.StateDir, "sandboxes", r.ID), rec: r, pidfd: -1, ports: map[int]*forward{}}
	sb.ctl = control.NewClient(filepath.Join(sb.dir, fileAPISock))
	sb.done = closedChan()
	m.mu.Lock()
	m.sandboxes[r.ID] = sb
	m.mu.Unlock()
	if !active(r.State) {
		return
	}
	fail := func(reason string) {
		m.mu.Lock()
		defer m.mu.Unlock()
		sb.rec.VMMPID, sb.rec.Ports = 0, nil
		if !m.setState(sb, StateFailed, reason) {
			m.save(sb)
		}
		releaseFiles(sb.dir)
		m.removeCgroup(sb)
	}
	pidfd, err := unix.PidfdOpen(r.VMMPID, 0)
	if r.VMMPID <= 0 || err != nil {
		fail("the vmm exited while sietchd was down")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), agentTimeout)
	info, err := sb.ctl.Info(ctx)
	cancel()
	if err != nil || info.VMMPID != r.VMMPID {
		unix.Close(pidfd)
		fail(fmt.Sprintf("the vmm exited while sietchd was down (pid %d no longer answers on %s)", r.VMMPID, filepath.Join(sb.dir, fileAPISock)))
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	switch info.State {
	case control.StatePaused:
		sb.rec.State = StatePaused
	default:
		sb.rec.State = StateRunning // a snapshot or start cut short by the restart is over
	}
	sb.rec.Prev = ""
	m.supervise(sb, r.VMMPID, pidfd)
	m.reopenPortsLocked(sb)
	m.armTimeout(sb)
	m.save(sb)
	if r.Kind == KindLinux && !r.Agent {
		m.probeAgent(sb)
	}
	m.log.Info("re-attached to vmm", "sandbox", sb.id, "pid", r.VMMPID, "state", sb.rec.State)
}

// kill ends sb's vmm with SIGKILL; the caller holds m.mu.
func (sb *sandbox) kill() {
	if sb.pidfd >= 0 {
		unix.PidfdSendSignal(sb.pidfd, unix.SIGKILL, nil, 0)
	}
}

// stopVMM stops sb's vmm: PUT /stop, and SIGKILL if it is still there
// after stopTimeout. It returns once the vmm has exited (or the manager
// closed).
func (m *Manager) stopVMM(sb *sandbox) {
	m.mu.Lock()
	done := sb.done
	m.mu.Unlock()
	select {
	case <-done:
		return
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	if err := sb.ctl.Stop(ctx); err != nil {
		m.log.Debug("stop through the control socket", "sandbox", sb.id, "err", err)
	}
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	m.mu.Lock()
	sb.kill()
	m.mu.Unlock()
	select {
	case <-done:
	case <-time.After(stopTimeout):
		m.log.Error("vmm did not exit after SIGKILL", "sandbox", sb.id)
	}
}

func closedChan() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}
