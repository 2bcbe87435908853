package hostnet

import (
	"fmt"
	"github.com/miekg/dns"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestParseEntry(t *testing.T) {
	for _, tc := range []struct {
		in, net, name, err string
	}{
		{in: "10.0.0.0/8", net: "10.0.0.0/8"},
		{in: "10.1.2.3/8", net: "10.0.0.0/8"},
		{in: "1.2.3.4", net: "1.2.3.4/32"},
		{in: "0.0.0.0/0", net: "0.0.0.0/0"},
		{in: "Example.ORG.", name: "example.org"},
		{in: "pypi.org", name: "pypi.org"},
		{in: "_dmarc.x.io", name: "_dmarc.x.io"},
		{in: "", err: "empty"},
		{in: "::1", err: "only IPv4"},
		{in: "2001:db8::/32", err: "only IPv4"},
		{in: "1.2.3", err: "not a CIDR"},
		{in: "10.0.0.0/33", err: "not a CIDR"},
		{in: "*.example.org", err: "no wildcards"},
		{in: "a..b", err: "1 to 63"},
		{in: "-a.b", err: "starts and ends"},
		{in: "a b.c", err: "not a letter"},
		{in: "ex;ample.org", err: "not a letter"},
		{in: strings.Repeat("a", 64) + ".org", err: "1 to 63"},
		{in: strings.Repeat("abcdefghi.", 26), err: "253"},
	} {
		n, name, err := ParseEntry(tc.in)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseEntry(%q) = %v, %q, %v; want an error with %q", tc.in, n, name, err, tc.err)
			}
		case err != nil:
			t.Errorf("ParseEntry(%q): %v", tc.in, err)
		case tc.net != "" && n.String() != tc.net, name != tc.name:
			t.Errorf("ParseEntry(%q) = %v, %q; want %q, %q", tc.in, n, name, tc.net, tc.name)
		}
	}
}

func TestParsePolicy(t *testing.T) {
	p, err := ParsePolicy(true, false, []string{"example.org", "10.0.0.0/8", "example.org", "10.1.0.0/8"}, []string{"0.0.0.0/0", "bad.example"})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Allow(); !slices.Equal(got, []string{"10.0.0.0/8", "example.org"}) {
		t.Errorf("Allow() = %v (duplicates kept?)", got)
	}
	if got := p.Deny(); !slices.Equal(got, []string{"0.0.0.0/0", "bad.example"}) {
		t.Errorf("Deny() = %v", got)
	}
	long := make([]string, MaxEntries+1)
	for i := range long {
		long[i] = fmt.Sprintf("10.0.%d.0/24", i)
	}
	if _, err := ParsePolicy(true, true, long, nil); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Errorf("a list of %d entries: %v; want refused", len(long), err)
	}
	if _, err := ParsePolicy(true, true, nil, []string{"x..y"}); err == nil || !strings.Contains(err.Error(), `deny entry "x..y"`) {
		t.Errorf("a bad deny entry: %v; want it named", err)
	}
}

func TestNameVerdict(t *testing.T) {
	on, _ := ParsePolicy(true, true, []string{"pypi.org"}, []string{"evil.com"})
	off, _ := ParsePolicy(true, false, []string{"pypi.org"}, nil)
	disabled, _ := ParsePolicy(false, true, []string{"pypi.org"}, nil)
	for _, tc := range []struct {
		p    Policy
		name string
		want nameVerdict
	}{
		{on, "pypi.org.", nameAllow},
		{on, "files.PYPI.org.", nameAllow},
		{on, "notpypi.org.", nameForward},
		{on, "evil.com.", nameRefuse},
		{on, "a.evil.com.", nameRefuse},
		{on, "example.net.", nameForward},
		{off, "pypi.org.", nameAllow},
		{off, "example.net.", nameRefuse},
		{disabled, "pypi.org.", nameRefuse},
		// An escaped dot is part of a label: not a name under pypi.org.
		{off, `attacker\.pypi.org.`, nameRefuse},
		{on, `x\.pypi.org.`, nameForward},
		{on, `x\.evil.com.`, nameForward},
		{off, "FILES.pypi.ORG", nameAllow},
	} {
		if got := tc.p.nameVerdict(tc.name); got != tc.want {
			t.Errorf("%+v: nameVerdict(%q) = %v, want %v", tc.p, tc.name, got, tc.want)
		}
	}
}

