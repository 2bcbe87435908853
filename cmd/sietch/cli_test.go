package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/sietch-vm/sietch/api/client"
	"github.com/sietch-vm/sietch/api/client/clienttest"
	"github.com/sietch-vm/sietch/api/model"
)

var testNow = time.Date(2025, 1, 2, 4, 4, 5, 0, time.UTC) // an hour after the fake's sandboxes were made

// runner runs the CLI against a fake sietchd.
type runner struct {
	t   *testing.T
	srv *clienttest.Server
	env map[string]string
}

func newRunner(t *testing.T) *runner {
	t.Helper()
	srv := clienttest.NewServer()
	t.Cleanup(srv.Close)
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte(clienttest.Token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return &runner{t: t, srv: srv, env: map[string]string{"SIETCH_ADDR": srv.URL, "SIETCH_TOKEN_FILE": tok}}
}

func (r *runner) run(stdin string, args ...string) (stdout, stderr string, code int) {
	var out, errb bytes.Buffer
	c := &cli{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb,
		getenv: func(k string) string { return r.env[k] }, now: func() time.Time { return testNow }}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code = c.run(ctx, args)
	return out.String(), errb.String(), code
}

// Adapters from the parse functions to one shape for the table below; each
// parses with the global flags bound, as the CLI does.
func testFlags() *pflag.FlagSet { return (&cli{}).newFlags("test") }

type forkArgs struct {
	id  string
	req model.ForkRequest
}

type snapArgs struct {
	id  string
	req model.SnapshotRequest
}

func pCreate(a []string) (any, error)  { return parseCreate(testFlags(), a) }
func pRestore(a []string) (any, error) { return parseRestore(testFlags(), a) }

// netShown is what a parsed `sietch net` comes to, without its flags.
type netShown struct {
	id      string
	change  bool
	enabled *bool
}

func pNet(a []string) (any, error) {
	c, err := parseNet(testFlags(), a)
	if err != nil {
		return nil, err
	}
	return netShown{id: c.id, change: c.change, enabled: c.enabled}, nil
}
func pTemplateBuild(a []string) (any, error) {
	return parseTemplateBuild(testFlags(), a)
}
func pExec(a []string) (any, error) { return parseExec(testFlags(), a) }
func pInput(a []string) (any, error) {
	_, in, err := parseInput(testFlags(), a)
	return in, err
}
func pScreenshot(a []string) (any, error) {
	id, out, display, region, scale, err := parseScreenshot(testFlags(), a)
	return fmt.Sprint(id, " ", out, " ", display, " ", region, " ", scale), err
}
func pPort(a []string) (any, error) { return parsePort(testFlags(), a) }
func pRm(a []string) (any, error)   { return parseIDs(testFlags(), a) }
func pLs(a []string) (any, error)   { return nil, noArgs(testFlags(), a) }
func pFork(a []string) (any, error) {
	id, req, err := parseFork(testFlags(), a)
	return forkArgs{id, req}, err
}
func pSnapshot(a []string) (any, error) {
	id, req, err := parseSnapshot(testFlags(), a)
	return snapArgs{id, req}, err
}

func TestParseCommands(t *testing.T) {
	for _, tc := range []struct {
		name    string
		parse   func([]string) (any, error)
		args    []string
		want    any
		wantErr string
	}{
		{"create", pCreate, []string{"--image", "py", "--cpus", "2", "--memory", "1G", "--disk", "2048", "--timeout", "1h", "--on-timeout", "snapshot", "-l", "a=b", "--label", "c="},
			model.CreateRequest{Image: "py", Limits: model.Limits{CPUs: 2, MemoryMiB: 1024, DiskMiB: 2048, TimeoutS: 3600, OnTimeout: "snapshot"}, Labels: map[string]string{"a": "b", "c": ""}}, ""},
		{"create", pCreate, nil, model.CreateRequest{}, ""},
		{"create", pCreate, []string{"py"}, nil, "unexpected argument"},
		{"create", pCreate, []string{"--memory", "1.5K"}, nil, "whole number of MiB"},
		{"create", pCreate, []string{"--on-timeout", "stop"}, nil, "goes with --timeout"},
		{"create", pCreate, []string{"--timeout", "1h", "--on-timeout", "hibernate"}, nil, "want stop, snapshot or pause"},
		{"create", pCreate, []string{"-t", "web", "-e", "A=1", "--env", "B=", "--timeout", "1h", "--on-timeout", "pause"},
			model.CreateRequest{Template: "web", Env: map[string]string{"A": "1", "B": ""}, Limits: model.Limits{TimeoutS: 3600, OnTimeout: "pause"}}, ""},
		{"create", pCreate, []string{"--template", "web", "--image", "py"}, nil, "not both"},
		{"create", pCreate, []string{"-e", "NOVALUE"}, nil, "--env"},
		{"create", pCreate, []string{"--net"}, model.CreateRequest{Network: &model.NetworkSpec{Enabled: true}}, ""},
		{"create", pCreate, []string{"--allow", "pypi.org", "--allow", "10.0.0.0/8", "--deny", "0.0.0.0/0", "--internet", "off"},
			model.CreateRequest{Network: &model.NetworkSpec{Enabled: true, Internet: new(false), Allow: []string{"pypi.org", "10.0.0.0/8"}, Deny: []string{"0.0.0.0/0"}}}, ""},
		{"create", pCreate, []string{"--net", "--internet", "maybe"}, nil, "want on or off"},
		{"net", pNet, []string{"sb-1"}, netShown{id: "sb-1"}, ""},
		{"net", pNet, []string{"sb-1", "--deny", "1.2.3.4", "--off"}, netShown{id: "sb-1", change: true, enabled: new(false)}, ""},
		{"net", pNet, []string{"sb-1", "--on", "--off"}, nil, "not both"},
		{"net", pNet, nil, nil, "one sandbox ID"},
		{"net", pNet, []string{"sb-1", "--internet", "2"}, nil, "want on or off"},
		{"template", pTemplateBuild, []string{"web", "--start-cmd", "srv", "--ready-cmd", "curl -f x", "--ready-timeout", "90s", "--memory", "512M", "--disk", "1G"},
			model.TemplateRequest{Name: "web", StartCmd: "srv", ReadyCmd: "curl -f x", ReadyTimeoutS: 90, Limits: model.Limits{MemoryMiB: 512, DiskMiB: 1024}}, ""},
		{"template", pTemplateBuild, []string{"web", "-i", "py"}, model.TemplateRequest{Name: "web", Image: "py"}, ""},
		{"template", pTemplateBuild, nil, nil, "one template NAME"},
		{"input", pInput, []string{"sb-1", "click", "10", "20", "--", "key", "ctrl+l", "--", "type", "hello", "world", "--", "scroll", "-3", "--", "click", "5", "6", "3", "2", "--", "drag", "1", "2", "3", "4"},
			model.DesktopInput{Actions: []model.DesktopAction{{Type: "click", X: 10, Y: 20, Button: 1, Count: 1}, {Type: "key", Keys: "ctrl+l"}, {Type: "type", Text: "hello world"},
				{Type: "scroll", DY: -3}, {Type: "click", X: 5, Y: 6, Button: 3, Count: 2}, {Type: "drag", X: 1, Y: 2, X2: 3, Y2: 4}}}, ""},
		{"input", pInput, []string{"--display", ":2", "sb-1", "move", "1", "1"}, model.DesktopInput{Display: ":2", Actions: []model.DesktopAction{{Type: "move", X: 1, Y: 1}}}, ""},
		{"input", pInput, []string{"sb-1"}, nil, "want a sandbox ID and an action"},
		{"input", pInput, []string{"sb-1", "click", "10"}, nil, "takes 2 to 4 numbers"},
		{"input", pInput, []string{"sb-1", "click", "x", "y"}, nil, "not a whole number"},
		{"input", pInput, []string{"sb-1", "teleport", "1"}, nil, "unknown action"},
		{"input", pInput, []string{"sb-1", "key", "ctrl", "l"}, nil, "one combination"},
		{"input", pInput, []string{"sb-1", "type", "a", "--"}, nil, "empty action"},
		{"screenshot", pScreenshot, []string{"sb-1", "-o", "s.png", "--region", "0,10,64,32"}, "sb-1 s.png  (0,10)-(64,42) 1", ""},
		{"screenshot", pScreenshot, []string{"sb-1", "-o", "s.png", "--scale", "0.5"}, "sb-1 s.png  (0,0)-(0,0) 0.5", ""},
		{"screenshot", pScreenshot, []string{"sb-1", "-o", "s.png", "--scale", "2"}, nil, "--scale"},
		{"screenshot", pScreenshot, []string{"sb-1"}, nil, "-o FILE.png"},
		{"screenshot", pScreenshot, []string{"sb-1", "-o", "s.png", "--region", "1,2,3"}, nil, "X,Y,W,H"},
		{"screenshot", pScreenshot, []string{"sb-1", "-o", "s.png", "--region", "1,2,0,3"}, nil, "empty"},
		{"template", pTemplateBuild, []string{"web", "--timeout", "1h"}, nil, "each create"},
		{"template", pTemplateBuild, []string{"web", "-l", "a=b"}, nil, "each create"},
		{"template", pTemplateBuild, []string{"app", "-f", "Dockerfile", "--build-arg", "A=1", "--ready-port", "8000"}, model.TemplateRequest{Name: "app", ReadyPort: 8000}, ""},
		{"template", pTemplateBuild, []string{"app", "-f", "Dockerfile", "-i", "py"}, nil, "not both"},
		{"template", pTemplateBuild, []string{"app", "--target", "final"}, nil, "--target goes with -f"},
		{"create", pCreate, []string{"-l", "novalue"}, nil, "KEY=VALUE"},
		{"restore", pRestore, []string{"snap-1", "--cpus", "4"}, model.CreateRequest{Snapshot: "snap-1", Limits: model.Limits{CPUs: 4}}, ""},
		{"restore", pRestore, nil, nil, "one SNAPSHOT_ID"},
		{"exec", pExec, []string{"sb-1", "--", "python3", "-c", "print(1)"},
			execCmd{id: "sb-1", req: model.ExecRequest{Cmd: "python3", Args: []string{"-c", "print(1)"}}}, ""},
		{"exec", pExec, []string{"sb-1", "ls", "-la", "--json"},
			execCmd{id: "sb-1", req: model.ExecRequest{Cmd: "ls", Args: []string{"-la", "--json"}}}, ""},
		{"exec", pExec, []string{"-e", "A=1", "-i", "sb-1", "-w", "/tmp", "--timeout", "2s", "--", "env"},
			execCmd{id: "sb-1", stdin: true, req: model.ExecRequest{Cmd: "env", Args: []string{}, Env: map[string]string{"A": "1"}, Cwd: "/tmp", TimeoutMS: 2000}}, ""},
		{"exec", pExec, []string{"sb-1"}, nil, "want a command"},
		{"exec", pExec, []string{"sb-1", "--"}, nil, "want a command"},
		{"exec", pExec, nil, nil, "want a sandbox ID"},
		{"exec", pExec, []string{"-e", "X", "sb-1", "true"}, nil, "KEY=VALUE"},
		{"exec", pExec, []string{"sb-1", "--bogus", "--", "true"}, nil, "unknown flag"},
		{"fork", pFork, []string{"sb-1", "-n", "3", "--snapshot", "snap-2"}, forkArgs{"sb-1", model.ForkRequest{Snapshot: "snap-2", Count: 3}}, ""},
		{"fork", pFork, []string{"sb-1"}, forkArgs{"sb-1", model.ForkRequest{Count: 1}}, ""},
		{"fork", pFork, []string{"sb-1", "-n", "0"}, nil, "at least 1"},
		{"snapshot", pSnapshot, []string{"sb-1", "--diff"}, snapArgs{"sb-1", model.SnapshotRequest{Kind: "diff"}}, ""},
		{"snapshot", pSnapshot, []string{"sb-1"}, snapArgs{"sb-1", model.SnapshotRequest{}}, ""},
		{"snapshot", pSnapshot, []string{"sb-1", "sb-2"}, nil, "one sandbox ID"},
		{"port", pPort, []string{"sb-1", "8000", "--host-port", "8080", "--host-addr", "0.0.0.0"},
			portCmd{id: "sb-1", req: model.PortRequest{GuestPort: 8000, HostPort: 8080, HostAddr: "0.0.0.0"}}, ""},
		{"port", pPort, []string{"sb-1"}, portCmd{id: "sb-1"}, ""},
		{"port", pPort, []string{"sb-1", "--close", "8080"}, portCmd{id: "sb-1", close: 8080}, ""},
		{"port", pPort, []string{"sb-1", "8000", "--close", "8080"}, nil, "--close takes no"},
		{"port", pPort, []string{"sb-1", "--host-port", "8080"}, nil, "go with a GUEST_PORT"},
		{"port", pPort, []string{"sb-1", "70000"}, nil, "1..65535"},
		{"ls", pLs, []string{"--json"}, nil, ""},
		{"ls", pLs, []string{"x"}, nil, "unexpected argument"},
		{"rm", pRm, []string{"a", "b"}, []string{"a", "b"}, ""},
		{"rm", pRm, nil, nil, "at least one"},
	} {
		t.Run(tc.name+" "+strings.Join(tc.args, " "), func(t *testing.T) {
			got, err := tc.parse(tc.args)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %#v\nwant %#v", got, tc.want)
			}
		})
	}
}

