package vmm

import (
	"strings"
	"sync"
	"testing"

	"github.com/sietch-vm/sietch/wire/control"
)

func TestStateTable(t *testing.T) {
	m := &Machine{}
	m.cond = sync.NewCond(&m.mu)
	walk := []vmState{stateHeld, stateCreated, stateRunning, statePaused, stateRunning, stateStopped, stateClosed}
	for _, to := range walk {
		if err := m.moveLocked(to); err != nil {
			t.Fatalf("%s → %s refused: %v", m.state, to, err)
		}
		if m.halt.Load() != to.halts() {
			t.Errorf("in %s halt is %v", to, m.halt.Load())
		}
	}
	for _, tc := range []struct{ from, to vmState }{
		{stateCreated, statePaused}, {stateRunning, stateCreated}, {stateStopped, stateRunning},
		{stateClosed, stateStopped}, {statePaused, stateHeld}, {stateRunning, stateClosed},
	} {
		m.state = tc.from
		if err := m.moveLocked(tc.to); err == nil || !strings.Contains(err.Error(), tc.from.String()) {
			t.Errorf("%s → %s: %v; want a refusal naming %s", tc.from, tc.to, err, tc.from)
		}
	}
	for s, want := range map[vmState]string{stateCreated: control.StateCreated, stateHeld: control.StateCreated,
		stateRunning: control.StateRunning, statePaused: control.StatePaused, stateStopped: control.StateStopped, stateClosed: control.StateStopped} {
		if s.wire() != want {
			t.Errorf("%s reports %q, want %q", s, s.wire(), want)
		}
	}
	for s := range vmTransitions {
		if s.String() == "" || strings.HasPrefix(s.String(), "vmState(") {
			t.Errorf("state %d has no name", s)
		}
	}
}