func TestPool(t *testing.T) {
	p, err := NewPool(netip.MustParsePrefix("10.99.0.0/29"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := p.Allocate("sb-a")
	if err != nil || a.Gateway.String() != "10.99.0.1" || a.Guest.String() != "10.99.0.2" {
		t.Fatalf("first lease %+v, %v; want 10.99.0.1 and .2", a, err)
	}
	if again, _ := p.Allocate("sb-a"); again != a {
		t.Errorf("allocating twice gave %+v then %+v", a, again)
	}
	b, err := p.Allocate("sb-b")
	if err != nil || b.Guest.String() != "10.99.0.6" {
		t.Fatalf("second lease %+v, %v; want guest 10.99.0.6", b, err)
	}
	if _, err := p.Allocate("sb-c"); err == nil || !strings.Contains(err.Error(), "--net-pool") {
		t.Errorf("a full pool: %v; want an error naming --net-pool", err)
	}
	p.Release("sb-a")
	if c, err := p.Allocate("sb-c"); err != nil || c != a {
		t.Errorf("after a release: %+v, %v; want %+v", c, err, a)
	}

	// A restart: the records give the leases back.
	q, _ := NewPool(netip.MustParsePrefix("10.99.0.0/29"))
	if l, err := q.Reserve("sb-b", b.Guest); err != nil || l != b {
		t.Errorf("Reserve(sb-b, %v) = %+v, %v", b.Guest, l, err)
	}
	if _, err := q.Reserve("sb-x", b.Guest); err == nil {
		t.Error("reserving another sandbox's address succeeded")
	}
	if _, err := q.Reserve("sb-x", netip.MustParseAddr("10.99.0.5")); err == nil {
		t.Error("reserving a gateway address succeeded")
	}
	if _, err := q.Reserve("sb-x", netip.MustParseAddr("10.98.0.2")); err == nil || !strings.Contains(err.Error(), "outside") {
		t.Errorf("reserving outside the pool: %v", err)
	}
	if l, _ := q.Allocate("sb-new"); l.Guest.String() != "10.99.0.2" {
		t.Errorf("after Reserve, Allocate gave %v; want the free 10.99.0.2", l.Guest)
	}

	for _, bad := range []string{"10.0.0.0/31", "2001:db8::/64"} {
		if _, err := NewPool(netip.MustParsePrefix(bad)); err == nil {
			t.Errorf("NewPool(%s) succeeded", bad)
		}
	}
}

func TestLinkName(t *testing.T) {
	if n, err := LinkName("sb-0123456789"); err != nil || n != "sx0123456789" {
		t.Errorf("LinkName(sb-0123456789) = %q, %v", n, err)
	}
	for _, bad := range []string{"sb-0123456789abcdef", "sb-", "sb-A/b"} {
		if n, err := LinkName(bad); err == nil {
			t.Errorf("LinkName(%q) = %q; want an error", bad, n)
		}
	}
}

// FuzzPolicyNames: client entries and guest query names of any shape
// never panic; a policy that parses round-trips through its entries; a
// name allowed by an allow-list entry is that entry or under it, label by
// label.
func FuzzPolicyNames(f *testing.F) {
	for _, s := range [][2]string{{"pypi.org", "files.pypi.org."}, {"10.0.0.0/8", `x\.pypi.org.`}, {"a.b", "A.B"}, {"", "."}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, entry, query string) {
		p, err := ParsePolicy(true, false, []string{entry}, nil)
		if err != nil {
			return
		}
		again, err := ParsePolicy(true, false, p.Allow(), p.Deny())
		if err != nil || !slices.Equal(again.Allow(), p.Allow()) {
			t.Fatalf("entry %q: %v round-trips to %v (%v)", entry, p.Allow(), again.Allow(), err)
		}
		if p.nameVerdict(query) == nameAllow {
			if len(p.AllowNames) != 1 || dns.CompareDomainName(dns.Fqdn(p.AllowNames[0]), dns.Fqdn(query)) != dns.CountLabel(dns.Fqdn(p.AllowNames[0])) {
				t.Fatalf("query %q allowed by %v", query, p.Allow())
			}
		}
	})
}