func TestGlobalFlags(t *testing.T) {
	r := newRunner(t)
	// Env gives the address; a flag before or after the command wins.
	if _, stderr, code := r.run("", "ls"); code != exitOK {
		t.Fatalf("ls with env: exit %d: %s", code, stderr)
	}
	for _, args := range [][]string{
		{"--addr", "http://127.0.0.1:1", "ls"},
		{"ls", "--addr", "http://127.0.0.1:1"},
	} {
		if _, stderr, code := r.run("", args...); code != exitError || !strings.Contains(stderr, "is sietchd running") {
			t.Errorf("%v: exit %d, stderr %q; want 1 and a hint", args, code, stderr)
		}
	}
	if _, stderr, code := r.run("", "--token-file", "/no/such/token", "ls"); code != exitError || !strings.Contains(stderr, "--token-file") {
		t.Errorf("missing token file: exit %d, stderr %q", code, stderr)
	}
	// health needs no token.
	if out, stderr, code := r.run("", "--token-file", "/no/such/token", "health"); code != exitOK || !strings.HasPrefix(out, "ok") {
		t.Errorf("health without a token: exit %d, %q %q", code, out, stderr)
	}
}

func TestOutput(t *testing.T) {
	r := newRunner(t)
	id, _, code := r.run("", "create", "--cpus", "2", "-l", "team=a")
	id = strings.TrimSpace(id)
	if code != exitOK || id != "sb-1" {
		t.Fatalf("create printed %q, exit %d; want the id", id, code)
	}
	if out, _, _ := r.run("", "port", id, "8000", "--host-port", "8080"); out != "127.0.0.1:8080\n" {
		t.Errorf("port printed %q", out)
	}
	r.srv.AddSandbox(model.StatePaused, false)

	out, _, code := r.run("", "ls")
	want := "" +
		"ID    STATE    FROM              CPUS  MEMORY  AGENT  PORTS       CREATED\n" +
		"sb-1  running  template default  2     256MiB  yes    8080->8000  1h ago\n" +
		"sb-2  paused   default           1     256MiB  -      -           1h ago\n"
	if code != exitOK || out != want {
		t.Errorf("ls:\n%s\nwant:\n%s", out, want)
	}

	out, _, code = r.run("", "ls", "--json")
	var list struct{ Sandboxes []model.Sandbox }
	if err := json.Unmarshal([]byte(out), &list); err != nil || code != exitOK || len(list.Sandboxes) != 2 ||
		list.Sandboxes[0].Labels["team"] != "a" || list.Sandboxes[1].State != model.StatePaused {
		t.Errorf("ls --json = %s (exit %d, %v)", out, code, err)
	}

	out, _, _ = r.run("", "images")
	if want := "NAME     KIND   SIZE    CREATED\ndefault  linux  512MiB  28h ago\n"; out != want {
		t.Errorf("images:\n%q\nwant\n%q", out, want)
	}
	out, _, _ = r.run("", "--json", "images")
	if !strings.Contains(out, `"name": "default"`) {
		t.Errorf("images --json = %s", out)
	}

	snap, _, _ := r.run("", "snapshot", id)
	diff, _, _ := r.run("", "snapshot", "--diff", id)
	if snap != "snap-1\n" || diff != "snap-2\n" {
		t.Errorf("snapshot printed %q then %q", snap, diff)
	}
	out, _, _ = r.run("", "snapshots", id)
	want = "" +
		"ID      SANDBOX  KIND  BASE    ROLE  SIZE    CREATED  NEEDED BY\n" +
		"snap-1  sb-1     full  -       -     256MiB  59m ago  -\n" +
		"snap-2  sb-1     diff  snap-1  -     3MiB    59m ago  -\n"
	if out != want {
		t.Errorf("snapshots:\n%s\nwant:\n%s", out, want)
	}
	if out, _, _ := r.run("", "fork", id, "--snapshot", "snap-1", "-n", "2"); out != "sb-3\nsb-4\n" {
		t.Errorf("fork printed %q", out)
	}
	out, _, _ = r.run("", "restore", "snap-1", "--json")
	var sb model.Sandbox
	if err := json.Unmarshal([]byte(out), &sb); err != nil || sb.ID != "sb-5" || sb.Snapshot != "snap-1" {
		t.Errorf("restore --json = %s (%v)", out, err)
	}
	if out, _, _ := r.run("", "pause", id); out != "sb-1 paused\n" {
		t.Errorf("pause printed %q", out)
	}
	if out, _, _ := r.run("", "resume", id); out != "sb-1 running\n" {
		t.Errorf("resume printed %q", out)
	}
	if out, _, _ := r.run("", "console", id); out != r.srv.Console {
		t.Errorf("console printed %q", out)
	}
	out, _, _ = r.run("", "stats", id)
	want = "" +
		"RESOURCE       USED                        LIMIT\n" +
		"cgroup         v2                          \n" +
		"cpu            user 0.50 s, system 1.50 s  2.25 CPUs\n" +
		"cpu throttled  0 of 0 periods, 0.00 s      \n" +
		"memory         64MiB                       352MiB\n" +
		"oom kills      0                           \n" +
		"tasks          35                          264\n" +
		"disk           read 0B, written 0B         \n"
	if out != want {
		t.Errorf("stats:\n%s\nwant:\n%s", out, want)
	}
	out, _, _ = r.run("", "stats", "--json", id)
	var st model.SandboxStats
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.Pids != 35 || st.CPULimit != 2.25 {
		t.Errorf("stats --json = %s (%v)", out, err)
	}
	if _, _, code := r.run("", "stats", "sb-none"); code != exitNotFound {
		t.Errorf("stats of no sandbox: exit %d, want %d", code, exitNotFound)
	}
	if out, _, code := r.run("", "rm", "sb-3", "sb-4"); code != exitOK || out != "sb-3\nsb-4\n" {
		t.Errorf("rm printed %q, exit %d", out, code)
	}
}

