package agent

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sietch-vm/sietch/wire/agentproto"
)

// fakeMachine records what the identity endpoint asks of guest-init.
type fakeMachine struct {
	mu       sync.Mutex
	hostname string
	now      time.Time
	entropy  []byte
	err      error
	network  string
}

func (m *fakeMachine) SetNetwork(addr netip.Prefix, gw netip.Addr, dns []netip.Addr) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.network = fmt.Sprintf("%v via %v dns %v", addr, gw, dns)
	return m.err
}

func (m *fakeMachine) SetIdentity(hostname string, now time.Time, entropy []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.hostname, m.now, m.entropy = hostname, now, entropy
	return m.err
}

// An identity's env reaches every later exec, with SIETCH_SANDBOX_ID; the
// machine part goes to guest-init.
func TestIdentity(t *testing.T) {
	m := &fakeMachine{}
	env := startAgent(t, Config{Machine: m})
	ctx := testCtx(t)
	ent := bytes.Repeat([]byte{7}, 32)
	at := time.Now().Add(12 * time.Minute)
	res, err := env.c.SetIdentity(ctx, agentproto.Identity{SandboxID: "sb-1", Hostname: "sb-1", Time: at, Entropy: ent, Env: map[string]string{"GREETING": "hi", "LANG": "C.UTF-8"}})
	if err != nil {
		t.Fatal(err)
	}
	if m.hostname != "sb-1" || !m.now.Equal(at) || !bytes.Equal(m.entropy, ent) {
		t.Errorf("machine got %q %v %x", m.hostname, m.now, m.entropy)
	}
	if d := time.Duration(res.ClockStepNS); d < 11*time.Minute || d > 13*time.Minute {
		t.Errorf("clock step %v; want about 12m", d)
	}
	var out bytes.Buffer
	if _, err := env.c.Exec(ctx, agentproto.ExecRequest{Cmd: "sh", Args: []string{"-c", "echo $SIETCH_SANDBOX_ID $GREETING $LANG"}}, nil, &out, nil); err != nil {
		t.Fatal(err)
	}
	if out.String() != "sb-1 hi C.UTF-8\n" {
		t.Errorf("exec after identity printed %q", out.String())
	}
	// A later identity adds to the env; an exec's own env still wins.
	if _, err := env.c.SetIdentity(ctx, agentproto.Identity{Env: map[string]string{"GREETING": "hello"}}); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	env.c.Exec(ctx, agentproto.ExecRequest{Cmd: "sh", Args: []string{"-c", "echo $SIETCH_SANDBOX_ID $GREETING $X"}, Env: map[string]string{"X": "own"}}, nil, &out, nil)
	if out.String() != "sb-1 hello own\n" {
		t.Errorf("exec after a second identity printed %q", out.String())
	}
	// SetIdentityNow stamps the time as the request leaves.
	before := time.Now()
	if _, err := env.c.SetIdentityNow(ctx, agentproto.Identity{Hostname: "sb-2"}); err != nil {
		t.Fatal(err)
	}
	if m.hostname != "sb-2" || m.now.Before(before) || m.now.After(time.Now()) {
		t.Errorf("SetIdentityNow: hostname %q, time %v; want sb-2 and a time within the call", m.hostname, m.now)
	}
	m.err = errors.New("no clock")
	var ae *Error
	if _, err := env.c.SetIdentity(ctx, agentproto.Identity{Hostname: "x"}); !errors.As(err, &ae) || ae.Status != http.StatusInternalServerError || !strings.Contains(ae.Message, "no clock") {
		t.Errorf("machine failure: %v", err)
	}
}

