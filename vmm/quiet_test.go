package vmm

import (
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// quietMachine is just enough of a Machine for watchQuiet.
func quietMachine(compat bool, d time.Duration) (*Machine, *syncBuffer) {
	logs := &syncBuffer{}
	m := &Machine{
		cfg:     Config{QuietHint: d},
		compat:  compat,
		console: &consoleWatch{w: io.Discard},
		done:    make(chan struct{}),
		log:     slog.New(slog.NewTextHandler(logs, nil)),
	}
	return m, logs
}

// TestQuietHint: the hint comes once for a silent guest on an emulated
// host, never for one that printed, one on a native host, or a VM that
// ended first. (The KVM test with a silent guest is in cmd/vmm.)
func TestQuietHint(t *testing.T) {
	const d = 20 * time.Millisecond
	t.Run("silent", func(t *testing.T) {
		m, logs := quietMachine(true, d)
		m.watchQuiet()
		if got := strings.Count(logs.String(), "printed nothing"); got != 1 {
			t.Fatalf("hint logged %d times, want once:\n%s", got, logs)
		}
		for _, want := range []string{"emulates guest kernel mode", "make kernel", "keeps running", "20ms"} {
			if !strings.Contains(logs.String(), want) {
				t.Errorf("hint does not say %q:\n%s", want, logs)
			}
		}
	})
	t.Run("spoke", func(t *testing.T) {
		m, logs := quietMachine(true, d)
		m.console.Write([]byte("L"))
		m.watchQuiet()
		if logs.String() != "" {
			t.Fatalf("hint for a guest that printed:\n%s", logs)
		}
	})
	t.Run("native", func(t *testing.T) {
		m, logs := quietMachine(false, d)
		m.watchQuiet()
		if logs.String() != "" {
			t.Fatalf("hint on a host with native kernel mode:\n%s", logs)
		}
	})
	t.Run("ended", func(t *testing.T) {
		m, logs := quietMachine(true, time.Hour)
		close(m.done)
		m.watchQuiet() // returns at once: the VM is over
		if logs.String() != "" {
			t.Fatalf("hint after the VM ended:\n%s", logs)
		}
	})
}