func TestExec(t *testing.T) {
	r := newRunner(t)
	id := r.srv.AddSandbox(model.StateRunning, true)
	var gotReq model.ExecRequest
	r.srv.Exec = func(req model.ExecRequest, out *clienttest.ExecOutput) model.ExecExit {
		gotReq = req
		out.Stdout([]byte("out\n"))
		out.Stderr([]byte("err\n"))
		return model.ExecExit{Code: 7}
	}
	stdout, stderr, code := r.run("piped in", "exec", "-i", "-e", "K=V", id, "--", "sh", "-c", "exit 7")
	if code != 7 || stdout != "out\n" || stderr != "err\n" {
		t.Errorf("exec: exit %d, stdout %q, stderr %q; want 7, out, err", code, stdout, stderr)
	}
	if gotReq.Cmd != "sh" || gotReq.Stdin != "cGlwZWQgaW4=" || gotReq.Env["K"] != "V" || len(gotReq.Args) != 2 {
		t.Errorf("server got %+v", gotReq)
	}
	r.srv.Exec = func(model.ExecRequest, *clienttest.ExecOutput) model.ExecExit {
		return model.ExecExit{Code: -1, Signal: "SIGKILL"}
	}
	if _, _, code := r.run("", "exec", id, "sleep", "9"); code != 137 {
		t.Errorf("killed command: exit %d, want 137", code)
	}
}

