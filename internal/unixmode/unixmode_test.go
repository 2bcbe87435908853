package unixmode

import (
	"os"
	"testing"
)

func TestParseFormat(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want os.FileMode
		ok   bool
	}{
		{"0644", 0o644, true},
		{"755", 0o755, true},
		{"4755", 0o755 | os.ModeSetuid, true},
		{"01777", 0o777 | os.ModeSticky, true},
		{"2750", 0o750 | os.ModeSetgid, true},
		{"", 0, false},
		{"8", 0, false},
		{"17777", 0, false},
		{"000644", 0, false},
		{"-1", 0, false},
		{"0x1ff", 0, false},
	} {
		got, err := Parse(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("Parse(%q) = %v, %v; want %v ok=%v", tt.in, got, err, tt.want, tt.ok)
			continue
		}
		if tt.ok {
			if back, _ := Parse(Format(got)); back != got {
				t.Errorf("Format(%v) = %q does not parse back", got, Format(got))
			}
		}
	}
	if Format(0o4755) != "4755" {
		t.Errorf("Format(0o4755) = %q; Unix special bits should count", Format(0o4755))
	}
}
