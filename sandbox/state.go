package sandbox

import (
	"fmt"
	"slices"
)

// transitions is every allowed state change, in one place (containerd's
// init_state.go keeps its process states the same way). Delete is allowed
// from any state and is not a state change; stopped and failed are final.
var transitions = map[State][]State{
	StateCreating:     {StateRunning, StateStopped, StateFailed},
	StateRunning:      {StatePaused, StateSnapshotting, StateSuspended, StateStopped, StateFailed},
	StatePaused:       {StateRunning, StateSnapshotting, StateSuspended, StateStopped, StateFailed},
	StateSnapshotting: {StateRunning, StatePaused, StateStopped, StateFailed},
	// Suspended: its state is in a snapshot and no vmm runs; resuming
	// restores it under the same id.
	StateSuspended: {StateRunning},
	StateStopped:   nil,
	StateFailed:    nil,
}

// States lists every state, in lifecycle order.
var States = []State{
	StateCreating, StateRunning, StatePaused,
	StateSnapshotting, StateSuspended, StateStopped, StateFailed,
}

// canMove reports whether a sandbox in state from may go to state to.
func canMove(from, to State) bool {
	return slices.Contains(transitions[from], to)
}

// checkMove returns ErrWrongState, saying why, unless from → to is allowed.
func checkMove(id string, from, to State, action string) error {
	if canMove(from, to) {
		return nil
	}
	return fmt.Errorf("%w: sandbox %s is %s; it cannot %s", ErrWrongState, id, from, action)
}

// active reports whether a sandbox in state s has (or is about to have) a
// vmm process, and so counts against the host limits.
func active(s State) bool {
	switch s {
	case StateCreating, StateRunning, StatePaused, StateSnapshotting:
		return true
	}
	return false
}
