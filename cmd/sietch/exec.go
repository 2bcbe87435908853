package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/sietch-vm/sietch/api/model"
)

// maxExecStdin bounds -i: stdin travels inside the JSON request.
const maxExecStdin = 16 << 20

// Exit statuses exec reports for itself, as sh and timeout(1) do.
const (
	exitTimedOut    = 124
	exitInterrupted = 130 // 128 + SIGINT
)

type execCmd struct {
	id    string
	req   model.ExecRequest
	stdin bool // send our stdin
}

// parseExec reads `exec [flags] ID [flags] [--] CMD [ARGS...]`: flags stop
// at the command, so its own flags need no quoting.
func parseExec(fs *pflag.FlagSet, args []string) (execCmd, error) {
	var x execCmd
	var env []string
	var timeout time.Duration
	fs.SetInterspersed(false)
	fs.StringArrayVarP(&env, "env", "e", nil, "environment variable KEY=VALUE (repeatable)")
	fs.StringVarP(&x.req.Cwd, "cwd", "w", "", "working directory in the sandbox")
	fs.DurationVar(&timeout, "timeout", 0, "kill the command after this long, e.g. 30s (exit status 124)")
	fs.BoolVarP(&x.stdin, "stdin", "i", false, "send our stdin (read to EOF first, at most 16 MiB) to the command")
	if err := fs.Parse(args); err != nil {
		return x, err
	}
	if fs.NArg() == 0 {
		return x, errors.New("want a sandbox ID and a command")
	}
	x.id = fs.Arg(0)
	if err := fs.Parse(fs.Args()[1:]); err != nil { // flags between ID and "--"
		return x, err
	}
	if fs.NArg() == 0 || fs.Arg(0) == "" {
		return x, errors.New("want a command after the sandbox ID")
	}
	x.req.Cmd, x.req.Args = fs.Arg(0), fs.Args()[1:]
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return x, fmt.Errorf("--env %q: want KEY=VALUE", kv)
		}
		if x.req.Env == nil {
			x.req.Env = map[string]string{}
		}
		x.req.Env[k] = v
	}
	if timeout < 0 || (timeout > 0 && timeout < time.Millisecond) {
		return x, fmt.Errorf("--timeout %v: want at least 1ms", timeout)
	}
	x.req.TimeoutMS = int(timeout / time.Millisecond)
	return x, nil
}

var cmdExec = &command{
	synopsis: "exec [-e K=V]... [-w DIR] [--timeout D] [-i] ID [--] CMD [ARGS...]",
	summary: "Run CMD in the sandbox, streaming its stdout and stderr to ours as it runs, and exit with its\n" +
		"status (128+N when signal N ended it, 124 on --timeout, 130 when interrupted here).",
	example: "  sietch exec sb-1 -- python3 -c 'print(6*7)'\n  echo hello | sietch exec -i sb-1 -- sh -c 'cat > /tmp/x'\n",
	run: func(c *cli, ctx context.Context, fs *pflag.FlagSet, args []string) int {
		x, err := parseExec(fs, args)
		if rc, done := c.parsed("exec", fs, err); done {
			return rc
		}
		if x.stdin {
			b, err := io.ReadAll(io.LimitReader(c.stdin, maxExecStdin+1))
			if err != nil {
				return c.fail("exec", fmt.Errorf("read stdin: %w", err))
			}
			if len(b) > maxExecStdin {
				return c.fail("exec", errors.New("stdin is over 16 MiB: copy it in with sietch cp and redirect inside the sandbox"))
			}
			x.req.Stdin = base64.StdEncoding.EncodeToString(b)
		}
		api, err := c.connect(true)
		if err != nil {
			return c.fail("exec", err)
		}
		exit, err := api.Exec(ctx, x.id, x.req, c.stdout, c.stderr)
		if err != nil {
			if ctx.Err() != nil {
				fmt.Fprintln(c.stderr, "sietch exec: interrupted")
				return exitInterrupted
			}
			return c.fail("exec", err)
		}
		rc, msg := execStatus(exit)
		if msg != "" {
			fmt.Fprintf(c.stderr, "sietch exec: %s\n", msg)
		}
		return rc
	},
}

// execStatus maps how the command ended to our exit status, with a note
// for stderr when the status alone would not say it.
func execStatus(e model.ExecExit) (int, string) {
	if e.TimedOut {
		return exitTimedOut, "the command timed out"
	}
	if e.Signal != "" {
		if n := signalNumber(e.Signal); n > 0 {
			return 128 + n, ""
		}
		return exitError, "the command was ended by signal " + e.Signal
	}
	if e.Code < 0 || e.Code > 255 {
		return exitError, fmt.Sprintf("the command exited with status %d", e.Code)
	}
	return e.Code, ""
}

// signalNumber reads "SIGKILL", "KILL" or "9"; 0 when unknown.
func signalNumber(s string) int {
	if n, err := strconv.Atoi(s); err == nil && n > 0 && n < 128 {
		return n
	}
	s = strings.ToUpper(s)
	if !strings.HasPrefix(s, "SIG") {
		s = "SIG" + s
	}
	return int(unix.SignalNum(s))
}
