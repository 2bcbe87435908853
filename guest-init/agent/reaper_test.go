package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sietch-vm/sietch/wire/agentproto"
)

const reaperHelperEnv = "SIETCH_AGENT_REAPER_HELPER"

// TestReaper runs reaperScenarios in a child test process: a reaper
// waits for every child of its process, which would steal the statuses
// of the other tests' children here, and the child becomes a subreaper
// so that orphans come to it as they come to PID 1.
func TestReaper(t *testing.T) {
	if os.Getenv(reaperHelperEnv) == "1" {
		reaperScenarios(t)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestReaper$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), reaperHelperEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("reaper scenarios passed")) {
		t.Fatalf("reaper helper: %v\n%s", err, out)
	}
}

func reaperScenarios(t *testing.T) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatalf("become a subreaper: %v", err)
	}
	r := NewReaper(nil)
	if _, err := r.Wait(1); err == nil {
		t.Fatal("Wait before Start succeeded")
	}
	r.Start()
	defer r.Close()

	// A child that exits and is reaped before anyone asks for it.
	cmd := exec.Command("sh", "-c", "exit 3")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	waitGone(t, pid)
	ws, err := r.Wait(pid)
	if err != nil || !ws.Exited() || ws.ExitStatus() != 3 {
		t.Fatalf("early exit: status %v, %v; want exit 3", ws, err)
	}

	// A child registered before it exits, and one killed by a signal.
	for _, tt := range []struct {
		script string
		check  func(syscall.WaitStatus) bool
	}{
		{"sleep 0.2; exit 5", func(ws syscall.WaitStatus) bool { return ws.Exited() && ws.ExitStatus() == 5 }},
		{"kill -9 $$", func(ws syscall.WaitStatus) bool { return ws.Signaled() && ws.Signal() == syscall.SIGKILL }},
	} {
		p, err := r.StartProcess("/bin/sh", []string{"sh", "-c", tt.script}, &os.ProcAttr{})
		if err != nil {
			t.Fatal(err)
		}
		ws, err := r.Wait(p.Pid)
		if err != nil || !tt.check(ws) {
			t.Fatalf("%s: status %v, %v", tt.script, ws, err)
		}
		p.Release()
	}

	// An orphan: the shell exits, its background child is reparented to
	// us and must be reaped when it exits, though nobody waits for it.
	orphan := spawnOrphan(t, r, "sleep 0.2")
	waitGone(t, orphan)

	// The agent with a reaper gets its execs' statuses and output.
	env := startAgent(t, Config{Reaper: r})
	var out bytes.Buffer
	res, err := env.c.Exec(testCtx(t), agentproto.ExecRequest{Cmd: "sh", Args: []string{"-c", "echo hi; (sleep 0.1 &); exit 4"}}, nil, &out, nil)
	if err != nil || res.ExitCode != 4 || out.String() != "hi\n" {
		t.Fatalf("exec under the reaper: %q %+v %v", out.String(), res, err)
	}
	res, err = env.c.Exec(testCtx(t), agentproto.ExecRequest{Cmd: "sleep", Args: []string{"30"}, TimeoutMS: 100}, nil, nil, nil)
	if err != nil || !res.TimedOut || res.Signal != "SIGKILL" {
		t.Fatalf("timeout under the reaper: %+v %v", res, err)
	}

	r.Close()
	if _, err := r.Wait(12345); err == nil {
		t.Fatal("Wait after Close succeeded")
	}
	fmt.Println("reaper scenarios passed")
}

// spawnOrphan runs script in the background of a shell that exits at
// once, and returns the background process's pid.
func spawnOrphan(t *testing.T, r *Reaper, script string) int {
	t.Helper()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p, err := r.StartProcess("/bin/sh", []string{"sh", "-c", script + " >/dev/null & echo $!"}, &os.ProcAttr{Files: []*os.File{nil, pw, os.Stderr}})
	pw.Close()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(pr)
	pr.Close()
	if ws, err := r.Wait(p.Pid); err != nil || ws.ExitStatus() != 0 {
		t.Fatalf("orphan's parent: %v %v", ws, err)
	}
	p.Release()
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("orphan pid %q", b)
	}
	return pid
}

// waitGone polls until pid no longer exists: reaped, not merely a zombie.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	for i := 0; ; i++ {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); errors.Is(err, os.ErrNotExist) {
			return
		}
		if i > 1000 {
			t.Fatalf("process %d was never reaped", pid)
		}
		sleepBriefly()
	}
}
