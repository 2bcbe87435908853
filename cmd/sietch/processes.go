package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/pflag"

	"github.com/sietch-vm/sietch/api/model"
)

// parseProc reads `ID PROC`.
func parseProc(fs *pflag.FlagSet, args []string) (id, proc string, err error) {
	if err := fs.Parse(args); err != nil {
		return "", "", err
	}
	if fs.NArg() != 2 {
		return "", "", errors.New("want a sandbox ID and a process id (sietch ps ID lists them)")
	}
	return fs.Arg(0), fs.Arg(1), nil
}

var cmdPs = &command{
	synopsis: "ps ID",
	summary: "List a sandbox's processes: the commands running through exec, and the background ones\n" +
		"(exec -d, a template's start command), which stay listed after they exit until sietch kill --rm.",
	example: "  sietch ps sb-1\n",
	run: func(c *cli, ctx context.Context, fs *pflag.FlagSet, args []string) int {
		err := fs.Parse(args)
		if err == nil && fs.NArg() != 1 {
			err = errors.New("want one sandbox ID")
		}
		if rc, done := c.parsed("ps", fs, err); done {
			return rc
		}
		api, err := c.connect(true)
		if err != nil {
			return c.fail("ps", err)
		}
		ps, err := api.Processes(ctx, fs.Arg(0))
		if err != nil {
			return c.fail("ps", err)
		}
		if c.g.json {
			printJSON(c.stdout, map[string][]model.Process{"processes": ps})
			return exitOK
		}
		rows := make([][]string, 0, len(ps))
		for _, p := range ps {
			state := p.State
			if p.Exit != nil {
				rc, msg := execStatus(*p.Exit)
				state = fmt.Sprintf("exited %d", rc)
				if msg != "" {
					state = "exited (" + msg + ")"
				}
			}
			kind := "exec"
			if p.Detached {
				kind = "background"
			}
			if p.TTY {
				kind += ", tty"
			}
			cmd := strings.Join(append([]string{p.Cmd}, p.Args...), " ")
			if len(cmd) > 60 {
				cmd = cmd[:57] + "..."
			}
			rows = append(rows, []string{p.ID, fmt.Sprint(p.PID), state, kind, humanBytes(p.OutputBytes), age(c.now(), p.StartedAt), cmd})
		}
		table(c.stdout, []string{"ID", "PID", "STATE", "KIND", "OUTPUT", "STARTED", "COMMAND"}, rows)
		return exitOK
	},
}

var cmdLogs = &command{
	synopsis: "logs [-f] ID PROC",
	summary: "Print a background process's output from its start (the last 256 KiB are kept; what was\n" +
		"lost is said on stderr), stdout to stdout and stderr to stderr; -f follows it until it exits.",
	example: "  id=$(sietch exec -d sb-1 -- make -C /src)\n  sietch logs -f sb-1 $id\n",
	run: func(c *cli, ctx context.Context, fs *pflag.FlagSet, args []string) int {
		follow := fs.BoolP("follow", "f", false, "go on until the process exits")
		id, proc, err := parseProc(fs, args)
		if rc, done := c.parsed("logs", fs, err); done {
			return rc
		}
		api, err := c.connect(true)
		if err != nil {
			return c.fail("logs", err)
		}
		_, dropped, err := api.ProcessOutput(ctx, id, proc, 0, *follow, c.stdout, c.stderr)
		if dropped > 0 {
			fmt.Fprintf(c.stderr, "sietch logs: the first %s of output were dropped (256 KiB are kept)\n", humanBytes(dropped))
		}
		if err != nil {
			if ctx.Err() != nil {
				return exitInterrupted
			}
			return c.fail("logs", err)
		}
		return exitOK
	},
}

var cmdKill = &command{
	synopsis: "kill [-s SIGNAL] [--rm] ID PROC",
	summary: "Send a signal (default TERM) to a process's group; --rm instead kills it if it runs and\n" +
		"forgets it and its output.",
	example: "  sietch kill sb-1 proc-1a2b\n  sietch kill -s INT sb-1 proc-1a2b\n  sietch kill --rm sb-1 proc-1a2b\n",
	run: func(c *cli, ctx context.Context, fs *pflag.FlagSet, args []string) int {
		sig := fs.StringP("signal", "s", "TERM", "signal name or number")
		rm := fs.Bool("rm", false, "kill it if it runs, and remove it from the list")
		id, proc, err := parseProc(fs, args)
		if err == nil && *rm && fs.Changed("signal") {
			err = errors.New("--rm and --signal: give one")
		}
		if rc, done := c.parsed("kill", fs, err); done {
			return rc
		}
		api, err := c.connect(true)
		if err != nil {
			return c.fail("kill", err)
		}
		if *rm {
			err = api.DeleteProcess(ctx, id, proc)
		} else {
			err = api.SignalProcess(ctx, id, proc, *sig)
		}
		if err != nil {
			return c.fail("kill", err)
		}
		return exitOK
	},
}

var cmdWait = &command{
	synopsis: "wait ID PROC",
	summary:  "Wait for a process to exit, and exit with its status (128+N when signal N ended it).",
	example:  "  id=$(sietch exec -d sb-1 -- make -C /src)\n  sietch wait sb-1 $id && echo built\n",
	run: func(c *cli, ctx context.Context, fs *pflag.FlagSet, args []string) int {
		id, proc, err := parseProc(fs, args)
		if rc, done := c.parsed("wait", fs, err); done {
			return rc
		}
		api, err := c.connect(true)
		if err != nil {
			return c.fail("wait", err)
		}
		p, err := api.WaitProcess(ctx, id, proc)
		if err != nil {
			if ctx.Err() != nil {
				return exitInterrupted
			}
			return c.fail("wait", err)
		}
		if c.g.json {
			printJSON(c.stdout, p)
		}
		if p.Exit == nil {
			return c.fail("wait", fmt.Errorf("process %s has no exit status yet", proc))
		}
		rc, msg := execStatus(*p.Exit)
		if msg != "" {
			fmt.Fprintf(c.stderr, "sietch wait: %s\n", msg)
		}
		return rc
	},
}
