package main

import (
	"context"
	"fmt"

	"github.com/spf13/pflag"

	"github.com/sietch-vm/sietch/api/model"
)

// noArgs parses a command that takes only flags.
func noArgs(fs *pflag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

var cmdImages = &command{
	synopsis: "images",
	summary:  "List the images sietchd can start sandboxes from (sietch image build makes new ones).",
	example:  "  sietch images\n",
	run: func(c *cli, ctx context.Context, fs *pflag.FlagSet, args []string) int {
		if rc, done := c.parsed("images", fs, noArgs(fs, args)); done {
			return rc
		}
		api, err := c.connect(true)
		if err != nil {
			return c.fail("images", err)
		}
		imgs, err := api.Images(ctx)
		if err != nil {
			return c.fail("images", err)
		}
		if c.g.json {
			printJSON(c.stdout, map[string][]model.Image{"images": nonNil(imgs)})
			return exitOK
		}
		imageTable(c.stdout, imgs, c.now())
		return exitOK
	},
}

var cmdHealth = &command{
	synopsis: "health",
	summary:  "Ask whether sietchd is up; prints its version, sandbox count and what it says of this host's KVM.",
	example:  "  sietch health\n  sietch --addr http://127.0.0.1:7070 health\n",
	run: func(c *cli, ctx context.Context, fs *pflag.FlagSet, args []string) int {
		if rc, done := c.parsed("health", fs, noArgs(fs, args)); done {
			return rc
		}
		api, err := c.connect(false)
		if err != nil {
			return c.fail("health", err)
		}
		h, err := api.Health(ctx)
		if err != nil {
			return c.fail("health", err)
		}
		if c.g.json {
			printJSON(c.stdout, h)
			return exitOK
		}
		fmt.Fprintf(c.stdout, "%s (sietchd %s, %d sandboxes, kvm: %s)\n", h.Status, h.Version, h.Sandboxes, h.KVM)
		return exitOK
	},
}
