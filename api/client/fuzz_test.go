package client

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzExecStream feeds arbitrary server output to the exec stream reader:
// it must return an exit or an error, never panic, and write only decoded
// chunks.
func FuzzExecStream(f *testing.F) {
	for _, s := range []string{
		`{"stdout":"aGkK"}` + "\n" + `{"stderr":"b29wcwo="}` + "\n" + `{"exit":{"code":3}}` + "\n",
		`{"exit":{"code":-1,"signal":"SIGKILL","timed_out":true}}`,
		`{"stdout":"not base64!"}`,
		`{"stdout":"aGkK"}`,
		`{"exit":null}{"exit":{}}`,
		"\n\n[]",
		`{"stdout":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var out, errb bytes.Buffer
		_, _ = readExecStream(bytes.NewReader(data), &out, &errb)
		if out.Len()+errb.Len() > len(data) {
			t.Fatalf("wrote %d bytes from %d bytes of input", out.Len()+errb.Len(), len(data))
		}
	})
}

func FuzzParseMode(f *testing.F) {
	for _, s := range []string{"0644", "0o755", "", "644", "7777", "10000", "-1", "0x1ff", " 0600 "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := parseMode(s)
		if err == nil && m&^0o777 != 0 {
			t.Fatalf("parseMode(%q) = %v: more than permission bits", s, m)
		}
		if err == nil && strings.TrimSpace(s) != "" && m.Perm() != m {
			t.Fatalf("parseMode(%q) = %v", s, m)
		}
	})
}

func TestParseMode(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint32
		ok   bool
	}{
		{"0644", 0o644, true}, {"0o755", 0o755, true}, {"", 0o644, true}, {"600", 0o600, true},
		{"4755", 0o755, true}, // setuid is dropped: Perm only
		{"0x1ff", 0, false}, {"9", 0, false}, {"10000", 0, false}, {"-1", 0, false},
	} {
		m, err := parseMode(tc.in)
		if (err == nil) != tc.ok || (tc.ok && uint32(m) != tc.want) {
			t.Errorf("parseMode(%q) = %o, %v; want %o ok=%v", tc.in, m, err, tc.want, tc.ok)
		}
	}
}
