package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestTool(t *testing.T) {
	tests := []struct {
		args     []string
		code     int
		stdout   []string // each must appear
		stderrIn string
	}{
		{args: []string{"version"}, code: 0, stdout: []string{"sietch guest-init ", " go1."}},
		{args: []string{"info"}, code: 0, stdout: []string{"version sietch guest-init", "\nhostname ", "\nmount /proc proc ", "\nenv PATH="}},
		{args: []string{"help"}, code: 0, stdout: []string{"usage: guest-init"}},
		{args: nil, code: 2, stderrIn: "usage: guest-init"},
		{args: []string{"version", "extra"}, code: 2, stderrIn: "usage: guest-init"},
		{args: []string{"frob"}, code: 2, stderrIn: `unknown command "frob"`},
	}
	for _, tt := range tests {
		var out, errb bytes.Buffer
		code := tool(tt.args, &out, &errb)
		if code != tt.code {
			t.Errorf("guest-init %q: exit %d, want %d (stderr %q)", tt.args, code, tt.code, errb.String())
		}
		for _, s := range tt.stdout {
			if !strings.Contains(out.String(), s) {
				t.Errorf("guest-init %q: stdout lacks %q:\n%s", tt.args, s, out.String())
			}
		}
		if !strings.Contains(errb.String(), tt.stderrIn) {
			t.Errorf("guest-init %q: stderr %q lacks %q", tt.args, errb.String(), tt.stderrIn)
		}
	}
}
