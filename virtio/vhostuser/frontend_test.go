package vhostuser

import (
	"slices"
	"strings"
	"testing"
)

// scriptedBackend acknowledges every request but refuse (REPLY_ACK status
// 1) and records what it was sent, until the front-end hangs up.
func scriptedBackend(t *testing.T, refuse Request) (*Frontend, <-chan []Request) {
	t.Helper()
	fc, bc := socketPair(t)
	got := make(chan []Request, 1)
	go func() {
		var reqs []Request
		defer func() { got <- reqs }()
		for {
			h, _, fds, err := ReadMessage(bc, MaxFDs)
			if err != nil {
				return
			}
			closeFDs(fds)
			reqs = append(reqs, h.Request)
			if h.Flags&FlagNeedReply == 0 {
				continue
			}
			status := uint64(0)
			if h.Request == refuse {
				status = 1
			}
			if err := WriteMessage(bc, Header{Request: h.Request, Flags: FlagVersion | FlagReply}, marshalU64(status), nil); err != nil {
				return
			}
		}
	}()
	f := NewFrontend(fc)
	if err := f.SetProtocolFeatures(ProtocolReplyAck); err != nil {
		t.Fatal(err)
	}
	return f, got
}

// SetupVring stops at the first refused message: the ring is not enabled
// half-configured, and the error names the step.
func TestSetupVringStopsAtFirstRefusal(t *testing.T) {
	kick, call := newEventFD(t), newEventFD(t)
	setup := VringSetup{Size: 8, Addr: ringAddr(), Kick: kick.Fd(), Call: call.Fd(), Enable: true}
	all := []Request{SetProtocolFeatures, SetVringNum, SetVringBase, SetVringAddr, SetVringKick, SetVringCall, SetVringEnable}
	for i, refused := range all[1:] {
		t.Run(refused.String(), func(t *testing.T) {
			f, got := scriptedBackend(t, refused)
			err := f.SetupVring(0, setup)
			if err == nil || !strings.Contains(err.Error(), "stopped at "+refused.String()) {
				t.Errorf("SetupVring = %v, want an error naming %s", err, refused)
			}
			f.Close()
			if sent, want := <-got, all[:i+2]; !slices.Equal(sent, want) {
				t.Errorf("back-end was sent %v, want %v and nothing after the refusal", sent, want)
			}
		})
	}
	t.Run("all accepted", func(t *testing.T) {
		f, got := scriptedBackend(t, 0)
		if err := f.SetupVring(0, setup); err != nil {
			t.Fatal(err)
		}
		f.Close()
		if sent := <-got; !slices.Equal(sent, all) {
			t.Errorf("back-end was sent %v, want %v", sent, all)
		}
	})
}