func TestExitStatus(t *testing.T) {
	r := newRunner(t)
	running := r.srv.AddSandbox(model.StateRunning, true)
	noAgent := r.srv.AddSandbox(model.StateRunning, false)
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"ls"}, exitOK},
		{[]string{"rm", "sb-404"}, exitNotFound},
		{[]string{"exec", "sb-404", "true"}, exitNotFound},
		{[]string{"resume", running}, exitState},
		{[]string{"exec", noAgent, "true"}, exitRetry},
		{[]string{"cp", "/etc/hostname", noAgent + ":/tmp/h"}, exitRetry},
		{[]string{"create", "--image", "nope"}, exitNotFound},
		{[]string{"create", "--cpus", "64"}, exitError}, // over the server's limit
		{[]string{"fork", running, "-n", "99"}, exitUsage},
		{[]string{"exec", running, "exit", "3"}, 3},
		{[]string{"exec", running, "nosuchcmd"}, 127},
		{[]string{"ls", "--bogus"}, exitUsage},
		{[]string{"cp", "a", "b"}, exitUsage},
		{[]string{"frobnicate"}, exitUsage},
		{[]string{"--token-file", "/nonexistent", "ls"}, exitError},
	} {
		if _, stderr, code := r.run("", tc.args...); code != tc.code {
			t.Errorf("sietch %v: exit %d, want %d (stderr %q)", tc.args, code, tc.code, stderr)
		}
	}
}