func TestIdentityRefused(t *testing.T) {
	env := startAgent(t, Config{})
	ctx := testCtx(t)
	var ae *Error
	if _, err := env.c.SetIdentity(ctx, agentproto.Identity{Hostname: "sb-1"}); !errors.As(err, &ae) || ae.Status != http.StatusNotImplemented {
		t.Errorf("hostname without guest-init: %v; want 501", err)
	}
	if _, err := env.c.SetIdentity(ctx, agentproto.Identity{Env: map[string]string{"A": "b"}}); err != nil {
		t.Errorf("env without guest-init: %v", err)
	}
	for _, bad := range []agentproto.Identity{
		{Hostname: strings.Repeat("h", 65)},
		{Hostname: "a/b"},
		{Entropy: []byte{1, 2, 3}},
		{Entropy: make([]byte, 513)},
		{Env: map[string]string{"A=B": "c"}},
		{Env: map[string]string{"": "c"}},
		{Time: time.Date(1970, 1, 1, 0, 0, 1, 0, time.UTC)},
	} {
		if _, err := env.c.SetIdentity(ctx, bad); !errors.As(err, &ae) || ae.Status != http.StatusBadRequest {
			t.Errorf("%+v: %v; want 400", bad, err)
		}
	}
}

// A background process outlives its request, writes to its log, is
// signalled by id, and its id is free again once it exits.
func TestStartBackground(t *testing.T) {
	env := startAgent(t, Config{})
	ctx := testCtx(t)
	log := filepath.Join(t.TempDir(), "srv.log")
	st, err := env.c.Start(ctx, agentproto.StartRequest{ID: "srv", Cmd: "sh", Args: []string{"-c", "echo up; echo err >&2; exec sleep 60"}, Log: log})
	if err != nil || st.ID != "srv" || st.PID <= 0 {
		t.Fatalf("start: %+v %v", st, err)
	}
	waitFor(t, func() bool { b, _ := os.ReadFile(log); return string(b) == "up\nerr\n" })
	if h, _ := env.c.Health(ctx); h.Execs != 1 {
		t.Errorf("health counts %d execs; want the background one", h.Execs)
	}
	if err := env.c.Signal(ctx, "srv", "SIGTERM"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { h, _ := env.c.Health(ctx); return h.Execs == 0 })
	var ae *Error
	if _, err := env.c.Start(ctx, agentproto.StartRequest{Cmd: "true", Log: "relative.log"}); !errors.As(err, &ae) || ae.Status != http.StatusBadRequest {
		t.Errorf("relative log: %v; want 400", err)
	}
	if _, err := env.c.Start(ctx, agentproto.StartRequest{Cmd: "no-such-program-here"}); !errors.As(err, &ae) || ae.Status != http.StatusNotFound {
		t.Errorf("missing program: %v; want 404", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10 s")
		}
	}
}

// A host that gave up waiting resends its identity while the first request
// still runs; every one of them lands and the labels file is whole.
func TestIdentityConcurrent(t *testing.T) {
	labels := filepath.Join(t.TempDir(), "run", "labels.json")
	env := startAgent(t, Config{Machine: &fakeMachine{}, LabelsFile: labels})
	ctx := testCtx(t)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := env.c.SetIdentityNow(ctx, agentproto.Identity{SandboxID: "sb-1", Hostname: "sb-1", Labels: map[string]string{"team": "e2e", "try": strings.Repeat("x", i)}})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	b, err := os.ReadFile(labels)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte(`{"team":"e2e","try":"`)) || !bytes.HasSuffix(b, []byte("\"}\n")) {
		t.Errorf("labels file %q", b)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(labels), ".labels-*")); len(left) > 0 {
		t.Errorf("temporary files left behind: %v", left)
	}
}

