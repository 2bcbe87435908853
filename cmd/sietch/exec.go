package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/sietch-vm/sietch/api/client"
	"github.com/sietch-vm/sietch/api/model"
)

// Exit statuses exec reports for itself, as sh and timeout(1) do.
const (
	exitTimedOut    = 124
	exitInterrupted = 130 // 128 + SIGINT
)

type execCmd struct {
	id     string
	req    model.ExecRequest
	stdin  bool // -i: send our stdin even from a terminal
	tty    bool // -t: run on a terminal
	detach bool // -d: run in the background
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
	fs.BoolVarP(&x.stdin, "interactive", "i", false, "send our stdin even when it is a terminal (a pipe or file is always sent, streamed)")
	fs.BoolVarP(&x.tty, "tty", "t", false, "run the command on a terminal; with -i on ours, in raw mode, with its size")
	fs.BoolVarP(&x.detach, "detach", "d", false, "start the command in the background and print its process id (see ps, logs, kill, wait)")
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
	if x.detach && x.stdin {
		return x, errors.New("-d and -i: a background command takes no stdin")
	}
	x.req.Detach = x.detach
	return x, nil
}

var cmdExec = &command{
	synopsis: "exec [-i] [-t] [-d] [-e K=V]... [-w DIR] [--timeout D] ID [--] CMD [ARGS...]",
	summary: "Run CMD in the sandbox, streaming our stdin to it (a pipe or file always, a terminal with -i)\n" +
		"and its stdout and stderr back as it runs, and exit with its status (128+N when signal N ended\n" +
		"it, 124 on --timeout, 130 when interrupted here). Ctrl-C is passed on as SIGINT; a second one\n" +
		"hangs up, which ends the command. -it gives it a terminal: ours in raw mode, resized with it.\n" +
		"-d starts it in the background instead and prints its process id.",
	example: "  sietch exec sb-1 -- python3 -c 'print(6*7)'\n  cat big.csv | sietch exec sb-1 -- wc -l\n" +
		"  sietch exec -it sb-1 -- bash\n  sietch exec -d sb-1 -- python3 -m http.server 8000\n",
	run: func(c *cli, ctx context.Context, fs *pflag.FlagSet, args []string) int {
		x, err := parseExec(fs, args)
		if rc, done := c.parsed("exec", fs, err); done {
			return rc
		}
		return c.exec("exec", ctx, x)
	},
}

var cmdShell = &command{
	synopsis: "shell ID",
	summary: "An interactive login shell in the sandbox (bash, else sh) on our terminal: exec -it ID -- bash -l.\n" +
		"Exits with the shell's status.",
	example: "  sietch shell sb-1\n",
	run: func(c *cli, ctx context.Context, fs *pflag.FlagSet, args []string) int {
		err := fs.Parse(args)
		if err == nil && fs.NArg() != 1 {
			err = errors.New("want one sandbox ID")
		}
		if rc, done := c.parsed("shell", fs, err); done {
			return rc
		}
		x := execCmd{id: fs.Arg(0), stdin: true, tty: true, req: model.ExecRequest{Cmd: "bash", Args: []string{"-l"}}}
		rc := c.exec("shell", ctx, x)
		if rc == exitNotFound && c.lastNotFound { // no bash in this image
			x.req = model.ExecRequest{Cmd: "sh", Args: []string{"-l"}}
			rc = c.exec("shell", ctx, x)
		}
		return rc
	},
}

// exec runs x: a background start, or a command on an exec stream.
func (c *cli) exec(name string, ctx context.Context, x execCmd) int {
	c.lastNotFound = false
	api, err := c.connect(true)
	if err != nil {
		return c.fail(name, err)
	}
	if x.detach {
		if x.tty {
			x.req.TTY = &model.TTYSize{Rows: 24, Cols: 80}
		}
		st, err := api.StartProcess(ctx, x.id, x.req)
		if err != nil {
			return c.fail(name, err)
		}
		if c.g.json {
			printJSON(c.stdout, st)
		} else {
			fmt.Fprintln(c.stdout, st.ID)
		}
		return exitOK
	}

	inFile, _ := c.stdin.(*os.File)
	inTerm := inFile != nil && term.IsTerminal(int(inFile.Fd()))
	sendStdin := x.stdin || !inTerm
	raw := x.tty && inTerm && sendStdin
	if x.tty {
		rows, cols := c.termSize()
		x.req.TTY = &model.TTYSize{Rows: rows, Cols: cols}
	}

	// Our own signal handling while the command runs: the first Ctrl-C is
	// the command's, a second hangs up.
	sctx := ctx
	var sigs chan os.Signal
	if c.signals {
		sctx = context.WithoutCancel(ctx)
		sigs = make(chan os.Signal, 4)
		signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGWINCH)
		defer signal.Stop(sigs)
	}
	stderr := c.stderr
	if x.tty {
		stderr = c.stdout // a terminal has one output
	}
	sess, err := api.ExecStream(sctx, x.id, x.req, c.stdout, stderr)
	if err != nil {
		var ae *client.Error
		c.lastNotFound = errors.As(err, &ae) && ae.Code == model.CodeNotFound && ae.Status == 404
		return c.fail(name, err)
	}
	defer sess.Close()
	restore := func() {}
	if raw {
		if old, err := term.MakeRaw(int(inFile.Fd())); err == nil {
			restore = func() { term.Restore(int(inFile.Fd()), old) }
			defer restore()
		}
	}
	if sendStdin {
		go func() {
			io.Copy(sess, c.stdin)
			sess.CloseStdin()
		}()
	} else {
		sess.CloseStdin()
	}
	done := make(chan struct{})
	var exit model.ExecExit
	go func() {
		exit, err = sess.Wait()
		close(done)
	}()
	interrupts := 0
	for {
		select {
		case <-done:
			restore() // cooked mode before anything more is printed
			if err != nil {
				if interrupts > 0 {
					fmt.Fprintf(c.stderr, "sietch %s: interrupted\n", name)
					return exitInterrupted
				}
				return c.fail(name, err)
			}
			rc, msg := execStatus(exit)
			if msg != "" {
				fmt.Fprintf(c.stderr, "sietch %s: %s\n", name, msg)
			}
			return rc
		case sig := <-sigs:
			switch sig {
			case syscall.SIGWINCH:
				if x.tty {
					rows, cols := c.termSize()
					sess.Resize(rows, cols)
				}
			case syscall.SIGTERM:
				sess.Signal("TERM")
			case syscall.SIGINT:
				interrupts++
				if interrupts == 1 {
					sess.Signal("INT")
				} else {
					sess.Close() // hang up: the command ends with the stream
				}
			}
		}
	}
}

// termSize is our terminal's size, or 24x80 without one.
func (c *cli) termSize() (rows, cols uint16) {
	for _, s := range []any{c.stdout, c.stdin, c.stderr} {
		if f, ok := s.(*os.File); ok {
			if w, h, err := term.GetSize(int(f.Fd())); err == nil && w > 0 && h > 0 {
				return uint16(min(h, 4096)), uint16(min(w, 4096))
			}
		}
	}
	return 24, 80
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