func TestExitCodeMapping(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code int
	}{
		{nil, exitOK},
		{errors.New("dial unix: no such file"), exitError},
		{&client.Error{Status: 404, Code: model.CodeNotFound}, exitNotFound},
		{fmt.Errorf("upload: %w", &client.Error{Status: 404, Code: model.CodeNotFound}), exitNotFound},
		{&client.Error{Status: 409, Code: model.CodeWrongState}, exitState},
		{&client.Error{Status: 503, Code: model.CodeAgentUnavailable, Retry: true}, exitRetry},
		{&client.Error{Status: 500, Code: model.CodeInternal, Retry: true}, exitRetry},
		{&client.Error{Status: 400, Code: model.CodeBadRequest}, exitUsage},
		{&client.Error{Status: 400, Code: model.CodeInvalidJSON}, exitError},
		{&client.Error{Status: 400, Code: model.CodeUnknownField}, exitError},
		{&client.Error{Status: 401, Code: model.CodeUnauthorized}, exitError},
		{&client.Error{Status: 429, Code: model.CodeLimit}, exitError},
		{&client.Error{Status: 413, Code: model.CodeBodyTooLarge}, exitError},
		{&client.Error{Status: 500, Code: model.CodeInternal}, exitError},
	} {
		if got := exitCode(tc.err); got != tc.code {
			t.Errorf("exitCode(%v) = %d, want %d", tc.err, got, tc.code)
		}
	}
}

