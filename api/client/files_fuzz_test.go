package client

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzWatchStream feeds arbitrary server output to a Watcher: every Next
// returns an event or an error, never panics, and the stream ends.
func FuzzWatchStream(f *testing.F) {
	for _, s := range []string{
		`{"type":"create","path":"/a","is_dir":true,"time":"2025-01-01T00:00:00Z"}` + "\n" + `{"type":"overflow","time":"2025-01-01T00:00:00Z"}` + "\n",
		`{"type":"write","path":"/a"}`, `{"type":1}` + "\n", "\n", "[]\n", `{"time":"yesterday"}` + "\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		w := &Watcher{dir: "/d", body: io.NopCloser(bytes.NewReader(data)), br: bufio.NewReaderSize(bytes.NewReader(data), 16<<10)}
		for i := 0; ; i++ {
			ev, err := w.Next()
			if err != nil {
				if errors.Is(err, io.EOF) && len(data) > 0 && data[len(data)-1] != '\n' {
					t.Fatalf("a stream cut inside a line ended as io.EOF")
				}
				return
			}
			if i > len(data) {
				t.Fatalf("more events (%d) than input bytes; last %+v", i, ev)
			}
		}
	})
}
