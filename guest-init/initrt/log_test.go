package initrt

import (
	"bytes"
	"log/slog"
	"regexp"
	"testing"
	"time"
)

func TestLoggerLines(t *testing.T) {
	var buf bytes.Buffer
	var level slog.LevelVar
	log := NewLogger(&buf, &level)
	log.Debug("hidden")
	log.Info("mounted", "target", "/proc")
	level.Set(slog.LevelDebug)
	log.Debug("shown")
	want := "sietch-init: level=INFO msg=mounted target=/proc\nsietch-init: level=DEBUG msg=shown\n"
	if buf.String() != want {
		t.Errorf("console got %q, want %q", buf.String(), want)
	}
}

func TestStepsString(t *testing.T) {
	s := NewSteps(12345 * time.Millisecond)
	s.Done("mounts")
	s.Done("cmdline")
	s.Took("network", 1500*time.Microsecond)
	if !regexp.MustCompile(`^start at t=12\.345s: mounts \d+\.\dms, cmdline \d+\.\dms, network \(parallel\) 1\.5ms$`).MatchString(s.String()) {
		t.Errorf("Steps.String() = %q", s.String())
	}
	if s.Uptime() < 12345*time.Millisecond {
		t.Errorf("Uptime %v before the start", s.Uptime())
	}
}
