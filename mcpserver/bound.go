package mcpserver

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// bounded keeps the first and last bytes of a stream up to a limit and
// counts what it drops from the middle: an LLM needs the start of a
// command's output (what it did) and the end (how it failed), not a
// megabyte of progress lines in between.
type bounded struct {
	limit   int
	head    []byte
	tail    []byte // a ring of at most limit-len(head) bytes once head is full
	start   int    // where the ring's oldest byte is
	dropped int64
}

func newBounded(limit int) *bounded {
	if limit < 2 {
		limit = 2
	}
	return &bounded{limit: limit}
}

func (b *bounded) Write(p []byte) (int, error) {
	n := len(p)
	if room := b.limit/2 - len(b.head); room > 0 {
		k := min(room, len(p))
		b.head = append(b.head, p[:k]...)
		p = p[k:]
	}
	ring := b.limit - b.limit/2
	for len(p) > 0 {
		if len(b.tail) < ring {
			k := min(ring-len(b.tail), len(p))
			b.tail = append(b.tail, p[:k]...)
			p = p[k:]
			continue
		}
		// The ring is full: each new byte overwrites the oldest.
		if len(p) >= ring {
			b.dropped += int64(ring) + int64(len(p)-ring)
			copy(b.tail, p[len(p)-ring:])
			b.start = 0
			break
		}
		k := copy(b.tail[b.start:], p)
		if k < len(p) {
			k += copy(b.tail, p[k:])
		}
		b.start = (b.start + len(p)) % ring
		b.dropped += int64(len(p))
		break
	}
	return n, nil
}

// Dropped is how many bytes were left out of String.
func (b *bounded) Dropped() int64 { return b.dropped }

// String is the kept bytes, with a marker where bytes were dropped; bytes
// that are not UTF-8 become U+FFFD.
func (b *bounded) String() string {
	tail := append(append([]byte(nil), b.tail[b.start:]...), b.tail[:b.start]...)
	if b.dropped == 0 {
		return strings.ToValidUTF8(string(b.head)+string(tail), "\uFFFD")
	}
	// A cut may fall inside a character: drop the pieces at the seams.
	head := trimPartialEnd(b.head)
	tail = trimPartialStart(tail)
	return fmt.Sprintf("%s\n[… %d bytes of output dropped …]\n%s",
		strings.ToValidUTF8(string(head), "\uFFFD"), b.dropped, strings.ToValidUTF8(string(tail), "\uFFFD"))
}

// trimPartialEnd cuts an incomplete UTF-8 sequence off the end of b.
func trimPartialEnd(b []byte) []byte {
	for i := 1; i <= utf8.UTFMax && i <= len(b); i++ {
		c := b[len(b)-i]
		if utf8.RuneStart(c) {
			if !utf8.FullRune(b[len(b)-i:]) {
				return b[:len(b)-i]
			}
			break
		}
	}
	return b
}

// trimPartialStart cuts continuation bytes off the start of b.
func trimPartialStart(b []byte) []byte {
	for i := 0; i < utf8.UTFMax && len(b) > 0 && !utf8.RuneStart(b[0]); i++ {
		b = b[1:]
	}
	return b
}
