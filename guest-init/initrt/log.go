package initrt

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// LogPrefix starts every line guest-init writes to the console.
const LogPrefix = "sietch-init: "

// NewLogger logs to w (the console) one line per record at level and
// above, prefixed with LogPrefix and without timestamps (the ready line has
// the kernel's clock; wall time means little to a fresh guest).
func NewLogger(w io.Writer, level slog.Leveler) *slog.Logger {
	return slog.New(slog.NewTextHandler(&prefixWriter{w: w}, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
}

// prefixWriter writes each record (one Write call from slog) as one line.
type prefixWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := p.w.Write(append([]byte(LogPrefix), b...)); err != nil {
		return 0, err
	}
	return len(b), nil
}

// Steps records how long each start-up step took, against the kernel's
// monotonic clock (which counts from boot, like /proc/uptime).
type Steps struct {
	mu    sync.Mutex
	base  time.Duration // CLOCK_MONOTONIC when the first step began
	start time.Time     // the same instant, on Go's clock
	last  time.Time
	names []string
	durs  []time.Duration
}

// NewSteps starts the clock; boot is CLOCK_MONOTONIC now.
func NewSteps(boot time.Duration) *Steps {
	now := time.Now()
	return &Steps{base: boot, start: now, last: now}
}

// Done ends the step called name, which began when the previous one ended.
func (s *Steps) Done(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	s.names = append(s.names, name)
	s.durs = append(s.durs, now.Sub(s.last))
	s.last = now
}

// Took records a step that ran beside the others and took d.
func (s *Steps) Took(name string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.names = append(s.names, name+" (parallel)")
	s.durs = append(s.durs, d)
}

// Uptime is the time since boot now.
func (s *Steps) Uptime() time.Duration { return s.base + time.Since(s.start) }

// String lists the steps, e.g. "mounts 2.1ms, cmdline 0.6ms".
func (s *Steps) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	parts := make([]string, len(s.names))
	for i, n := range s.names {
		parts[i] = fmt.Sprintf("%s %.1fms", n, float64(s.durs[i].Microseconds())/1000)
	}
	return fmt.Sprintf("start at t=%.3fs: %s", s.base.Seconds(), strings.Join(parts, ", "))
}