// A restored sandbox's new address reaches guest-init; a malformed one is
// refused before anything changes.
func TestIdentityNetwork(t *testing.T) {
	m := &fakeMachine{}
	env := startAgent(t, Config{Machine: m})
	ctx := testCtx(t)
	n := &agentproto.NetIdentity{Address: "10.99.0.6/30", Gateway: "10.99.0.5", DNS: []string{"10.99.0.5"}}
	if _, err := env.c.SetIdentity(ctx, agentproto.Identity{SandboxID: "sb-1", Network: n}); err != nil {
		t.Fatal(err)
	}
	if want := "10.99.0.6/30 via 10.99.0.5 dns [10.99.0.5]"; m.network != want {
		t.Errorf("machine got network %q, want %q", m.network, want)
	}
	for _, bad := range []agentproto.NetIdentity{
		{Address: "10.99.0.6", Gateway: "10.99.0.5"},
		{Address: "fd00::2/64", Gateway: "fd00::1"},
		{Address: "10.99.0.6/30", Gateway: "10.99.1.5"},
		{Address: "10.99.0.6/30", Gateway: "10.99.0.6"},
		{Address: "10.99.0.6/30", Gateway: "10.99.0.5", DNS: []string{"a", "b", "c", "d"}},
		{Address: "10.99.0.6/30", Gateway: "10.99.0.5", DNS: []string{"8.8.8.8; rm -rf /"}},
	} {
		m.network = ""
		var ae *Error
		if _, err := env.c.SetIdentity(ctx, agentproto.Identity{Network: &bad}); !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || m.network != "" {
			t.Errorf("network %+v: %v (machine got %q); want 400 and no change", bad, err, m.network)
		}
	}
}

// GET /v1/clock reads the guest's clock; POST /v1/clock steps it relative
// to its reading then, through guest-init; a step beyond a century or an
// agent that is not guest-init is refused.
func TestClock(t *testing.T) {
	m := &fakeMachine{}
	env := startAgent(t, Config{Machine: m})
	ctx := testCtx(t)
	before := time.Now()
	g, err := env.c.Clock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if g.Before(before.Add(-time.Second)) || g.After(time.Now().Add(time.Second)) {
		t.Errorf("GET /v1/clock: %v; want about %v", g, before)
	}
	before = time.Now()
	if err := env.c.StepClock(ctx, -4*time.Second); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	set := m.now
	m.mu.Unlock()
	if d := set.Sub(before); d > -4*time.Second+time.Second || d < -4*time.Second-time.Second {
		t.Errorf("a -4s step set the clock %v from the request's time; want about -4s", d)
	}
	var ae *agentproto.Error
	if err := env.c.StepClock(ctx, 101*365*24*time.Hour); !errors.As(err, &ae) || ae.Status != http.StatusBadRequest {
		t.Errorf("step of 101 years: %v; want 400", err)
	}
	plain := startAgent(t, Config{})
	if err := plain.c.StepClock(ctx, time.Second); !errors.As(err, &ae) || ae.Status != http.StatusNotImplemented {
		t.Errorf("step without guest-init: %v; want 501", err)
	}
}

// An identity's workdir and user are an exec's when it names none; an
// exec that names its own keeps them.
func TestIdentityExecDefaults(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("running as another user needs root")
	}
	env := startAgent(t, Config{Machine: &fakeMachine{}})
	ctx := testCtx(t)
	dir, err := os.MkdirTemp("", "workdir-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755) // the user must be able to enter it
	if _, err := env.c.SetIdentity(ctx, agentproto.Identity{Workdir: dir, User: "65534"}); err != nil {
		t.Fatal(err)
	}
	run := func(req agentproto.ExecRequest) string {
		t.Helper()
		var out bytes.Buffer
		req.Cmd = "sh"
		req.Args = []string{"-c", "echo $(id -u) $(pwd)"}
		if _, err := env.c.Exec(ctx, req, nil, &out, &out); err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out.String())
	}
	if got, want := run(agentproto.ExecRequest{}), "65534 "+dir; got != want {
		t.Errorf("exec with the identity's defaults: %q; want %q", got, want)
	}
	if got, want := run(agentproto.ExecRequest{User: "0", Cwd: "/"}), "0 /"; got != want {
		t.Errorf("exec naming its own user and cwd: %q; want %q", got, want)
	}
	var ae *agentproto.Error
	if _, err := env.c.SetIdentity(ctx, agentproto.Identity{Workdir: "relative"}); !errors.As(err, &ae) || ae.Status != http.StatusBadRequest {
		t.Errorf("relative workdir: %v; want 400", err)
	}
}
