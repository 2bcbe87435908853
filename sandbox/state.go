package sandbox

import (
	"fmt"
	"slices"

	"github.com/sietch-vm/sietch/api/model"
)

// transitions is every allowed state change, in one place (containerd's
// init_state.go keeps its process states the same way). Delete is allowed
// from any state and is not a state change; stopped and failed are final.
var transitions = map[model.State][]model.State{
	model.StateCreating:     {model.StateRunning, model.StateStopped, model.StateFailed},
	model.StateRunning:      {model.StatePaused, model.StateSnapshotting, model.StateSuspended, model.StateStopped, model.StateFailed},
	model.StatePaused:       {model.StateRunning, model.StateSnapshotting, model.StateSuspended, model.StateStopped, model.StateFailed},
	model.StateSnapshotting: {model.StateRunning, model.StatePaused, model.StateStopped, model.StateFailed},
	// Suspended: its state is in a snapshot and no vmm runs; resuming
	// restores it under the same id.
	model.StateSuspended: {model.StateRunning},
	model.StateStopped:   nil,
	model.StateFailed:    nil,
}

// States lists every state, in lifecycle order.
var States = []model.State{
	model.StateCreating, model.StateRunning, model.StatePaused,
	model.StateSnapshotting, model.StateSuspended, model.StateStopped, model.StateFailed,
}

// canMove reports whether a sandbox in state from may go to state to.
func canMove(from, to model.State) bool {
	return slices.Contains(transitions[from], to)
}

// checkMove returns ErrWrongState, saying why, unless from → to is allowed.
func checkMove(id string, from, to model.State, action string) error {
	if canMove(from, to) {
		return nil
	}
	return fmt.Errorf("%w: sandbox %s is %s; it cannot %s", ErrWrongState, id, from, action)
}

// active reports whether a sandbox in state s has (or is about to have) a
// vmm process, and so counts against the host limits.
func active(s model.State) bool {
	switch s {
	case model.StateCreating, model.StateRunning, model.StatePaused, model.StateSnapshotting:
		return true
	}
	return false
}
