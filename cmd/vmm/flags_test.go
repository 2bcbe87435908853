package main

import (
	"testing"
)

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"512M", 512 << 20, true}, {"2G", 2 << 30, true}, {"64k", 64 << 10, true},
		{"1GiB", 1 << 30, true}, {"4096", 4096, true}, {" 128M ", 128 << 20, true},
		{"", 0, false}, {"0", 0, false}, {"M", 0, false}, {"-1G", 0, false},
		{"1T", 0, false}, {"99999999999G", 0, false}, {"1.5G", 0, false},
	} {
		got, err := parseSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestParseDeviceFlags(t *testing.T) {
	if d, err := parseDisk("/img,ro"); err != nil || d.Path != "/img" || !d.ReadOnly {
		t.Errorf("parseDisk(/img,ro) = %+v, %v", d, err)
	}
	for _, bad := range []string{"", ",ro", "/img,rw", "/img,ro,x"} {
		if _, err := parseDisk(bad); err == nil {
			t.Errorf("parseDisk(%q) accepted", bad)
		}
	}
	if n, err := parseNet("tap0,mac=52:54:00:12:34:56"); err != nil || n.Tap != "tap0" || n.MAC.String() != "52:54:00:12:34:56" {
		t.Errorf("parseNet = %+v, %v", n, err)
	}
	for _, bad := range []string{"", ",mac=52:54:00:12:34:56", "tap0,mac=01:00:00:00:00:01", "tap0,mac=zz", "tap0,mtu=9000"} {
		if _, err := parseNet(bad); err == nil {
			t.Errorf("parseNet(%q) accepted", bad)
		}
	}
	if v, err := parseVsock("3,/tmp/v.sock"); err != nil || v.CID != 3 || v.UDS != "/tmp/v.sock" {
		t.Errorf("parseVsock = %+v, %v", v, err)
	}
	for _, bad := range []string{"", "3", "x,/p", "3,", "99999999999,/p"} {
		if _, err := parseVsock(bad); err == nil {
			t.Errorf("parseVsock(%q) accepted", bad)
		}
	}
}

// FuzzRunFlags feeds arbitrary flag values to the parsers: no panic, and
// whatever is accepted is well-formed.
func FuzzRunFlags(f *testing.F) {
	for _, s := range []string{"512M", "/img,ro", "tap0,mac=52:54:00:12:34:56", "3,/tmp/v.sock", ",,,", "=", "1G,ro"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if v, err := parseSize(s); err == nil && (v == 0 || v > 1<<46) {
			t.Errorf("parseSize(%q) accepted %d", s, v)
		}
		if d, err := parseDisk(s); err == nil && d.Path == "" {
			t.Errorf("parseDisk(%q) accepted an empty path", s)
		}
		if n, err := parseNet(s); err == nil && (n.Tap == "" || (n.MAC != nil && (len(n.MAC) != 6 || n.MAC[0]&1 != 0))) {
			t.Errorf("parseNet(%q) accepted %+v", s, n)
		}
		if v, err := parseVsock(s); err == nil && (v.UDS == "" || v.CID > 0xffffffff) {
			t.Errorf("parseVsock(%q) accepted %+v", s, v)
		}
	})
}
