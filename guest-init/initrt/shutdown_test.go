package initrt

import "testing"

func TestParseStat(t *testing.T) {
	tests := []struct {
		in   string
		want ProcStat
		ok   bool
	}{
		{"42 (bash) S 1 42 42 34816 42 4194560 100 0", ProcStat{State: 'S', PPID: 1}, true},
		{"2 (kthreadd) S 0 0 0 0 -1 2129984 0 0", ProcStat{State: 'S', KernelThread: true}, true},
		{"7 (a) b) c) Z 1 7 7 0 -1 4194564 0", ProcStat{State: 'Z', PPID: 1}, true},
		{"9 (sh) R", ProcStat{}, false},
		{"no parens", ProcStat{}, false},
		{"1 (x) S one 1 1 0 -1 0", ProcStat{}, false},
		{"1 (x) SS 1 1 1 0 -1 0", ProcStat{}, false},
	}
	for _, tt := range tests {
		got, ok := ParseStat([]byte(tt.in))
		if ok != tt.ok || got != tt.want {
			t.Errorf("ParseStat(%q) = %+v, %v; want %+v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}
