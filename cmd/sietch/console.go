package main

import (
	"context"
	"errors"
	"io"

	"github.com/spf13/pflag"
)

var cmdConsole = &command{
	synopsis: "console ID [-f]",
	summary:  "Print the sandbox's serial console log; -f keeps following it until the sandbox ends or Ctrl-C.",
	example:  "  sietch console sb-1 | tail\n  sietch console -f sb-1\n",
	run: func(c *cli, ctx context.Context, fs *pflag.FlagSet, args []string) int {
		follow := fs.BoolP("follow", "f", false, "keep printing new output")
		err := fs.Parse(args)
		if err == nil && fs.NArg() != 1 {
			err = errors.New("want one sandbox ID")
		}
		if rc, done := c.parsed("console", fs, err); done {
			return rc
		}
		api, err := c.connect(true)
		if err != nil {
			return c.fail("console", err)
		}
		rc, err := api.Console(ctx, fs.Arg(0), *follow)
		if err != nil {
			return c.fail("console", err)
		}
		defer rc.Close()
		if _, err := io.Copy(c.stdout, rc); err != nil && ctx.Err() == nil {
			return c.fail("console", err)
		}
		// Ctrl-C is how a follow ends; that is success.
		return exitOK
	},
}
