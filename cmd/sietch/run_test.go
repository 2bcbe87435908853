package main

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sietch-vm/sietch/api/client/clienttest"
	"github.com/sietch-vm/sietch/api/model"
)

func TestRun(t *testing.T) {
	r := newRunner(t)
	id := r.srv.AddSandbox(model.StateRunning, true)
	png := []byte("\x89PNG\r\n\x1a\nfake")
	var gotCtx, gotCode string
	r.srv.Run = func(c model.Context, code string, send func(model.RunEvent)) model.RunEnd {
		gotCtx, gotCode = c.ID, code
		switch code {
		case "fig":
			send(model.RunEvent{Result: map[string]string{"text/plain": "<Figure 1>", "image/png": base64.StdEncoding.EncodeToString(png)}})
		case "boom":
			send(model.RunEvent{Stdout: "before\n"})
			send(model.RunEvent{Error: &model.RunError{Name: "ValueError", Value: "boom", Traceback: "Traceback (most recent call last):\nValueError: boom\n"}})
			return model.RunEnd{Status: model.RunFailed}
		case "slow":
			return model.RunEnd{Status: model.RunTimeout}
		case "false":
			one := 1
			return model.RunEnd{Status: model.RunFailed, ExitCode: &one}
		default:
			send(model.RunEvent{Stdout: "out\n"})
			send(model.RunEvent{Stderr: "err\n"})
			send(model.RunEvent{Result: map[string]string{"text/plain": "42"}})
		}
		return model.RunEnd{Status: model.RunOK, ExecutionCount: 1}
	}

	stdout, stderr, code := r.run("", "run", id, "x")
	if code != 0 || stdout != "out\n42\n" || stderr != "err\n" || gotCtx != "default" || gotCode != "x" {
		t.Errorf("run: exit %d, stdout %q, stderr %q, context %q", code, stdout, stderr, gotCtx)
	}
	// Code from stdin, in bash's default context.
	if _, _, code := r.run("echo hi\n", "run", "--lang", "bash", id, "-"); code != 0 || gotCtx != "default-bash" || gotCode != "echo hi\n" {
		t.Errorf("run - --lang bash: exit %d, context %q, code %q", code, gotCtx, gotCode)
	}
	stdout, stderr, code = r.run("", "run", id, "boom")
	if code != exitError || stdout != "before\n" || !strings.Contains(stderr, "ValueError: boom") {
		t.Errorf("an exception: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if _, _, code := r.run("", "run", "--timeout", "1s", id, "slow"); code != exitTimedOut {
		t.Errorf("a timed-out run: exit %d", code)
	}
	if _, _, code := r.run("", "run", "--lang", "bash", id, "false"); code != 1 {
		t.Errorf("bash code that failed: exit %d", code)
	}
	// Rich results: mentioned, or saved with --save.
	if stdout, stderr, _ := r.run("", "run", id, "fig"); stdout != "<Figure 1>\n" || !strings.Contains(stderr, "image/png") {
		t.Errorf("a figure: stdout %q, stderr %q", stdout, stderr)
	}
	dir := t.TempDir()
	if _, stderr, code := r.run("", "run", "--save", dir, id, "fig"); code != 0 {
		t.Fatalf("--save: exit %d: %s", code, stderr)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "result-1.png")); err != nil || string(b) != string(png) {
		t.Errorf("saved figure: %q, %v", b, err)
	}
	// A named context that does not exist, and bad usage.
	if _, _, code := r.run("", "run", "--context", "nope", id, "1"); code != exitNotFound {
		t.Errorf("run in a missing context: exit %d", code)
	}
	for _, args := range [][]string{{"run", id}, {"run", "--lang", "cobol", id, "1"}, {"run", "--context", "c", "--lang", "node", id, "1"}} {
		if _, _, code := r.run("", args...); code != exitUsage {
			t.Errorf("sietch %v: exit %d, want %d", args, code, exitUsage)
		}
	}
	// --json prints the events as the API sends them.
	stdout, _, _ = r.run("", "--json", "run", id, "x")
	if lines := strings.Split(strings.TrimSpace(stdout), "\n"); len(lines) != 4 || !strings.Contains(lines[3], `"end"`) {
		t.Errorf("--json: %q", stdout)
	}
}

