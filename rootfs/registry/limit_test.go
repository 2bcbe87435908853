package registry

import (
	"errors"
	"io"
	"strings"
	"testing"
)

// A body without a Content-Length is cut off by reading, with an error
// rather than a quiet truncation.
func TestLimitedBody(t *testing.T) {
	for _, tt := range []struct {
		body string
		max  int64
		ok   bool
	}{
		{"", 4, true},
		{"abcd", 4, true},
		{"abcde", 4, false},
		{strings.Repeat("x", 1<<16), 1 << 10, false},
	} {
		b, err := io.ReadAll(&limitedBody{rc: io.NopCloser(strings.NewReader(tt.body)), left: tt.max})
		if tt.ok && (err != nil || string(b) != tt.body) {
			t.Errorf("%d bytes, limit %d: %q, %v", len(tt.body), tt.max, b, err)
		}
		if !tt.ok && !errors.Is(err, ErrTooLarge) {
			t.Errorf("%d bytes, limit %d: err %v, want ErrTooLarge", len(tt.body), tt.max, err)
		}
	}
}
