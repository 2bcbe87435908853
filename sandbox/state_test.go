package sandbox

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/sietch-vm/sietch/api/model"
)

func TestTransitions(t *testing.T) {
	allowed := []struct{ from, to model.State }{
		{model.StateCreating, model.StateRunning},
		{model.StateRunning, model.StatePaused},
		{model.StatePaused, model.StateRunning},
		{model.StateRunning, model.StateSnapshotting},
		{model.StatePaused, model.StateSnapshotting},
		{model.StateSnapshotting, model.StateRunning},
		{model.StateSnapshotting, model.StatePaused},
		{model.StateRunning, model.StateSuspended},
		{model.StatePaused, model.StateSuspended},
		{model.StateSuspended, model.StateRunning},
	}
	for _, tt := range allowed {
		if !canMove(tt.from, tt.to) {
			t.Errorf("%s → %s is refused", tt.from, tt.to)
		}
	}
	refused := []struct{ from, to model.State }{
		{model.StateCreating, model.StatePaused},
		{model.StateRunning, model.StateRunning},
		{model.StatePaused, model.StatePaused},
		{model.StateStopped, model.StateRunning},
		{model.StateFailed, model.StateRunning},
		{model.StateStopped, model.StateFailed},
		{model.StateSnapshotting, model.StateSnapshotting},
		{model.StateSuspended, model.StatePaused},
		{model.StateSuspended, model.StateSnapshotting},
		{model.StateCreating, model.StateSuspended},
	}
	for _, tt := range refused {
		if canMove(tt.from, tt.to) {
			t.Errorf("%s → %s is allowed", tt.from, tt.to)
		}
	}
	// Every live state may end, stopped or failed.
	for _, s := range States {
		if active(s) && (!canMove(s, model.StateStopped) || !canMove(s, model.StateFailed)) {
			t.Errorf("%s cannot end", s)
		}
		if _, ok := transitions[s]; !ok {
			t.Errorf("state %s is missing from the table", s)
		}
	}
	err := checkMove("sb-1", model.StatePaused, model.StatePaused, "pause")
	if !errors.Is(err, ErrWrongState) || !strings.Contains(err.Error(), "sandbox sb-1 is paused; it cannot pause") {
		t.Errorf("checkMove: %v", err)
	}
}

func TestCheckLimits(t *testing.T) {
	ok := model.Limits{CPUs: 1, MemoryMiB: 128, OnTimeout: OnTimeoutStop}
	tests := []struct {
		name   string
		l, max model.Limits
		want   error
		msg    string
	}{
		{"defaults", ok, model.Limits{}, nil, ""},
		{"no cpus", model.Limits{MemoryMiB: 128, OnTimeout: "stop"}, model.Limits{}, ErrInvalid, "limits.cpus 0"},
		{"odd memory", model.Limits{CPUs: 1, MemoryMiB: 127, OnTimeout: "stop"}, model.Limits{}, ErrInvalid, "memory_mib 127"},
		{"tiny memory", model.Limits{CPUs: 1, MemoryMiB: 2, OnTimeout: "stop"}, model.Limits{}, ErrInvalid, "at least 16"},
		{"negative disk", model.Limits{CPUs: 1, MemoryMiB: 128, DiskMiB: -1, OnTimeout: "stop"}, model.Limits{}, ErrInvalid, "disk_mib"},
		{"bad on_timeout", model.Limits{CPUs: 1, MemoryMiB: 128, OnTimeout: "hibernate"}, model.Limits{}, ErrInvalid, "on_timeout"},
		{"over cpus", model.Limits{CPUs: 4, MemoryMiB: 128, OnTimeout: "stop"}, model.Limits{CPUs: 2}, ErrLimit, "cpus 4 asked, the per-sandbox limit is 2"},
		{"over memory", model.Limits{CPUs: 1, MemoryMiB: 1024, OnTimeout: "stop"}, model.Limits{MemoryMiB: 512}, ErrLimit, "memory_mib 1024"},
		{"over lifetime", model.Limits{CPUs: 1, MemoryMiB: 128, TimeoutS: 7200, OnTimeout: "stop"}, model.Limits{TimeoutS: 3600}, ErrLimit, "timeout_s"},
	}
	for _, tt := range tests {
		err := checkLimits(tt.l, tt.max)
		if tt.want == nil {
			if err != nil {
				t.Errorf("%s: %v", tt.name, err)
			}
			continue
		}
		if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%s: %v; want %v with %q", tt.name, err, tt.want, tt.msg)
		}
	}
	if got := withDefaults(model.Limits{CPUs: 2}, ok); got.CPUs != 2 || got.MemoryMiB != 128 || got.OnTimeout != "stop" {
		t.Errorf("withDefaults: %+v", got)
	}
}

func TestDescribeExit(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, fileConsole), []byte("boot\nline 1\nline 2\n"), 0o600)
	os.WriteFile(filepath.Join(dir, fileVMMLog), []byte("time=x level=INFO msg=start\nvmm run: guest crashed: triple fault\n"), 0o600)
	tests := []struct {
		ex     exitInfo
		state  model.State
		reason []string
	}{
		{exitInfo{known: true, code: 0}, model.StateStopped, []string{"powered off"}},
		{exitInfo{known: true, code: 5}, model.StateStopped, []string{"stopped"}},
		{exitInfo{known: true, code: 4}, model.StateFailed, []string{"crashed", "triple fault", "line 2"}},
		{exitInfo{known: true, code: 3}, model.StateFailed, []string{"rebooted"}},
		{exitInfo{known: true, code: 1}, model.StateFailed, []string{"exit status 1", "triple fault"}},
		{exitInfo{known: true, code: -1, signal: syscall.SIGKILL}, model.StateFailed, []string{"signal SIGKILL", "line 1 | line 2"}},
		{exitInfo{}, model.StateFailed, []string{"guest crashed"}},
	}
	for _, tt := range tests {
		st, reason := describeExit(dir, tt.ex)
		if st != tt.state {
			t.Errorf("%+v: state %s, want %s", tt.ex, st, tt.state)
		}
		for _, w := range tt.reason {
			if !strings.Contains(reason, w) {
				t.Errorf("%+v: reason %q lacks %q", tt.ex, reason, w)
			}
		}
	}
}

func TestOpenRefusesLongStateDir(t *testing.T) {
	_, err := Open(Config{StateDir: "/tmp/" + strings.Repeat("d", 100), VMMPath: "/bin/true"})
	if err == nil || !strings.Contains(err.Error(), "too long") {
		t.Errorf("Open with a long state directory: %v", err)
	}
}
