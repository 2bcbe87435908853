package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// consolePoll is how often a followed console looks for new output.
const consolePoll = 100 * time.Millisecond

// Console copies the sandbox's serial console log to w; with follow it
// goes on copying new output until the vmm exits or ctx ends.
func (m *Manager) Console(ctx context.Context, id string, follow bool, w io.Writer) error {
	sb, err := m.lookup(id)
	if err != nil {
		return err
	}
	m.mu.Lock()
	done := sb.done
	m.mu.Unlock()
	f, err := os.Open(filepath.Join(sb.dir, fileConsole))
	if errors.Is(err, fs.ErrNotExist) {
		return nil // nothing printed yet, or a creation that never started
	}
	if err != nil {
		return fmt.Errorf("sandbox %s console: %w", id, err)
	}
	defer f.Close()
	buf := make([]byte, 32<<10)
	drain := func() error {
		for {
			n, err := f.Read(buf)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					return werr
				}
			}
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return fmt.Errorf("sandbox %s console: %w", id, err)
			}
		}
	}
	if err := drain(); err != nil || !follow {
		return err
	}
	t := time.NewTicker(consolePoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-m.quit:
			return drain()
		case <-done:
			return drain()
		case <-t.C:
			if err := drain(); err != nil {
				return err
			}
		}
	}
}
