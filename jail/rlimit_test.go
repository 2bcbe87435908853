package jail

import (
	"strings"
	"testing"
)

func TestParseRlimits(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Rlimits
		wantErr string
	}{
		{"", Rlimits{}, ""},
		{"nofile=64", Rlimits{NoFile: 64}, ""},
		{"nofile=64,as=4294967296,data=0,nproc=10", Rlimits{NoFile: 64, AS: 4 << 30, NProc: 10}, ""},
		{"nofile", Rlimits{}, "name=value"},
		{"nofile=-1", Rlimits{}, "nofile"},
		{"nofile=1,nofile=2", Rlimits{}, "twice"},
		{"stack=1", Rlimits{}, "unknown"},
		{"nofile=99999999999999999999", Rlimits{}, "range"},
	} {
		got, err := parseRlimits(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parseRlimits(%q) error %v, want one mentioning %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseRlimits(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func TestRlimitsStricterAndDefaults(t *testing.T) {
	a := Rlimits{NoFile: 32, AS: 3 << 30}
	b := Rlimits{NoFile: 16, Data: 1 << 20}
	got := a.stricter(b).withDefaults()
	want := Rlimits{NoFile: 16, AS: 3 << 30, Data: 1 << 20}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if d := (Rlimits{}).withDefaults(); d != DefaultRlimits {
		t.Fatalf("defaults %+v, want %+v", d, DefaultRlimits)
	}
}

// FuzzParseRlimits: the environment is the child's input; parsing never
// panics and whatever parses survives a round trip.
func FuzzParseRlimits(f *testing.F) {
	f.Add("nofile=64,as=4294967296,data=0,nproc=0")
	f.Add("nofile=1,,")
	f.Add("=")
	f.Fuzz(func(t *testing.T, s string) {
		r, err := parseRlimits(s)
		if err != nil {
			return
		}
		again, err := parseRlimits(r.String())
		if err != nil || again != r {
			t.Fatalf("round trip of %q: %+v -> %q -> %+v, %v", s, r, r.String(), again, err)
		}
	})
}
