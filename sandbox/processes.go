package sandbox

import (
	"context"
	"fmt"
	"net"

	"github.com/sietch-vm/sietch/wire/agentproto"
)

// Processes in the guest are the agent's; the manager passes their
// descriptions and output events through unchanged.
type (
	Process     = agentproto.Process
	ExecEvent   = agentproto.ExecEvent
	ProcStarted = agentproto.Started
)

func (spec ExecSpec) agentRequest() agentproto.ExecRequest {
	req := agentproto.ExecRequest{Cmd: spec.Cmd, Args: spec.Args, Env: spec.Env, Cwd: spec.Cwd, TimeoutMS: int64(spec.TimeoutMS)}
	if spec.TTY != nil {
		req.TTY = &agentproto.TTYSize{Rows: spec.TTY.Rows, Cols: spec.TTY.Cols}
	}
	return req
}

func checkExec(spec ExecSpec) error {
	if spec.Cmd == "" {
		return fmt.Errorf("%w: cmd is empty; give the program to run", ErrInvalid)
	}
	if spec.TimeoutMS < 0 {
		return fmt.Errorf("%w: timeout_ms %d is negative", ErrInvalid, spec.TimeoutMS)
	}
	if t := spec.TTY; t != nil && (t.Rows == 0 || t.Cols == 0 || t.Rows > 4096 || t.Cols > 4096) {
		return fmt.Errorf("%w: tty %dx%d: rows and cols must be 1 to 4096", ErrInvalid, t.Rows, t.Cols)
	}
	return nil
}

// ExecStream starts spec in sandbox id with its stdio on an exec stream
// (wire/execstream) and returns the stream from the guest, its Started
// frame first; the caller relays it and closes it. A command that cannot
// start is an error here, before any stream.
func (m *Manager) ExecStream(ctx context.Context, id string, spec ExecSpec) (net.Conn, error) {
	if err := checkExec(spec); err != nil {
		return nil, err
	}
	if spec.Stdin != nil {
		return nil, fmt.Errorf("%w: an exec stream carries stdin itself; give no stdin in the request", ErrInvalid)
	}
	sb, ac, err := m.runningAgent(ctx, id, "exec")
	if err != nil {
		return nil, err
	}
	conn, err := ac.ExecStream(ctx, spec.agentRequest())
	return conn, m.agentDone(sb, err)
}

// StartProcess starts spec in sandbox id without waiting for it: it runs
// in a session of its own, its output is kept (the last 256 KiB) for
// ProcessOutput, and it stays listed until DeleteProcess, through
// snapshots, pauses and restores.
func (m *Manager) StartProcess(ctx context.Context, id string, spec ExecSpec) (ProcStarted, error) {
	if err := checkExec(spec); err != nil {
		return ProcStarted{}, err
	}
	if spec.Stdin != nil {
		return ProcStarted{}, fmt.Errorf("%w: a detached process takes no stdin", ErrInvalid)
	}
	sb, ac, err := m.runningAgent(ctx, id, "start a process")
	if err != nil {
		return ProcStarted{}, err
	}
	st, err := ac.StartDetached(ctx, spec.agentRequest())
	return st, m.agentDone(sb, err)
}

// Processes lists sandbox id's processes: every running exec, and the
// detached ones kept after they exited.
func (m *Manager) Processes(ctx context.Context, id string) ([]Process, error) {
	sb, ac, err := m.runningAgent(ctx, id, "list processes")
	if err != nil {
		return nil, err
	}
	ps, err := ac.Processes(ctx)
	return ps, m.agentDone(sb, err)
}

// Process describes process pid (the exec id) of sandbox id.
func (m *Manager) Process(ctx context.Context, id, pid string) (Process, error) {
	sb, ac, err := m.runningAgent(ctx, id, "describe a process")
	if err != nil {
		return Process{}, err
	}
	p, err := ac.Process(ctx, pid)
	return p, m.agentDone(sb, err)
}

// WaitProcess waits for process pid to exit and describes it.
func (m *Manager) WaitProcess(ctx context.Context, id, pid string) (Process, error) {
	sb, ac, err := m.runningAgent(ctx, id, "wait for a process")
	if err != nil {
		return Process{}, err
	}
	p, err := ac.WaitProcess(ctx, pid)
	return p, m.agentDone(sb, err)
}

// SignalProcess sends sig to process pid's process group.
func (m *Manager) SignalProcess(ctx context.Context, id, pid, sig string) error {
	sb, ac, err := m.runningAgent(ctx, id, "signal a process")
	if err != nil {
		return err
	}
	return m.agentDone(sb, ac.Signal(ctx, pid, sig))
}

// DeleteProcess kills process pid if it runs and forgets it.
func (m *Manager) DeleteProcess(ctx context.Context, id, pid string) error {
	sb, ac, err := m.runningAgent(ctx, id, "delete a process")
	if err != nil {
		return err
	}
	return m.agentDone(sb, ac.DeleteProcess(ctx, pid))
}

// ProcessOutput hands each event of a detached process's kept output to
// each, from byte offset on; with follow, until the process exits.
func (m *Manager) ProcessOutput(ctx context.Context, id, pid string, offset int64, follow bool, each func(ExecEvent) error) error {
	if offset < 0 {
		return fmt.Errorf("%w: offset %d is negative", ErrInvalid, offset)
	}
	sb, ac, err := m.runningAgent(ctx, id, "read a process's output")
	if err != nil {
		return err
	}
	return m.agentDone(sb, ac.Output(ctx, pid, offset, follow, each))
}
