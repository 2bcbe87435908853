package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sietch-vm/sietch/api/model"
	"github.com/sietch-vm/sietch/sandbox"
	"github.com/sietch-vm/sietch/testguest"
)

// Built once in TestMain: a vmm binary and the counter test guest.
var (
	vmmBin     string
	counterELF string
	setupErr   error // why KVM tests cannot run
)

// counterCmdline keeps the counter guest busy for minutes.
const counterCmdline = "n=100000000000"

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sietch-api-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	setupErr = setup(dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func setup(dir string) error {
	if _, err := os.Stat("/dev/kvm"); err != nil {
		return fmt.Errorf("no /dev/kvm: %w", err)
	}
	vmmBin = filepath.Join(dir, "vmm")
	out, err := exec.Command("go", "build", "-o", vmmBin, "github.com/sietch-vm/sietch/cmd/vmm").CombinedOutput()
	if err != nil {
		return fmt.Errorf("build vmm: %v\n%s", err, out)
	}
	if counterELF, err = testguest.Build(dir, "counter"); err != nil {
		return fmt.Errorf("build the counter test guest: %w", err)
	}
	return nil
}

// requireKVM skips a test that runs vmm processes when it cannot.
func requireKVM(t testing.TB) {
	t.Helper()
	if setupErr != nil {
		if strings.Contains(setupErr.Error(), "/dev/kvm") || strings.Contains(setupErr.Error(), "gcc") {
			t.Skipf("needs /dev/kvm and gcc: %v", setupErr)
		}
		t.Fatal(setupErr)
	}
}

// env is a Manager and Server on a state directory, served over HTTP on
// a unix socket, with a client.
type env struct {
	t     testing.TB
	cfg   sandbox.Config
	m     *sandbox.Manager
	srv   *Server
	sock  string
	token string
	hc    *http.Client
	done  chan error
}

// newEnv starts sietchd's parts on a new state directory. The state path
// is short: sandbox sockets must fit a unix socket path.
func newEnv(t testing.TB, tweak func(*sandbox.Config)) *env {
	t.Helper()
	requireKVM(t)
	state, err := os.MkdirTemp("", "sd-")
	if err != nil {
		t.Fatal(err)
	}
	cfg := sandbox.Config{
		StateDir: state,
		VMMPath:  vmmBin,
		Defaults: sandbox.Limits{MemoryMiB: 64},
		Images:   []sandbox.ImageSpec{{Name: "counter", Kind: sandbox.KindTestguest, Kernel: counterELF, Cmdline: counterCmdline, MemMiB: 64}},
	}
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if tweak != nil {
		tweak(&cfg)
	}
	e := &env{t: t, cfg: cfg}
	e.start()
	t.Cleanup(func() {
		e.stop()
		killLeftovers(t, state)
		os.RemoveAll(state)
	})
	return e
}

func (e *env) start() {
	t := e.t
	t.Helper()
	m, err := sandbox.Open(e.cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	tok, err := LoadToken(filepath.Join(e.cfg.StateDir, "token"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{Manager: m, Token: tok, Logger: e.cfg.Logger, KVM: func() string { return "test" }})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := Listen("", e.cfg.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	e.m, e.srv, e.token, e.sock = m, srv, tok, ln.Addr().String()
	e.done = make(chan error, 1)
	go func() { e.done <- srv.Serve(ln) }()
	e.hc = &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", e.sock)
	}}}
}

// stop shuts the server down and closes the manager, leaving vmm
// processes running, as sietchd does at SIGTERM.
func (e *env) stop() {
	if e.m == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e.srv.Shutdown(ctx)
	<-e.done
	e.hc.CloseIdleConnections()
	if err := e.m.Close(); err != nil {
		e.t.Errorf("Close: %v", err)
	}
	e.m = nil
}

// restart is a sietchd restart on the same state directory.
func (e *env) restart() {
	e.stop()
	e.start()
}

// do sends a request with the env's token and returns status and body.
func (e *env) do(method, path string, body any) (int, []byte) {
	e.t.Helper()
	return e.doAuth(method, path, body, "Bearer "+e.token)
}

func (e *env) doAuth(method, path string, body any, auth string) (int, []byte) {
	e.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	case []byte:
		r = bytes.NewReader(b)
	case io.Reader:
		r = b
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, "http://sietchd"+path, r)
	if err != nil {
		e.t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := e.hc.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("%s %s: read the body: %v", method, path, err)
	}
	return resp.StatusCode, out
}

// call sends a request, wants status want and decodes the body into out.
func (e *env) call(method, path string, body any, want int, out any) {
	e.t.Helper()
	st, b := e.do(method, path, body)
	if st != want {
		e.t.Fatalf("%s %s: status %d, want %d: %s", method, path, st, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			e.t.Fatalf("%s %s: decode %s: %v", method, path, b, err)
		}
	}
}

func (e *env) create(req model.CreateRequest) model.Sandbox {
	e.t.Helper()
	var sb model.Sandbox
	e.call("POST", "/v1/sandboxes", req, http.StatusCreated, &sb)
	return sb
}

func (e *env) get(id string) model.Sandbox {
	e.t.Helper()
	var sb model.Sandbox
	e.call("GET", "/v1/sandboxes/"+id, nil, http.StatusOK, &sb)
	return sb
}

// waitFor polls sandbox id until cond holds (or 30 s pass).
func (e *env) waitFor(id string, what string, cond func(model.Sandbox) bool) model.Sandbox {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		sb := e.get(id)
		if cond(sb) {
			return sb
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("sandbox %s: %s did not happen; it is %+v", id, what, sb)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// apiError decodes an error body.
func apiError(t testing.TB, b []byte) model.Error {
	t.Helper()
	var eb model.ErrorBody
	if err := json.Unmarshal(b, &eb); err != nil || eb.Error.Code == "" {
		t.Fatalf("not an error body: %s (%v)", b, err)
	}
	return eb.Error
}

// execResult is an exec stream read to its end.
type execResult struct {
	stdout, stderr string
	exit           *model.ExecExit
	events         int
}

func (e *env) exec(id string, req model.ExecRequest) (int, execResult, []byte) {
	e.t.Helper()
	st, b := e.do("POST", "/v1/sandboxes/"+id+"/exec", req)
	if st != http.StatusOK {
		return st, execResult{}, b
	}
	var r execResult
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var ev model.ExecEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			e.t.Fatalf("exec event %q: %v", sc.Bytes(), err)
		}
		r.events++
		if r.exit != nil {
			e.t.Errorf("exec event after the exit: %s", sc.Bytes())
		}
		out, _ := base64.StdEncoding.DecodeString(ev.Stdout)
		errb, _ := base64.StdEncoding.DecodeString(ev.Stderr)
		r.stdout += string(out)
		r.stderr += string(errb)
		r.exit = ev.Exit
	}
	return st, r, b
}

// vmmProcesses lists the pids running our test vmm binary.
func vmmProcesses() []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, d := range ents {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		if exe, err := os.Readlink("/proc/" + d.Name() + "/exe"); err == nil && exe == vmmBin {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killLeftovers kills vmm processes a failed test left on state.
func killLeftovers(t testing.TB, state string) {
	for _, pid := range vmmProcesses() {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		if bytes.Contains(b, []byte(state)) {
			t.Errorf("vmm %d of this test still runs; killing it", pid)
			p, _ := os.FindProcess(pid)
			p.Kill()
			p.Wait()
		}
	}
}

func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