func TestBackgroundProcesses(t *testing.T) {
	r := newRunner(t)
	id := r.srv.AddSandbox(model.StateRunning, true)
	r.srv.Exec = func(req model.ExecRequest, out *clienttest.ExecOutput) model.ExecExit {
		out.Stdout([]byte("serving\n"))
		out.Stderr([]byte("warning\n"))
		return model.ExecExit{Code: 3}
	}
	stdout, stderr, code := r.run("", "exec", "-d", id, "--", "python3", "-m", "http.server")
	proc := strings.TrimSpace(stdout)
	if code != 0 || proc == "" {
		t.Fatalf("exec -d: exit %d, %q, %q", code, stdout, stderr)
	}
	stdout, _, code = r.run("", "ps", id)
	if code != 0 || !strings.Contains(stdout, proc) || !strings.Contains(stdout, "exited 3") || !strings.Contains(stdout, "python3 -m http.server") || !strings.Contains(stdout, "background") {
		t.Errorf("ps: exit %d\n%s", code, stdout)
	}
	if stdout, stderr, code := r.run("", "logs", id, proc); code != 0 || stdout != "serving\n" || stderr != "warning\n" {
		t.Errorf("logs: exit %d, %q, %q", code, stdout, stderr)
	}
	if _, _, code := r.run("", "wait", id, proc); code != 3 {
		t.Errorf("wait: exit %d, want the process's 3", code)
	}
	if _, _, code := r.run("", "kill", id, proc); code != exitState {
		t.Errorf("kill of an exited process: exit %d, want %d", code, exitState)
	}
	if _, _, code := r.run("", "kill", "--rm", id, proc); code != 0 {
		t.Errorf("kill --rm: exit %d", code)
	}
	if _, _, code := r.run("", "logs", id, proc); code != exitNotFound {
		t.Errorf("logs of a removed process: exit %d", code)
	}
	for _, args := range [][]string{{"exec", "-d", "-i", id, "true"}, {"logs", id}, {"kill", "--rm", "-s", "INT", id, "p"}, {"ps"}} {
		if _, _, code := r.run("", args...); code != exitUsage {
			t.Errorf("sietch %v: exit %d, want %d", args, code, exitUsage)
		}
	}
}

// Our stdin streams to the command whatever its size when it is not a
// terminal; -t asks for a terminal of our size (24x80 without one).
func TestExecStreamsStdin(t *testing.T) {
	r := newRunner(t)
	id := r.srv.AddSandbox(model.StateRunning, true)
	var got model.ExecRequest
	r.srv.Exec = func(req model.ExecRequest, out *clienttest.ExecOutput) model.ExecExit {
		got = req
		b, _ := base64.StdEncoding.DecodeString(req.Stdin)
		out.Stdout([]byte(strings.ToUpper(string(b))))
		return model.ExecExit{}
	}
	big := strings.Repeat("abcdefgh", 4<<20) // 32 MiB: over the old 16 MiB limit
	stdout, _, code := r.run(big, "exec", id, "tr", "a-z", "A-Z")
	if code != 0 || len(stdout) != len(big) || stdout[:8] != "ABCDEFGH" {
		t.Errorf("exec with 32 MiB of stdin: exit %d, %d bytes back", code, len(stdout))
	}
	if _, _, code := r.run("", "exec", "-t", id, "sh"); code != 0 || got.TTY == nil || got.TTY.Rows != 24 || got.TTY.Cols != 80 {
		t.Errorf("exec -t: exit %d, tty %+v", code, got.TTY)
	}
}
