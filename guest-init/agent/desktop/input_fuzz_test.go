package desktop

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzKeysym: every key name a client sends either is refused or maps to a
// keysym X can carry: a named one, F1–F12, Latin-1, or a Unicode keysym
// (0x01000000 plus a valid code point); a name is never two characters.
func FuzzKeysym(f *testing.F) {
	for _, s := range []string{"ctrl", "Return", "f1", "F12", "f13", "f01", "a", "é", "€", "\x00", "\xff", "ab", "", "+", "shift+Tab"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		sym, ok := keysymOf(name)
		if !ok {
			return
		}
		if _, named := named[strings.ToLower(name)]; named {
			return
		}
		switch {
		case sym >= 0xffbe && sym <= 0xffc9: // F1–F12
		case sym >= 0x20 && sym <= 0xff:
		case sym == 0xff0d || sym == 0xff09:
		case sym >= 0x01000000 && sym <= 0x0110ffff && utf8.ValidRune(rune(sym-0x01000000)):
		default:
			t.Fatalf("keysymOf(%q) = %#x", name, sym)
		}
		if utf8.RuneCountInString(name) != 1 && !strings.HasPrefix(strings.ToLower(name), "f") {
			t.Fatalf("keysymOf(%q) accepted %d characters", name, utf8.RuneCountInString(name))
		}
	})
}
