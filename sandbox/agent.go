package sandbox

import (
	"github.com/sietch-vm/sietch/wire/agentproto"

	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// agentFor returns the client of sb's guest agent, made on first use and
// kept with the sandbox so that its streams are reused. Every dial gives
// up after agentTimeout, with ErrAgentUnavailable: an agent that is not up
// yet answers nothing, and the caller must hear so rather than wait.
func (m *Manager) agentFor(sb *sandbox) *agentproto.Client {
	sb.agentOnce.Do(func() {
		var dial func(ctx context.Context) (net.Conn, error)
		if m.cfg.AgentDial != nil {
			dial = m.cfg.AgentDial(sb.id)
		} else {
			dial = agentproto.DialUDS(filepath.Join(sb.dir, fileVsock), agentproto.Port)
		}
		sb.agent = agentproto.NewClient(func(ctx context.Context) (net.Conn, error) {
			dctx, cancel := context.WithTimeout(ctx, agentTimeout)
			defer cancel()
			for delay := 25 * time.Millisecond; ; delay *= 2 {
				c, err := dial(dctx)
				if err == nil {
					return c, nil
				}
				// A running sandbox's agent that refuses a connection is
				// most likely a guest still taking the vsock transport
				// reset of its restore: try again for a while (nothing
				// reached the guest). A create's wait for the agent
				// retries on its own.
				m.mu.Lock()
				running := sb.rec.State == StateRunning
				m.mu.Unlock()
				if !running || !errors.Is(err, agentproto.ErrRefused) || delay > 800*time.Millisecond {
					return nil, fmt.Errorf("%w: %v", ErrAgentUnavailable, err)
				}
				select {
				case <-dctx.Done():
					return nil, fmt.Errorf("%w: %v", ErrAgentUnavailable, err)
				case <-time.After(delay):
				}
			}
		})
	})
	return sb.agent
}

// runningAgent returns the agent of sandbox id, which must be running
// (a suspended one is resumed first).
func (m *Manager) runningAgent(ctx context.Context, id, action string) (*sandbox, *agentproto.Client, error) {
	sb, err := m.awake(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	m.mu.Lock()
	st := sb.rec.State
	m.mu.Unlock()
	if st != StateRunning {
		return nil, nil, fmt.Errorf("%w: sandbox %s is %s; it must be running to %s", ErrWrongState, id, st, action)
	}
	return sb, m.agentFor(sb), nil
}

// agentDone records whether the agent answered and turns its errors into
// the manager's.
func (m *Manager) agentDone(sb *sandbox, err error) error {
	// A transport error (*url.Error) means no reply at all: the stream was
	// refused or dropped before one, as a guest whose vsock transport is
	// resetting after a restore does. Worth a retry, like a failed dial.
	var ue *url.Error
	reachable := !errors.Is(err, ErrAgentUnavailable) && !errors.As(err, &ue)
	m.mu.Lock()
	if sb.rec.Agent != reachable {
		sb.rec.Agent = reachable
		m.save(sb)
	}
	m.mu.Unlock()
	if err == nil {
		return nil
	}
	if !reachable {
		return fmt.Errorf("%w: the guest agent of sandbox %s does not answer (still booting?); retry in a few seconds: %v", ErrAgentUnavailable, sb.id, err)
	}
	var ae *agentproto.Error
	if errors.As(err, &ae) {
		switch {
		case ae.Status == http.StatusNotFound:
			return fmt.Errorf("%w: %s", ErrNotFound, ae.Message)
		case ae.Status == http.StatusConflict:
			return fmt.Errorf("%w: the guest agent: %s", ErrConflict, ae.Message)
		case ae.Status == http.StatusTooManyRequests:
			return fmt.Errorf("%w: the guest agent: %s", ErrLimit, ae.Message)
		case ae.Status >= 400 && ae.Status < 500:
			return fmt.Errorf("%w: the guest agent: %s", ErrInvalid, ae.Message)
		}
	}
	return fmt.Errorf("sandbox %s: %w", sb.id, err)
}

// Exec runs a command in the sandbox, copying its output to stdout and
// stderr as it comes.
func (m *Manager) Exec(ctx context.Context, id string, req ExecSpec, stdout, stderr io.Writer) (ExecExit, error) {
	if err := checkExec(req); err != nil {
		return ExecExit{}, err
	}
	if req.TTY != nil {
		return ExecExit{}, fmt.Errorf("%w: a terminal needs an exec stream (Upgrade: sietch-exec.v1) or a detached process", ErrInvalid)
	}
	var stdin io.Reader
	if req.Stdin != nil {
		stdin = bytes.NewReader(req.Stdin)
	}
	sb, ac, err := m.runningAgent(ctx, id, "exec")
	if err != nil {
		return ExecExit{}, err
	}
	res, err := ac.Exec(ctx, req.agentRequest(), stdin, stdout, stderr)
	if err := m.agentDone(sb, err); err != nil {
		return ExecExit{}, err
	}
	return ExecExit{Code: res.ExitCode, Signal: res.Signal, TimedOut: res.TimedOut}, nil
}

// Upload writes r to path in the sandbox (mode 0: keep the old file's, or 0644).
func (m *Manager) Upload(ctx context.Context, id, path string, mode os.FileMode, r io.Reader) error {
	sb, ac, err := m.runningAgent(ctx, id, "upload files")
	if err != nil {
		return err
	}
	return m.agentDone(sb, ac.Upload(ctx, path, mode, r))
}

// Stat returns the mode of the regular file at path in the sandbox, so
// that a download can announce it before the bytes.
func (m *Manager) Stat(ctx context.Context, id, path string) (os.FileMode, error) {
	sb, ac, err := m.runningAgent(ctx, id, "download files")
	if err != nil {
		return 0, err
	}
	fi, err := ac.Stat(ctx, path)
	if err := m.agentDone(sb, err); err != nil {
		return 0, err
	}
	if fi.Type != "file" {
		return 0, fmt.Errorf("%w: %s in sandbox %s is a %s, not a file", ErrInvalid, path, id, fi.Type)
	}
	return fi.Mode, nil
}

// Download copies the file at path in the sandbox to w.
func (m *Manager) Download(ctx context.Context, id, path string, w io.Writer) error {
	sb, ac, err := m.runningAgent(ctx, id, "download files")
	if err != nil {
		return err
	}
	_, err = ac.Download(ctx, path, w)
	return m.agentDone(sb, err)
}

// clockTolerance is how close to the host's a sandbox's clock is brought
// before it is running, where the probe can tell (SyncClock).
const clockTolerance = 20 * time.Millisecond

// syncClock corrects the guest's clock after the identity's absolute step,
// which is off by however long the guest took to read that request
// (seconds, on a restored guest whose kernel is emulated and busy). A
// guest that cannot be corrected still runs, with a warning: its clock is
// only as wrong as the identity left it.
func (m *Manager) syncClock(ctx context.Context, sb *sandbox, ac *agentproto.Client, step time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	s, err := ac.SyncClock(ctx, clockTolerance)
	var ae *agentproto.Error
	switch {
	case errors.As(err, &ae) && ae.Status == http.StatusNotFound:
		m.log.Warn("guest agent predates clock correction; its clock may be off by the identity call's trip; rebuild the template", "sandbox", sb.id)
	case err != nil:
		m.log.Warn("guest clock not corrected", "sandbox", sb.id, "err", err)
	default:
		m.log.Debug("guest identity set", "sandbox", sb.id, "clock_step", step, "clock_offset", s.Offset, "clock_bound", s.Bound, "clock_steps", s.Steps)
	}
}

// waitAgent gives a new or restored Linux sandbox's agent its identity
// (hostname, the host's clock, fresh entropy, env, labels) until that
// answers, then records that the agent is up. It gives up when the vmm
// exits, ctx ends or the boot timeout passes. A restored guest answers the
// first try; a cold boot takes seconds to minutes where guest kernel mode
// is emulated.
func (m *Manager) waitAgent(ctx context.Context, sb *sandbox, done <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.BootTimeout)
	defer cancel()
	ac := m.agentFor(sb)
	m.mu.Lock()
	id := agentproto.Identity{SandboxID: sb.id, Hostname: sb.id, Env: cloneMap(sb.rec.Env), Labels: cloneMap(sb.rec.Labels), Workdir: sb.rec.Workdir, User: sb.rec.User}
	if sb.rec.Snapshot != "" {
		// Restored: the guest still has its snapshot's address.
		id.Network = netIdentity(sb.rec.Network)
	}
	m.mu.Unlock()
	if id.Labels == nil {
		id.Labels = map[string]string{}
	}
	delay := time.Millisecond
	// A restored guest that is busy catching up (its kernel emulated) can
	// take longer than agentTimeout to answer; each try that times out
	// gives the next one twice as long.
	try := agentTimeout
	for {
		id.Entropy = make([]byte, 32)
		rand.Read(id.Entropy)
		hctx, hcancel := context.WithTimeout(ctx, try)
		res, err := ac.SetIdentityNow(hctx, id)
		if errors.Is(hctx.Err(), context.DeadlineExceeded) {
			try = min(2*try, 16*time.Second)
		}
		hcancel()
		if err == nil {
			m.syncClock(ctx, sb, ac, time.Duration(res.ClockStepNS))
			m.mu.Lock()
			sb.rec.Agent = true
			m.save(sb)
			m.mu.Unlock()
			return nil
		}
		m.log.Debug("guest identity not set yet", "sandbox", sb.id, "err", err)
		var ae *agentproto.Error
		if errors.As(err, &ae) {
			// The agent answered and refused: no retry will help.
			return fmt.Errorf("the guest agent refused the sandbox's identity: %w", err)
		}
		select {
		case <-done:
			m.mu.Lock()
			reason := sb.rec.Reason
			m.mu.Unlock()
			return fmt.Errorf("the vmm exited before the guest agent answered: %s", reason)
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				msg := fmt.Sprintf("the guest agent did not answer within %v (sietchd --boot-timeout); last try: %v", m.cfg.BootTimeout, err)
				if tail := consoleTail(sb.dir); tail != "" {
					msg += "; console ends: " + tail
				}
				return errors.New(msg)
			}
			return ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, 250*time.Millisecond)
	}
}

// probeAgent asks a re-attached sandbox's agent for its health until it answers,
// so that Sandbox.Agent says when exec will work. The caller holds m.mu.
func (m *Manager) probeAgent(sb *sandbox) {
	if m.closed {
		return
	}
	done := sb.done
	ac := m.agentFor(sb)
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		for {
			ctx, cancel := context.WithTimeout(context.Background(), agentTimeout)
			_, err := ac.Health(ctx)
			cancel()
			if err == nil {
				m.mu.Lock()
				if !sb.deleting && !sb.rec.Agent {
					sb.rec.Agent = true
					m.save(sb)
				}
				m.mu.Unlock()
				return
			}
			select {
			case <-done:
				return
			case <-m.quit:
				return
			case <-time.After(time.Second):
			}
		}
	}()
}
