package mcpserver

import (
	"strings"
	"testing"
)

func TestBounded(t *testing.T) {
	for _, c := range []struct {
		name   string
		limit  int
		writes []string
		want   string
		drop   int64
	}{
		{"fits", 10, []string{"abc", "def"}, "abcdef", 0},
		{"exactly", 6, []string{"abcdef"}, "abcdef", 0},
		{"one write past", 6, []string{"abcdefgh"}, "abc\n[… 2 bytes of output dropped …]\nfgh", 2},
		{"many small writes", 4, []string{"a", "b", "c", "d", "e", "f", "g"}, "ab\n[… 3 bytes of output dropped …]\nfg", 3},
		{"ring wraps", 6, []string{"abc", "12", "34", "5", "678"}, "abc\n[… 5 bytes of output dropped …]\n678", 5},
		{"big write after", 6, []string{"ab", "cdefghijkl"}, "abc\n[… 6 bytes of output dropped …]\njkl", 6},
		{"a cut character goes", 5, []string{"ab€€cd"}, "ab\n[… 5 bytes of output dropped …]\ncd", 5},
	} {
		b := newBounded(c.limit)
		for _, w := range c.writes {
			if n, err := b.Write([]byte(w)); n != len(w) || err != nil {
				t.Fatalf("%s: Write = %d, %v", c.name, n, err)
			}
		}
		if got := b.String(); got != c.want || b.Dropped() != c.drop {
			t.Errorf("%s: %q (dropped %d), want %q (%d)", c.name, got, b.Dropped(), c.want, c.drop)
		}
	}
	if got := newBounded(8).String(); got != "" {
		t.Errorf("empty: %q", got)
	}
	b := newBounded(4)
	b.Write([]byte("\xff\xfe"))
	if s := b.String(); !strings.Contains(s, "\uFFFD") {
		t.Errorf("bytes that are not UTF-8: %q", s)
	}
}
