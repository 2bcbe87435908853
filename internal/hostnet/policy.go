package hostnet

import (
	"fmt"
	"github.com/miekg/dns"
	"net/netip"
	"slices"
	"strings"
)

// MaxEntries bounds each of a policy's lists (allow, deny): every entry
// is a rule or a name to match, and a client must not make either list
// grow without end.
const MaxEntries = 64

// Policy is one sandbox's egress policy. The order of the checks, for a
// new connection from the sandbox to address A:
//
//  1. A is in an allowed CIDR, or an allowed name resolved to A through
//     the sandbox's DNS forwarder: accepted;
//  2. A is in a denied CIDR: refused;
//  3. otherwise accepted when Internet is on, refused when off.
//
// A name on the deny list is answered REFUSED by the forwarder; with
// Internet off every name not on the allow list is, so DNS cannot carry
// data out of a sandbox that may not reach the internet. Whatever the
// policy, a sandbox never reaches another sandbox, nor the host except its
// DNS forwarder; only connections it opened are let back in.
type Policy struct {
	// Enabled: the sandbox has network at all. Off, its interface exists
	// (a snapshot's virtio-net device needs one) but nothing passes.
	Enabled               bool
	Internet              bool
	AllowNets, DenyNets   []netip.Prefix // IPv4 only: sandboxes have no IPv6 route
	AllowNames, DenyNames []string       // lower case, no trailing dot; each also matches its subdomains
}

// ParsePolicy makes a policy from a client's lists, whose entries are
// IPv4 CIDRs, IPv4 addresses (a /32) or domain names. It refuses
// malformed entries, IPv6, and lists longer than MaxEntries.
func ParsePolicy(enabled, internet bool, allow, deny []string) (Policy, error) {
	p := Policy{Enabled: enabled, Internet: internet}
	var err error
	if p.AllowNets, p.AllowNames, err = parseEntries("allow", allow); err != nil {
		return Policy{}, err
	}
	if p.DenyNets, p.DenyNames, err = parseEntries("deny", deny); err != nil {
		return Policy{}, err
	}
	return p, nil
}

// Allow and Deny give the policy's lists back as a client wrote them
// (normalized): CIDRs, then names.
func (p Policy) Allow() []string { return entries(p.AllowNets, p.AllowNames) }

// Deny: see Allow.
func (p Policy) Deny() []string { return entries(p.DenyNets, p.DenyNames) }

func entries(nets []netip.Prefix, names []string) []string {
	out := make([]string, 0, len(nets)+len(names))
	for _, n := range nets {
		out = append(out, n.String())
	}
	return append(out, names...)
}

func parseEntries(list string, in []string) ([]netip.Prefix, []string, error) {
	if len(in) > MaxEntries {
		return nil, nil, fmt.Errorf("the %s list has %d entries; at most %d are allowed", list, len(in), MaxEntries)
	}
	var nets []netip.Prefix
	var names []string
	for _, e := range in {
		n, name, err := ParseEntry(e)
		if err != nil {
			return nil, nil, fmt.Errorf("%s entry %q: %w", list, e, err)
		}
		if name != "" {
			if !slices.Contains(names, name) {
				names = append(names, name)
			}
		} else if !slices.Contains(nets, n) {
			nets = append(nets, n)
		}
	}
	return nets, names, nil
}

// ParseEntry parses one allow or deny entry: an IPv4 CIDR or address
// (returned as a masked prefix), or a domain name (returned normalized).
func ParseEntry(e string) (netip.Prefix, string, error) {
	s := strings.TrimSpace(e)
	if s == "" {
		return netip.Prefix{}, "", fmt.Errorf("empty entry: give a CIDR (10.0.0.0/8), an address or a domain name")
	}
	if strings.ContainsAny(s, "/:") || isDigitsAndDots(s) {
		var p netip.Prefix
		var err error
		if strings.Contains(s, "/") {
			p, err = netip.ParsePrefix(s)
		} else {
			var a netip.Addr
			if a, err = netip.ParseAddr(s); err == nil {
				p = netip.PrefixFrom(a, a.BitLen())
			}
		}
		if err != nil {
			return netip.Prefix{}, "", fmt.Errorf("not a CIDR or address: %w", err)
		}
		if !p.Addr().Is4() || p.Addr().Zone() != "" {
			return netip.Prefix{}, "", fmt.Errorf("only IPv4 is routed to sandboxes; give an IPv4 CIDR or address")
		}
		return p.Masked(), "", nil
	}
	name, err := normalizeName(s)
	return netip.Prefix{}, name, err
}

func isDigitsAndDots(s string) bool {
	for _, c := range s {
		if (c < '0' || c > '9') && c != '.' {
			return false
		}
	}
	return true
}

// normalizeName checks a domain name (RFC 1035 §2.3.4 lengths; letters,
// digits, '-' and '_') and returns it in lower case without a trailing dot.
func normalizeName(s string) (string, error) {
	s = strings.ToLower(strings.TrimSuffix(s, "."))
	if strings.HasPrefix(s, "*.") {
		return "", fmt.Errorf("no wildcards: a name already matches its subdomains (give %q)", s[2:])
	}
	if len(s) > 253 {
		return "", fmt.Errorf("a domain name has at most 253 characters")
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 {
			return "", fmt.Errorf("not a domain name: each label has 1 to 63 characters")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return "", fmt.Errorf("not a domain name: a label starts and ends with a letter or digit")
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return "", fmt.Errorf("not a domain name: %q is not a letter, digit, '-' or '_'", c)
			}
		}
	}
	return s, nil
}

// nameVerdict is what the DNS forwarder does with a query for name.
type nameVerdict int

const (
	nameRefuse  nameVerdict = iota // answer REFUSED
	nameForward                    // forward, answer
	nameAllow                      // forward, answer, and let the sandbox reach the A records
)

func (p Policy) nameVerdict(name string) nameVerdict {
	name = dns.Fqdn(name)
	switch {
	case !p.Enabled:
		return nameRefuse
	case matchName(p.AllowNames, name):
		return nameAllow
	case matchName(p.DenyNames, name), !p.Internet:
		return nameRefuse
	}
	return nameForward
}

// matchName: the query name (fully qualified, as it came) is one of names
// or a subdomain of one, compared label by label and without regard to
// case: a query for `x\.pypi.org` is the label "x.pypi" under org, not a
// name under pypi.org.
func matchName(names []string, name string) bool {
	for _, n := range names {
		if dns.IsSubDomain(dns.Fqdn(n), name) {
			return true
		}
	}
	return false
}
