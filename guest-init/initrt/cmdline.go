// Package initrt is the logic of the guest's PID 1: command line, mounts, network, root switch and shutdown.
package initrt

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// DefaultHostname is the guest's hostname when sietch.hostname= is absent.
const DefaultHostname = "sietch"

// OverlayTmpfs is the sietch.overlay= value (and default) for a writable
// layer in guest memory that is gone at power off.
const OverlayTmpfs = "tmpfs"

// Config is what the kernel command line asks of guest-init.
type Config struct {
	Hostname string       // sietch.hostname=, DefaultHostname if absent
	Addr     netip.Prefix // sietch.ip=10.0.2.15/24: eth0's IPv4 address; invalid if absent
	Gateway  netip.Addr   // sietch.gw=10.0.2.2: default route; invalid if absent
	DNS      []netip.Addr // sietch.dns=1.1.1.1[,8.8.8.8]: written to /etc/resolv.conf
	Root     string       // sietch.root=/dev/vda: ext4 device mounted read-only as the root's lower layer; "" stays in the initramfs
	Overlay  string       // sietch.overlay=/dev/vdb (ext4) or tmpfs (default): the root's writable layer
	Compat   bool         // sietch.compat: the vmm's compatibility profile is on (keep userspace off AVX)
	Debug    bool         // sietch.debug: log at debug level, with the time of each start-up step
}

// SplitCmdline splits a kernel command line into words as the kernel does
// (init/main.c, lib/cmdline.c next_arg): spaces separate words, double
// quotes group and are dropped.
func SplitCmdline(s string) []string {
	var words []string
	var b strings.Builder
	inWord, quoted := false, false
	for _, r := range s {
		switch {
		case r == '"':
			quoted = !quoted
			inWord = true
		case !quoted && (r == ' ' || r == '\t' || r == '\n'):
			if inWord {
				words = append(words, b.String())
				b.Reset()
				inWord = false
			}
		default:
			b.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, b.String())
	}
	return words
}

// ParseCmdline reads the sietch.* words of a kernel command line (the
// contents of /proc/cmdline). The kernel does not pass dotted words to init
// as arguments or environment, so /proc/cmdline is the only place to read
// them. Words it does not know are ignored. A malformed value is reported in
// the joined error and left at its default; the rest of Config is usable.
func ParseCmdline(cmdline string) (Config, error) {
	cfg := Config{Hostname: DefaultHostname, Overlay: OverlayTmpfs}
	var errs []error
	bad := func(word, why string) { errs = append(errs, fmt.Errorf("kernel command line %q: %s", word, why)) }
	for _, w := range SplitCmdline(cmdline) {
		key, val, hasVal := strings.Cut(w, "=")
		switch key {
		case "sietch.hostname":
			if !validHostname(val) {
				bad(w, "want a hostname of letters, digits, '-' and '.', at most 64 bytes")
				continue
			}
			cfg.Hostname = val
		case "sietch.ip":
			p, err := netip.ParsePrefix(val)
			if err != nil || !p.Addr().Is4() {
				bad(w, "want an IPv4 address with prefix length, e.g. sietch.ip=10.0.2.15/24")
				continue
			}
			cfg.Addr = p
		case "sietch.gw":
			a, err := netip.ParseAddr(val)
			if err != nil || !a.Is4() {
				bad(w, "want an IPv4 address, e.g. sietch.gw=10.0.2.2")
				continue
			}
			cfg.Gateway = a
		case "sietch.dns":
			var dns []netip.Addr
			ok := true
			for _, s := range strings.Split(val, ",") {
				a, err := netip.ParseAddr(s)
				if err != nil || !a.Is4() {
					ok = false
					break
				}
				dns = append(dns, a)
			}
			if !ok || len(dns) > 3 {
				// resolv.conf(5): the resolver uses at most 3 name servers.
				bad(w, "want 1 to 3 comma-separated IPv4 addresses, e.g. sietch.dns=1.1.1.1,8.8.8.8")
				continue
			}
			cfg.DNS = dns
		case "sietch.root":
			if !validDevice(val) {
				bad(w, "want a block device under /dev, e.g. sietch.root=/dev/vda")
				continue
			}
			cfg.Root = val
		case "sietch.overlay":
			if val != OverlayTmpfs && !validDevice(val) {
				bad(w, "want tmpfs or a block device under /dev, e.g. sietch.overlay=/dev/vdb")
				continue
			}
			cfg.Overlay = val
		case "sietch.compat", "sietch.debug":
			on, ok := parseBool(val, hasVal)
			if !ok {
				bad(w, "want no value, or one of 1, 0, on, off, true, false")
				continue
			}
			if key == "sietch.compat" {
				cfg.Compat = on
			} else {
				cfg.Debug = on
			}
		}
	}
	if cfg.Gateway.IsValid() {
		switch {
		case !cfg.Addr.IsValid():
			errs = append(errs, errors.New("kernel command line: sietch.gw needs sietch.ip (eth0 has no address to reach it from); ignoring the gateway"))
			cfg.Gateway = netip.Addr{}
		case !cfg.Addr.Masked().Contains(cfg.Gateway):
			errs = append(errs, fmt.Errorf("kernel command line: gateway %s is outside %s; ignoring the gateway", cfg.Gateway, cfg.Addr.Masked()))
			cfg.Gateway = netip.Addr{}
		}
	}
	if cfg.Root != "" && cfg.Overlay == cfg.Root {
		errs = append(errs, fmt.Errorf("kernel command line: sietch.overlay=%s is also the root device; using tmpfs", cfg.Overlay))
		cfg.Overlay = OverlayTmpfs
	}
	return cfg, errors.Join(errs...)
}

func parseBool(val string, hasVal bool) (on, ok bool) {
	if !hasVal {
		return true, true
	}
	switch val {
	case "1", "on", "true", "yes", "y":
		return true, true
	case "0", "off", "false", "no", "n":
		return false, true
	}
	return false, false
}

// validHostname follows RFC 1123 loosely; the kernel limit is 64 bytes
// (__NEW_UTS_LEN).
func validHostname(s string) bool {
	if s == "" || len(s) > 64 || s[0] == '-' || s[0] == '.' {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// validDevice accepts /dev/NAME paths without "..", so a command line cannot
// point the root mount at an arbitrary file.
func validDevice(s string) bool {
	name, ok := strings.CutPrefix(s, "/dev/")
	if !ok || name == "" || len(s) > 256 {
		return false
	}
	for _, el := range strings.Split(name, "/") {
		if el == "" || el == "." || el == ".." {
			return false
		}
	}
	return !strings.ContainsAny(s, ", \t\n\x00")
}
