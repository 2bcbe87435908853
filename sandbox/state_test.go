package sandbox

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestTransitions(t *testing.T) {
	allowed := []struct{ from, to State }{
		{StateCreating, StateRunning},
		{StateRunning, StatePaused},
		{StatePaused, StateRunning},
		{StateRunning, StateSnapshotting},
		{StatePaused, StateSnapshotting},
		{StateSnapshotting, StateRunning},
		{StateSnapshotting, StatePaused},
		{StateRunning, StateSuspended},
		{StatePaused, StateSuspended},
		{StateSuspended, StateRunning},
	}
	for _, tt := range allowed {
		if !canMove(tt.from, tt.to) {
			t.Errorf("%s → %s is refused", tt.from, tt.to)
		}
	}
	refused := []struct{ from, to State }{
		{StateCreating, StatePaused},
		{StateRunning, StateRunning},
		{StatePaused, StatePaused},
		{StateStopped, StateRunning},
		{StateFailed, StateRunning},
		{StateStopped, StateFailed},
		{StateSnapshotting, StateSnapshotting},
		{StateSuspended, StatePaused},
		{StateSuspended, StateSnapshotting},
		{StateCreating, StateSuspended},
	}
	for _, tt := range refused {
		if canMove(tt.from, tt.to) {
			t.Errorf("%s → %s is allowed", tt.from, tt.to)
		}
	}
	// Every live state may end, stopped or failed.
	for _, s := range States {
		if active(s) && (!canMove(s, StateStopped) || !canMove(s, StateFailed)) {
			t.Errorf("%s cannot end", s)
		}
		if _, ok := transitions[s]; !ok {
			t.Errorf("state %s is missing from the table", s)
		}
	}
	err := checkMove("sb-1", StatePaused, StatePaused, "pause")
	if !errors.Is(err, ErrWrongState) || !strings.Contains(err.Error(), "sandbox sb-1 is paused; it cannot pause") {
		t.Errorf("checkMove: %v", err)
	}
}

func TestCheckLimits(t *testing.T) {
	ok := Limits{CPUs: 1, MemoryMiB: 128, OnTimeout: OnTimeoutStop}
	tests := []struct {
		name   string
		l, max Limits
		want   error
		msg    string
	}{
		{"defaults", ok, Limits{}, nil, ""},
		{"no cpus", Limits{MemoryMiB: 128, OnTimeout: "stop"}, Limits{}, ErrInvalid, "limits.cpus 0"},
		{"odd memory", Limits{CPUs: 1, MemoryMiB: 127, OnTimeout: "stop"}, Limits{}, ErrInvalid, "memory_mib 127"},
		{"tiny memory", Limits{CPUs: 1, MemoryMiB: 2, OnTimeout: "stop"}, Limits{}, ErrInvalid, "at least 16"},
		{"negative disk", Limits{CPUs: 1, MemoryMiB: 128, DiskMiB: -1, OnTimeout: "stop"}, Limits{}, ErrInvalid, "disk_mib"},
		{"bad on_timeout", Limits{CPUs: 1, MemoryMiB: 128, OnTimeout: "hibernate"}, Limits{}, ErrInvalid, "on_timeout"},
		{"over cpus", Limits{CPUs: 4, MemoryMiB: 128, OnTimeout: "stop"}, Limits{CPUs: 2}, ErrLimit, "cpus 4 asked, the per-sandbox limit is 2"},
		{"over memory", Limits{CPUs: 1, MemoryMiB: 1024, OnTimeout: "stop"}, Limits{MemoryMiB: 512}, ErrLimit, "memory_mib 1024"},
		{"over lifetime", Limits{CPUs: 1, MemoryMiB: 128, TimeoutS: 7200, OnTimeout: "stop"}, Limits{TimeoutS: 3600}, ErrLimit, "timeout_s"},
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
	if got := withDefaults(Limits{CPUs: 2}, ok); got.CPUs != 2 || got.MemoryMiB != 128 || got.OnTimeout != "stop" {
		t.Errorf("withDefaults: %+v", got)
	}
}

func TestDescribeExit(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, fileConsole), []byte("boot\nline 1\nline 2\n"), 0o600)
	os.WriteFile(filepath.Join(dir, fileVMMLog), []byte("time=x level=INFO msg=start\nvmm run: guest crashed: triple fault\n"), 0o600)
	tests := []struct {
		ex     exitInfo
		state  State
		reason []string
	}{
		{exitInfo{known: true, code: 0}, StateStopped, []string{"powered off"}},
		{exitInfo{known: true, code: 5}, StateStopped, []string{"stopped"}},
		{exitInfo{known: true, code: 4}, StateFailed, []string{"crashed", "triple fault", "line 2"}},
		{exitInfo{known: true, code: 3}, StateFailed, []string{"rebooted"}},
		{exitInfo{known: true, code: 1}, StateFailed, []string{"exit status 1", "triple fault"}},
		{exitInfo{known: true, code: -1, signal: syscall.SIGKILL}, StateFailed, []string{"signal SIGKILL", "line 1 | line 2"}},
		{exitInfo{}, StateFailed, []string{"guest crashed"}},
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
