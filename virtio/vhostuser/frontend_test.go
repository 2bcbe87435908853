package vhostuser

import (
	"slices"
	"strings"
	"testing"
)

// scriptedPeer is a back-end that answers each request with the payload
// answer returns (no reply for nil, an empty one for an empty slice) until
// the front-end hangs up; done is closed then.
func scriptedPeer(t *testing.T, answer func(h Header, p []byte) []byte) (f *Frontend, done <-chan struct{}) {
	t.Helper()
	fc, bc := socketPair(t)
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		for {
			h, p, fds, err := ReadMessage(bc, MaxFDs)
			if err != nil {
				return
			}
			closeFDs(fds)
			reply := answer(h, p)
			if reply == nil {
				continue
			}
			if err := WriteMessage(bc, Header{Request: h.Request, Flags: FlagVersion | FlagReply}, reply, nil); err != nil {
				return
			}
		}
	}()
	return NewFrontend(fc), ended
}

// scriptedBackend acknowledges every request but refuse (REPLY_ACK status
// 1) and records what it was sent, until the front-end hangs up.
func scriptedBackend(t *testing.T, refuse Request) (*Frontend, <-chan []Request) {
	t.Helper()
	var reqs []Request
	f, done := scriptedPeer(t, func(h Header, _ []byte) []byte {
		reqs = append(reqs, h.Request)
		switch {
		case h.Flags&FlagNeedReply == 0:
			return nil
		case h.Request == refuse:
			return marshalU64(1)
		}
		return marshalU64(0)
	})
	got := make(chan []Request, 1)
	go func() {
		<-done
		got <- reqs
	}()
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
