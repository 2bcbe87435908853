package initrt

import "testing"

func TestResolvConf(t *testing.T) {
	for _, tt := range []struct{ cmdline, want string }{
		{"", ""},
		{"sietch.dns=1.1.1.1,8.8.8.8", "# written by sietch guest-init from sietch.dns=\nnameserver 1.1.1.1\nnameserver 8.8.8.8\n"},
	} {
		cfg, _ := ParseCmdline(tt.cmdline)
		if got := ResolvConf(cfg); got != tt.want {
			t.Errorf("ResolvConf(%q) = %q, want %q", tt.cmdline, got, tt.want)
		}
	}
}
