package vmm

import (
	"fmt"
	"slices"

	"github.com/sietch-vm/sietch/wire/control"
)

// vmState is where a Machine is in its life; every change goes through
// move, against the table below (cloud-hypervisor's VmState has the same
// shape).
type vmState int

const (
	stateCreated vmState = iota // built; Run not called
	stateHeld                   // built and held by a snapshot: a Run now parks its vCPUs at once
	stateRunning                // vCPUs run the guest
	statePaused                 // vCPUs park (Pause waits until all have) outside KVM_RUN
	stateStopped                // vCPUs return; Run returns the Exit
	stateClosed                 // Close has begun: device process exits are expected
)

var stateNames = [...]string{"created", "held", "running", "paused", "stopped", "closed"}

func (s vmState) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("vmState(%d)", int(s))
}

// vmTransitions is every allowed change.
var vmTransitions = map[vmState][]vmState{
	stateCreated: {stateHeld, stateRunning, stateStopped, stateClosed},
	stateHeld:    {stateCreated, statePaused, stateStopped, stateClosed}, // released, or Run while held
	stateRunning: {statePaused, stateStopped},
	statePaused:  {stateRunning, stateStopped},
	stateStopped: {stateClosed},
	stateClosed:  nil,
}

// parks reports whether vCPUs must stay out of KVM_RUN in state s.
func (s vmState) parks() bool { return s == stateHeld || s == statePaused }

// halts reports whether vCPUs must leave KVM_RUN in state s (to park or
// to return).
func (s vmState) halts() bool { return s != stateCreated && s != stateRunning }

// ended reports whether the vCPUs are done for good.
func (s vmState) ended() bool { return s == stateStopped || s == stateClosed }

// wire is the state as the control protocol reports it.
func (s vmState) wire() string {
	switch s {
	case stateCreated, stateHeld:
		return control.StateCreated
	case stateRunning:
		return control.StateRunning
	case statePaused:
		return control.StatePaused
	}
	return control.StateStopped
}

// moveLocked changes the state if the table allows it and keeps halt, the
// vCPUs' lock-free view, in step; m.mu is held. A refused move is an
// error naming both states.
func (m *Machine) moveLocked(to vmState) error {
	if m.state == to {
		return nil
	}
	if !slices.Contains(vmTransitions[m.state], to) {
		return fmt.Errorf("the VM is %s; it cannot become %s", m.state, to)
	}
	m.state = to
	m.halt.Store(to.halts())
	m.cond.Broadcast()
	return nil
}
