package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/spf13/pflag"

	"github.com/sietch-vm/sietch/api/model"
)

// portCmd is a parsed `sietch port`: list, forward or close.
type portCmd struct {
	id    string
	req   model.PortRequest // GuestPort 0: not forwarding
	close int               // host port to close; 0: not closing
}

func parsePort(fs *pflag.FlagSet, args []string) (portCmd, error) {
	var p portCmd
	fs.IntVar(&p.req.HostPort, "host-port", 0, "host TCP port to listen on (default: any free port)")
	fs.StringVar(&p.req.HostAddr, "host-addr", "", "host address to listen on (default 127.0.0.1)")
	fs.IntVar(&p.close, "close", 0, "close the forward listening on this host port")
	if err := fs.Parse(args); err != nil {
		return p, err
	}
	if fs.NArg() < 1 || fs.NArg() > 2 {
		return p, errors.New("want ID [GUEST_PORT]")
	}
	p.id = fs.Arg(0)
	if fs.NArg() == 2 {
		n, err := strconv.Atoi(fs.Arg(1))
		if err != nil || n < 1 || n > 65535 {
			return p, fmt.Errorf("guest port %q: want 1..65535", fs.Arg(1))
		}
		p.req.GuestPort = n
	}
	if p.req.HostPort < 0 || p.req.HostPort > 65535 || p.close < 0 || p.close > 65535 {
		return p, errors.New("host ports are 1..65535")
	}
	switch {
	case p.close != 0 && (p.req.GuestPort != 0 || p.req.HostPort != 0 || p.req.HostAddr != ""):
		return p, errors.New("--close takes no GUEST_PORT, --host-port or --host-addr")
	case p.req.GuestPort == 0 && (p.req.HostPort != 0 || p.req.HostAddr != ""):
		return p, errors.New("--host-port and --host-addr go with a GUEST_PORT")
	}
	return p, nil
}

var cmdPort = &command{
	synopsis: "port ID [GUEST_PORT [--host-port P] [--host-addr A]] | port ID --close HOST_PORT",
	summary: "Forward a host TCP port to GUEST_PORT in the sandbox and print host:port; with no GUEST_PORT,\n" +
		"list the sandbox's forwards; --close removes one. Forwards end with the sandbox.",
	example: "  sietch port sb-1 8000 --host-port 8080 && curl http://127.0.0.1:8080/\n  sietch port sb-1\n  sietch port sb-1 --close 8080\n",
	run: func(c *cli, ctx context.Context, fs *pflag.FlagSet, args []string) int {
		p, err := parsePort(fs, args)
		if rc, done := c.parsed("port", fs, err); done {
			return rc
		}
		api, err := c.connect(true)
		if err != nil {
			return c.fail("port", err)
		}
		switch {
		case p.close != 0:
			if err := api.ClosePort(ctx, p.id, p.close); err != nil {
				return c.fail("port", err)
			}
		case p.req.GuestPort != 0:
			fwd, err := api.ForwardPort(ctx, p.id, p.req)
			if err != nil {
				return c.fail("port", err)
			}
			if c.g.json {
				printJSON(c.stdout, fwd)
			} else {
				fmt.Fprintf(c.stdout, "%s:%d\n", fwd.HostAddr, fwd.HostPort)
			}
		default:
			ports, err := api.Ports(ctx, p.id)
			if err != nil {
				return c.fail("port", err)
			}
			if c.g.json {
				printJSON(c.stdout, map[string][]model.Port{"ports": nonNil(ports)})
			} else {
				portTable(c.stdout, ports)
			}
		}
		return exitOK
	},
}
