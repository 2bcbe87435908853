package sandbox

import (
	"context"
	"fmt"

	"github.com/sietch-vm/sietch/wire/agentproto"
)

// Code contexts live in the guest agent; the manager passes their types
// through unchanged, so they are the agent protocol's.
type (
	ContextSpec = agentproto.ContextRequest
	Context     = agentproto.Context
	RunSpec     = agentproto.RunRequest
	RunEvent    = agentproto.RunEvent
	RunError    = agentproto.RunError
	RunEnd      = agentproto.RunEnd
)

// DefaultContext is the python context every sandbox has: started on its
// first run, or ahead by the template the sandbox came from.
const DefaultContext = agentproto.DefaultContext

// NewContext starts a code context in sandbox id and returns it once its
// interpreter is ready.
func (m *Manager) NewContext(ctx context.Context, id string, spec ContextSpec) (Context, error) {
	switch spec.Language {
	case "", agentproto.LanguagePython, agentproto.LanguageBash, agentproto.LanguageNode:
	default:
		return Context{}, fmt.Errorf("%w: language %q: want python, bash or node", ErrInvalid, spec.Language)
	}
	sb, ac, err := m.runningAgent(ctx, id, "start a code context")
	if err != nil {
		return Context{}, err
	}
	c, err := ac.NewContext(ctx, spec)
	return c, m.agentDone(sb, err)
}

// Contexts lists sandbox id's code contexts.
func (m *Manager) Contexts(ctx context.Context, id string) ([]Context, error) {
	sb, ac, err := m.runningAgent(ctx, id, "list code contexts")
	if err != nil {
		return nil, err
	}
	cs, err := ac.Contexts(ctx)
	return cs, m.agentDone(sb, err)
}

// Run runs code in context cid of sandbox id, calling each for every event
// as the guest sends it, and returns the end event. Runs in one context
// take turns; cancelling ctx interrupts the run.
func (m *Manager) Run(ctx context.Context, id, cid string, spec RunSpec, each func(RunEvent) error) (RunEnd, error) {
	if spec.TimeoutMS < 0 {
		return RunEnd{}, fmt.Errorf("%w: timeout_ms %d is negative", ErrInvalid, spec.TimeoutMS)
	}
	sb, ac, err := m.runningAgent(ctx, id, "run code")
	if err != nil {
		return RunEnd{}, err
	}
	end, err := ac.Run(ctx, cid, spec, each)
	return end, m.agentDone(sb, err)
}

// Interrupt sends SIGINT to the code running in context cid; the context
// lives on.
func (m *Manager) Interrupt(ctx context.Context, id, cid string) error {
	sb, ac, err := m.runningAgent(ctx, id, "interrupt a run")
	if err != nil {
		return err
	}
	return m.agentDone(sb, ac.Interrupt(ctx, cid))
}

// RestartContext starts context cid's interpreter anew; its state is lost.
func (m *Manager) RestartContext(ctx context.Context, id, cid string) (Context, error) {
	sb, ac, err := m.runningAgent(ctx, id, "restart a code context")
	if err != nil {
		return Context{}, err
	}
	c, err := ac.Restart(ctx, cid)
	return c, m.agentDone(sb, err)
}

// DeleteContext ends context cid and its interpreter.
func (m *Manager) DeleteContext(ctx context.Context, id, cid string) error {
	sb, ac, err := m.runningAgent(ctx, id, "delete a code context")
	if err != nil {
		return err
	}
	return m.agentDone(sb, ac.DeleteContext(ctx, cid))
}
