package main

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
