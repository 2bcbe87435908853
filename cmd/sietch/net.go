package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/pflag"

	"github.com/sietch-vm/sietch/api/model"
)

// netFlags are the network flags of create and net.
type netFlags struct {
	fs       *pflag.FlagSet
	allow    []string
	deny     []string
	internet string
}

func (n *netFlags) add(fs *pflag.FlagSet) {
	n.fs = fs
	fs.StringArrayVar(&n.allow, "allow", nil, "a CIDR, address or domain name the sandbox may reach even when denied or with --internet off (repeatable; a name covers its subdomains)")
	fs.StringArrayVar(&n.deny, "deny", nil, "a CIDR, address or domain name the sandbox may not reach (repeatable; --deny 0.0.0.0/0 with --allow: only those)")
	fs.StringVar(&n.internet, "internet", "", "on or off: whether what is neither allowed nor denied is reachable (default on)")
}

// changed says whether any network flag was given.
func (n *netFlags) changed() bool {
	return n.fs.Changed("allow") || n.fs.Changed("deny") || n.fs.Changed("internet")
}

// apply puts the flags given onto spec.
func (n *netFlags) apply(spec *model.NetworkSpec) error {
	if n.fs.Changed("allow") {
		spec.Allow = n.allow
	}
	if n.fs.Changed("deny") {
		spec.Deny = n.deny
	}
	if n.fs.Changed("internet") {
		switch n.internet {
		case "on", "off":
			on := n.internet == "on"
			spec.Internet = &on
		default:
			return fmt.Errorf("--internet %q: want on or off", n.internet)
		}
	}
	return nil
}

// netChange is a parsed `sietch net`: show, or change.
type netChange struct {
	id      string
	change  bool
	enabled *bool
	clear   bool
	flags   *netFlags
}

func parseNet(fs *pflag.FlagSet, args []string) (netChange, error) {
	var n netFlags
	n.add(fs)
	clear := fs.Bool("clear", false, "empty the allow and deny lists first")
	on := fs.Bool("on", false, "let traffic pass again (a sandbox from a template starts with networking off unless its create asked)")
	off := fs.Bool("off", false, "let nothing pass (the interface stays)")
	if err := fs.Parse(args); err != nil {
		return netChange{}, err
	}
	if fs.NArg() != 1 {
		return netChange{}, errors.New("want one sandbox ID")
	}
	if *on && *off {
		return netChange{}, errors.New("give --on or --off, not both")
	}
	c := netChange{id: fs.Arg(0), clear: *clear, flags: &n}
	c.change = n.changed() || *clear || *on || *off
	if *on || *off {
		c.enabled = on
	}
	return c, (&n).apply(&model.NetworkSpec{})
}

var cmdNet = &command{
	synopsis: "net ID [--allow X]... [--deny X]... [--internet on|off] [--clear] [--on|--off]",
	summary: "Show a sandbox's network (its address, gateway and DNS server, host interface, egress policy), or change its policy while it runs: " +
		"--allow and --deny replace their list, --clear empties both, --internet decides what is on neither; a change makes networking on unless --off. " +
		"New connections follow a change at once; open ones stay. Sandboxes never reach each other or the host (but its DNS server).",
	example: "  sietch net sb-1\n  sietch net sb-1 --allow pypi.org --allow files.pythonhosted.org --internet off\n  sietch net sb-1 --deny 0.0.0.0/0 --allow 10.1.0.0/16\n  sietch net sb-1 --off\n",
	run: func(c *cli, ctx context.Context, fs *pflag.FlagSet, args []string) int {
		req, err := parseNet(fs, args)
		if rc, done := c.parsed("net", fs, err); done {
			return rc
		}
		api, err := c.connect(true)
		if err != nil {
			return c.fail("net", err)
		}
		n, err := api.Network(ctx, req.id)
		if err != nil {
			return c.fail("net", err)
		}
		if req.change {
			internet := n.Internet
			spec := model.NetworkSpec{Enabled: true, Internet: &internet, Allow: n.Allow, Deny: n.Deny}
			if req.clear {
				spec.Allow, spec.Deny = nil, nil
			}
			if req.enabled != nil {
				spec.Enabled = *req.enabled
			}
			if err := req.flags.apply(&spec); err != nil {
				return c.fail("net", err)
			}
			if n, err = api.SetNetwork(ctx, req.id, spec); err != nil {
				return c.fail("net", err)
			}
		}
		if c.g.json {
			printJSON(c.stdout, n)
			return exitOK
		}
		networkTable(c.stdout, n)
		return exitOK
	},
}

func networkTable(w io.Writer, n model.Network) error {
	onOff := func(b bool) string {
		if b {
			return "on"
		}
		return "off"
	}
	list := func(l []string) string {
		if len(l) == 0 {
			return "-"
		}
		return strings.Join(l, ", ")
	}
	return table(w, []string{"NETWORK", ""}, [][]string{
		{"enabled", onOff(n.Enabled)},
		{"internet", onOff(n.Internet)},
		{"allow", list(n.Allow)},
		{"deny", list(n.Deny)},
		{"address", n.Address},
		{"gateway/dns", n.Gateway},
		{"interface", n.Interface},
	})
}
