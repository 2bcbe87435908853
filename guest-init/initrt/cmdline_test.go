package initrt

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestSplitCmdline(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"  console=ttyS0   quiet\n", []string{"console=ttyS0", "quiet"}},
		{`a="b c" "d e"=f g`, []string{"a=b c", "d e=f", "g"}},
		{"x\ty", []string{"x", "y"}},
		{`unterminated="a b`, []string{"unterminated=a b"}},
		{`""`, []string{""}},
	}
	for _, tt := range tests {
		if got := SplitCmdline(tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("SplitCmdline(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestParseCmdline(t *testing.T) {
	def := Config{Hostname: DefaultHostname, Overlay: OverlayTmpfs}
	with := func(f func(*Config)) Config {
		c := def
		f(&c)
		return c
	}
	ip := netip.MustParsePrefix
	addr := netip.MustParseAddr
	tests := []struct {
		name    string
		in      string
		want    Config
		wantErr []string // each must appear in the error
	}{
		{name: "empty", in: "", want: def},
		{name: "vmm defaults", in: "console=ttyS0 reboot=k panic=-1 quiet", want: def},
		{name: "everything", in: "console=ttyS0 sietch.compat sietch.hostname=box-1.lan sietch.ip=10.0.2.15/24 sietch.gw=10.0.2.2 " +
			"sietch.dns=1.1.1.1,8.8.8.8 sietch.root=/dev/vda sietch.overlay=/dev/vdb sietch.debug",
			want: Config{Hostname: "box-1.lan", Addr: ip("10.0.2.15/24"), Gateway: addr("10.0.2.2"),
				DNS: []netip.Addr{addr("1.1.1.1"), addr("8.8.8.8")}, Root: "/dev/vda", Overlay: "/dev/vdb", Compat: true, Debug: true}},
		{name: "root on tmpfs by default", in: "sietch.root=/dev/vda", want: with(func(c *Config) { c.Root = "/dev/vda" })},
		{name: "explicit tmpfs", in: "sietch.root=/dev/vda sietch.overlay=tmpfs", want: with(func(c *Config) { c.Root = "/dev/vda" })},
		{name: "compat values", in: "sietch.compat=1 sietch.debug=off", want: with(func(c *Config) { c.Compat = true })},
		{name: "later word wins", in: "sietch.hostname=a sietch.hostname=b", want: with(func(c *Config) { c.Hostname = "b" })},
		{name: "quoted", in: `"sietch.hostname=q"`, want: with(func(c *Config) { c.Hostname = "q" })},
		{name: "unknown sietch word ignored", in: "sietch.frobnicate=1 sietch.ipx=1", want: def},

		{name: "bad hostname", in: "sietch.hostname=bad_name sietch.hostname=-x", want: def,
			wantErr: []string{`"sietch.hostname=bad_name"`, `"sietch.hostname=-x"`}},
		{name: "long hostname", in: "sietch.hostname=" + strings.Repeat("a", 65), want: def, wantErr: []string{"at most 64"}},
		{name: "ip without prefix", in: "sietch.ip=10.0.2.15", want: def, wantErr: []string{"prefix length"}},
		{name: "ipv6", in: "sietch.ip=fd00::2/64 sietch.gw=fd00::1 sietch.dns=::1", want: def,
			wantErr: []string{"sietch.ip=fd00::2/64", "sietch.gw=fd00::1", "sietch.dns=::1"}},
		{name: "gw without ip", in: "sietch.gw=10.0.2.2", want: def, wantErr: []string{"needs sietch.ip"}},
		{name: "gw outside subnet", in: "sietch.ip=10.0.2.15/24 sietch.gw=10.0.3.1",
			want: with(func(c *Config) { c.Addr = ip("10.0.2.15/24") }), wantErr: []string{"outside 10.0.2.0/24"}},
		{name: "too many dns", in: "sietch.dns=1.1.1.1,1.0.0.1,8.8.8.8,8.8.4.4", want: def, wantErr: []string{"1 to 3"}},
		{name: "empty dns entry", in: "sietch.dns=1.1.1.1,", want: def, wantErr: []string{"sietch.dns"}},
		{name: "root not a device", in: "sietch.root=/etc/passwd sietch.root=/dev/../etc/x sietch.root=vda sietch.root=/dev/", want: def,
			wantErr: []string{"/etc/passwd", "/dev/../etc/x", `"sietch.root=vda"`, `"sietch.root=/dev/"`}},
		{name: "bad overlay", in: "sietch.root=/dev/vda sietch.overlay=ramfs", want: with(func(c *Config) { c.Root = "/dev/vda" }),
			wantErr: []string{"want tmpfs or a block device"}},
		{name: "overlay is the root", in: "sietch.root=/dev/vda sietch.overlay=/dev/vda",
			want: with(func(c *Config) { c.Root = "/dev/vda" }), wantErr: []string{"also the root device"}},
		{name: "bad bool", in: "sietch.compat=maybe", want: def, wantErr: []string{"sietch.compat=maybe"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCmdline(tt.in)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseCmdline(%q) =\n %+v\nwant\n %+v", tt.in, got, tt.want)
			}
			if len(tt.wantErr) == 0 && err != nil {
				t.Errorf("unexpected error: %v", err)
			}
			if len(tt.wantErr) > 0 && err == nil {
				t.Errorf("no error, want one mentioning %q", tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if err != nil && !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func FuzzParseCmdline(f *testing.F) {
	for _, s := range []string{
		"console=ttyS0 sietch.ip=10.0.2.15/24 sietch.gw=10.0.2.2 sietch.dns=1.1.1.1",
		`sietch.root=/dev/vda sietch.overlay="/dev/vdb" sietch.compat sietch.hostname=x`,
		"sietch.root=/dev/../x sietch.dns=,,, sietch.debug=",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cfg, _ := ParseCmdline(s)
		if cfg.Root != "" && !validDevice(cfg.Root) {
			t.Errorf("accepted root %q", cfg.Root)
		}
		if cfg.Overlay != OverlayTmpfs && !validDevice(cfg.Overlay) {
			t.Errorf("accepted overlay %q", cfg.Overlay)
		}
		if !validHostname(cfg.Hostname) {
			t.Errorf("accepted hostname %q", cfg.Hostname)
		}
		if cfg.Gateway.IsValid() && !cfg.Addr.Masked().Contains(cfg.Gateway) {
			t.Errorf("accepted gateway %s outside %s", cfg.Gateway, cfg.Addr)
		}
		for _, m := range Plan(cfg) {
			if strings.ContainsAny(m.Data, " \n") || strings.Count(m.Data, "lowerdir=") > 1 {
				t.Errorf("mount data %q from %q", m.Data, s)
			}
		}
	})
}