func TestExecStatus(t *testing.T) {
	for _, tc := range []struct {
		exit model.ExecExit
		code int
	}{
		{model.ExecExit{}, 0},
		{model.ExecExit{Code: 42}, 42},
		{model.ExecExit{Code: -1, Signal: "SIGKILL"}, 137},
		{model.ExecExit{Signal: "TERM"}, 143},
		{model.ExecExit{Signal: "2"}, 130},
		{model.ExecExit{Signal: "SIGNOPE"}, exitError},
		{model.ExecExit{Signal: "SIGKILL", TimedOut: true}, exitTimedOut},
		{model.ExecExit{Code: 300}, exitError},
	} {
		if got, _ := execStatus(tc.exit); got != tc.code {
			t.Errorf("execStatus(%+v) = %d, want %d", tc.exit, got, tc.code)
		}
	}
}

func TestParseCp(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		want    copySpec
		wantErr string
	}{
		{[]string{"data.csv", "sb-1:/root/data.csv"}, copySpec{upload: true, id: "sb-1", remote: "/root/data.csv", local: "data.csv"}, ""},
		{[]string{"./dir/data.csv", "sb-1:/root/"}, copySpec{upload: true, id: "sb-1", remote: "/root/data.csv", local: "./dir/data.csv"}, ""},
		{[]string{"sb-1:/root/out.png", "."}, copySpec{id: "sb-1", remote: "/root/out.png", local: "."}, ""},
		{[]string{"sb-1:/etc/os-release", "-"}, copySpec{id: "sb-1", remote: "/etc/os-release", local: "-"}, ""},
		{[]string{"--mode", "0755", "-", "a.b_c-1:/usr/local/bin/tool"}, copySpec{upload: true, id: "a.b_c-1", remote: "/usr/local/bin/tool", local: "-", mode: 0o755, setMod: true}, ""},
		// A colon not followed by an absolute path, or after a slash, is local.
		{[]string{"./a:/b", "sb-1:/x"}, copySpec{upload: true, id: "sb-1", remote: "/x", local: "./a:/b"}, ""},
		{[]string{"sb-1:/x", "notes:today"}, copySpec{id: "sb-1", remote: "/x", local: "notes:today"}, ""},
		{[]string{"a", "b"}, copySpec{}, "neither side"},
		{[]string{"sb-1:/a", "sb-2:/b"}, copySpec{}, "both sides"},
		{[]string{"sb-1:relative", "x"}, copySpec{}, "neither side"},
		{[]string{"-", "sb-1:/tmp/"}, copySpec{}, "name the file"},
		{[]string{"sb-1:/tmp/", "x"}, copySpec{}, "is a directory"},
		{[]string{"--mode", "999", "x", "sb-1:/x"}, copySpec{}, "octal"},
		{[]string{"--mode", "0644", "sb-1:/x", "x"}, copySpec{}, "goes with uploads"},
		{[]string{"only-one"}, copySpec{}, "want SRC and DST"},
		// Found by FuzzParseCp: an empty local path is no file to write.
		{[]string{"sb-1:/x", ""}, copySpec{}, "local side is empty"},
		{[]string{"", "sb-1:/x"}, copySpec{}, "local side is empty"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			got, err := parseCp(testFlags(), tc.args)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("got %+v, %v\nwant %+v", got, err, tc.want)
			}
		})
	}
}

