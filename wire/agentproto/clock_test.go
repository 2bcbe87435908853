package agentproto

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// fakeGuest answers GET and POST /v1/clock like the agent does, for a
// guest whose clock is offset from the host's and whose requests take
// latency each way.
type fakeGuest struct {
	mu      sync.Mutex
	offset  time.Duration
	latency time.Duration
	steps   int
}

func (g *fakeGuest) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	time.Sleep(g.latency) // the request's way in
	g.mu.Lock()
	if r.Method == http.MethodPost {
		var st ClockStep
		if err := json.NewDecoder(r.Body).Decode(&st); err != nil {
			g.mu.Unlock()
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		g.offset += time.Duration(st.StepNS)
		g.steps++
	}
	now := time.Now().Add(g.offset)
	g.mu.Unlock()
	time.Sleep(g.latency) // the reply's way out
	json.NewEncoder(w).Encode(Clock{TimeNS: now.UnixNano()})
}

func fakeClient(t *testing.T, h http.Handler) *Client {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return NewClient(func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", srv.Listener.Addr().String())
	})
}

// A guest seconds or minutes off, reached with a slow round trip, ends up
// within what the probe can tell apart; one already right is not stepped.
func TestSyncClock(t *testing.T) {
	for _, tc := range []struct {
		name            string
		offset, latency time.Duration
		wantSteps       int
	}{
		{"behind by a restore's trip", -4600 * time.Millisecond, 150 * time.Millisecond, 1},
		{"a day ahead", 24 * time.Hour, 10 * time.Millisecond, 1},
		{"already right", 0, 5 * time.Millisecond, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := &fakeGuest{offset: tc.offset, latency: tc.latency}
			c := fakeClient(t, g)
			s, err := c.SyncClock(context.Background(), 20*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			g.mu.Lock()
			off, steps := g.offset, g.steps
			g.mu.Unlock()
			// Symmetric latency: the midpoint is right, up to scheduling.
			if off.Abs() > 20*time.Millisecond+tc.latency/4 {
				t.Errorf("guest clock ends %v off the host's (reported %v ± %v)", off, s.Offset, s.Bound)
			}
			if steps != tc.wantSteps || s.Steps != steps {
				t.Errorf("%d steps sent (reported %d); want %d", steps, s.Steps, tc.wantSteps)
			}
			if s.Bound < tc.latency {
				t.Errorf("reported bound %v is below the one-way latency %v", s.Bound, tc.latency)
			}
		})
	}
}

// An agent from before /v1/clock answers 404: SyncClock says so as an
// *Error the caller can tell apart.
func TestSyncClockOldAgent(t *testing.T) {
	c := fakeClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte(`{"error":{"code":"not_found","message":"GET /v1/clock: no such endpoint"}}`))
	}))
	_, err := c.SyncClock(context.Background(), 20*time.Millisecond)
	var ae *Error
	if err == nil || !errors.As(err, &ae) || ae.Status != http.StatusNotFound {
		t.Fatalf("SyncClock against an old agent: %v; want a 404 *Error", err)
	}
}