func TestCpBothWays(t *testing.T) {
	r := newRunner(t)
	id := r.srv.AddSandbox(model.StateRunning, true)
	dir := t.TempDir()
	src := filepath.Join(dir, "tool")
	data := bytes.Repeat([]byte("sietch\n"), 300000)
	if err := os.WriteFile(src, data, 0o751); err != nil {
		t.Fatal(err)
	}
	if _, stderr, code := r.run("", "cp", src, id+":/usr/bin/"); code != exitOK {
		t.Fatalf("upload: exit %d: %s", code, stderr)
	}
	out := filepath.Join(dir, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, stderr, code := r.run("", "cp", id+":/usr/bin/tool", out); code != exitOK {
		t.Fatalf("download: exit %d: %s", code, stderr)
	}
	got, err := os.ReadFile(filepath.Join(out, "tool"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("downloaded file differs (%v)", err)
	}
	if fi, _ := os.Stat(filepath.Join(out, "tool")); fi.Mode().Perm() != 0o751 {
		t.Errorf("mode %v, want 0751 kept both ways", fi.Mode())
	}
	// stdin and stdout.
	if _, stderr, code := r.run("from stdin", "cp", "-", id+":/tmp/s"); code != exitOK {
		t.Fatalf("upload from stdin: exit %d: %s", code, stderr)
	}
	if stdout, _, code := r.run("", "cp", id+":/tmp/s", "-"); code != exitOK || stdout != "from stdin" {
		t.Errorf("download to stdout: %q, exit %d", stdout, code)
	}
	// A missing file leaves nothing behind locally.
	if _, _, code := r.run("", "cp", id+":/nope", filepath.Join(dir, "nope")); code != exitNotFound {
		t.Errorf("missing file: exit %d, want %d", code, exitNotFound)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Errorf("dir has %d entries after a failed download, want 2", len(ents))
	}
}

func TestHelp(t *testing.T) {
	r := newRunner(t)
	for _, name := range commandNames() {
		if name == "image" {
			continue
		}
		out, _, code := r.run("", name, "--help")
		if code != exitOK || !strings.Contains(out, "Usage: sietch "+name) || !strings.Contains(out[strings.Index(out, "Example:"):], "sietch "+name) || !strings.Contains(out, "--addr") {
			t.Errorf("sietch %s --help: exit %d:\n%s", name, code, out)
		}
	}
	out, _, code := r.run("", "help", "exec")
	if code != exitOK || !strings.Contains(out, "Usage: sietch exec") {
		t.Errorf("sietch help exec: exit %d: %s", code, out)
	}
	out, _, code = r.run("", "--help")
	for name := range commands {
		if !strings.Contains(out, "\n  "+name+" ") {
			t.Errorf("sietch --help does not list %s", name)
		}
	}
	if code != exitOK {
		t.Errorf("sietch --help: exit %d", code)
	}
}

func TestProgressLine(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := now
	p := newProgress(&bytes.Buffer{}, "blob", 32<<20, func() time.Time { return clock })
	p.width = 10
	p.add(8 << 20)
	clock = now.Add(2 * time.Second)
	if got, want := p.line(), "blob [==        ]  25% 8MiB/32MiB 4MiB/s 2.0s"; got != want {
		t.Errorf("line = %q, want %q", got, want)
	}
	q := newProgress(&bytes.Buffer{}, "snapshot sb-1", -1, func() time.Time { return clock })
	clock = clock.Add(1500 * time.Millisecond)
	if got, want := q.line(), "snapshot sb-1 1.5s"; got != want {
		t.Errorf("line = %q, want %q", got, want)
	}
	var nilBar *progress // not a terminal: every method is a no-op
	nilBar.add(1)
	nilBar.done(true)
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0B", 1023: "1023B", 1024: "1KiB", 1536: "1.5KiB", 256 << 20: "256MiB", 5 << 40: "5TiB", 3 << 50: "3072TiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

// FuzzParseCp: any pair of arguments parses to exactly one sandbox side
// with an absolute path, or to an error; never a panic.
func FuzzParseCp(f *testing.F) {
	for _, p := range [][2]string{{"a", "sb-1:/x"}, {"sb-1:/x", "-"}, {"./a:/b", "c:d"}, {":/x", "y"}, {"sb:/", "z"}} {
		f.Add(p[0], p[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		if strings.HasPrefix(a, "-") && a != "-" || strings.HasPrefix(b, "-") && b != "-" {
			return // flags, not paths
		}
		cs, err := parseCp(testFlags(), []string{a, b})
		if err != nil {
			return
		}
		if cs.id == "" || !strings.HasPrefix(cs.remote, "/") || cs.local == "" {
			t.Fatalf("parseCp(%q, %q) = %+v", a, b, cs)
		}
	})
}

// SIETCH_STATE_DIR names a local sietchd's socket and token at once;
// SIETCH_ADDR and SIETCH_TOKEN_FILE still win.
func TestStateDirEnv(t *testing.T) {
	r := newRunner(t)
	state := t.TempDir()
	r.env = map[string]string{"SIETCH_STATE_DIR": state}
	if _, stderr, code := r.run("", "ls"); code != exitError || !strings.Contains(stderr, filepath.Join(state, "token")) {
		t.Errorf("no token in the state directory: exit %d, stderr %q; want it named", code, stderr)
	}
	os.WriteFile(filepath.Join(state, "token"), []byte(clienttest.Token), 0o600)
	if _, stderr, code := r.run("", "ls"); code != exitError || !strings.Contains(stderr, filepath.Join(state, "sietchd.sock")) {
		t.Errorf("no sietchd on the state directory's socket: exit %d, stderr %q; want the socket named", code, stderr)
	}
	r.env["SIETCH_ADDR"] = r.srv.URL
	if _, stderr, code := r.run("", "ls"); code != exitOK {
		t.Errorf("SIETCH_ADDR with SIETCH_STATE_DIR's token: exit %d, stderr %q", code, stderr)
	}
}

func TestTemplatesSnapshotsSuspend(t *testing.T) {
	r := newRunner(t)
	out, stderr, code := r.run("", "template", "build", "web", "--start-cmd", "python3 -m http.server", "--memory", "512M", "--context", "python", "--context", "bash")
	if code != exitOK || out != "web\n" || !strings.Contains(stderr, "template web: ready") {
		t.Fatalf("template build: exit %d, %q, stderr %q", code, out, stderr)
	}
	out, _, _ = r.run("", "template", "ls")
	want := "" +
		"NAME     STATE  IMAGE    CPUS  MEMORY  START                   CONTEXTS     SIZE    SANDBOXES  CREATED\n" +
		"default  ready  default  1     256MiB  -                       python       200MiB  0          28h ago\n" +
		"web      ready  default  1     512MiB  python3 -m http.server  python,bash  200MiB  0          1h ago\n"
	if out != want {
		t.Errorf("template ls:\n%s\nwant:\n%s", out, want)
	}
	if _, stderr, code := r.run("", "template", "build", "web"); code != exitState {
		t.Errorf("building an existing template: exit %d (%s), want %d", code, stderr, exitState)
	}
	id, _, code := r.run("", "create", "--template", "web")
	id = strings.TrimSpace(id)
	if code != exitOK {
		t.Fatalf("create --template web: exit %d", code)
	}
	if _, stderr, code := r.run("", "template", "rm", "web"); code != exitState || !strings.Contains(stderr, id) {
		t.Errorf("template rm while %s runs from it: exit %d, %q; want %d naming it", id, code, stderr, exitState)
	}
	if out, _, code := r.run("", "pause", "--to-disk", id); code != exitOK || out != id+" suspended\n" {
		t.Errorf("pause --to-disk: exit %d, %q", code, out)
	}
	if out, _, code := r.run("", "exec", id, "--", "echo", "back"); code != exitOK || out != "back\n" {
		t.Errorf("exec in a suspended sandbox: exit %d, %q; want it resumed", code, out)
	}
	r.run("", "rm", id)
	if out, _, code := r.run("", "template", "rm", "web"); code != exitOK || out != "web\n" {
		t.Errorf("template rm: exit %d, %q", code, out)
	}
	out, _, _ = r.run("", "snapshots")
	if !strings.Contains(out, "snap-t0") || !strings.Contains(out, "template default") {
		t.Errorf("snapshots lists every snapshot with its role:\n%s", out)
	}
	if _, stderr, code := r.run("", "snapshot", "rm", "snap-t0"); code != exitState || !strings.Contains(stderr, "template default") {
		t.Errorf("snapshot rm of a template's: exit %d, %q", code, stderr)
	}
	id2, _, _ := r.run("", "create")
	snap, _, _ := r.run("", "snapshot", strings.TrimSpace(id2))
	if out, _, code := r.run("", "snapshot", "rm", strings.TrimSpace(snap), "snap-nope"); code != exitNotFound || out != snap {
		t.Errorf("snapshot rm: exit %d, %q; want %q then not found", code, out, snap)
	}
}
