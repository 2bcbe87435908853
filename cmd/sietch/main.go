// Command sietch is the user's command line for sietch (see `sietch help`).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/sietch-vm/sietch/api/client"
)

const usage = `sietch runs sandboxed Linux microVMs through sietchd.

Usage:
  sietch [--addr A] [--token-file F] [--json] COMMAND [ARGS]
  sietch COMMAND --help        (every command has examples)

Sandboxes:
  create      start a sandbox (from the template default unless told otherwise)
  ls          list sandboxes
  rm          delete sandboxes
  pause       pause a sandbox's vCPUs, or pause it to disk (--to-disk)
  resume      resume a paused or suspended sandbox
  exec        run a command in a sandbox, streaming its output
  run         run code in a code context (python, node or bash) that keeps its state
  shell       an interactive shell in a sandbox on this terminal (exec -it ID -- bash -l)
Processes in sandboxes (exec -d starts one in the background):
  ps          list a sandbox's processes, running and background ones that exited
  logs        print (-f: follow) a background process's output from its start
  kill        signal a process (--rm: kill it and forget it)
  wait        wait for a process to exit and exit with its status
  cp          copy a file (or with -r a directory) into or out of a sandbox
  console     print (or follow) a sandbox's serial console
  stats       a sandbox's CPU, memory, tasks and disk use against its limits
  net         a sandbox's network: address and egress policy, changed while it runs
  port        forward a host TCP port to a guest port; list or close forwards
Files in sandboxes (ID:/path):
  ls ID:/dir  list a directory (mode, size, modified, name)
  stat        describe a file
  mkdir       make directories (-p: with parents)
  rm ID:/path remove files; -r whole trees
  mv          rename or move within a sandbox
  watch       print changes under a directory as they happen (-r: recursively)
Desktops (sandboxes that run an X server):
  screenshot  save a PNG of the screen (or a region)
  input       click, move, drag, scroll, type text, press keys
  vnc         view the screen with any VNC client or noVNC (a password per call)
  browser     open a URL in the desktop's browser
Templates:
  template    build, list and remove templates (sandboxes resume them in milliseconds)
Snapshots:
  snapshot    checkpoint a sandbox (full or --diff); snapshot rm deletes snapshots
  snapshots   list snapshots with their sizes and dependents
  restore     start a sandbox from a snapshot
  fork        start N sandboxes from one sandbox's snapshot
Images and server:
  images      list the images sietchd offers
  image build build an ext4 root filesystem image (see docs/IMAGES.md); with
              -f Dockerfile -o NAME, sietchd builds it in a sandbox and offers it
              as image NAME
  health      ask whether sietchd is up (needs no token)
AI agents:
  mcp         serve sandboxes as MCP tools to an agent (stdio, or --http ADDR)

Global flags (before or after the command):
  --addr A         sietchd address: /path.sock, unix:///path.sock, http://host:port
                   (env SIETCH_ADDR; default /var/lib/sietch/sietchd.sock)
  --token-file F   bearer token file (env SIETCH_TOKEN_FILE; default /var/lib/sietch/token)
                   (env SIETCH_STATE_DIR=DIR: DIR/sietchd.sock and DIR/token, the state
                   directory of a local sietchd, e.g. build/state of make quickstart)
  --json           print the API's JSON instead of tables

Exit status: 0 ok, 1 server or operation error, 2 usage error, 3 not found,
4 wrong state or conflict, 5 guest agent unavailable (try again);
exec exits with the command's status (128+N when killed by signal N).
`

// globals are the flags every command accepts.
type globals struct {
	addr      string
	tokenFile string
	json      bool
}

// add binds the global flags to fs, defaulting to the values g already
// holds (so flags given before the command survive).
func (g *globals) add(fs *pflag.FlagSet) {
	fs.StringVar(&g.addr, "addr", g.addr, "sietchd address (env SIETCH_ADDR)")
	fs.StringVar(&g.tokenFile, "token-file", g.tokenFile, "bearer token file (env SIETCH_TOKEN_FILE)")
	fs.BoolVar(&g.json, "json", g.json, "print JSON")
}

// cli is one invocation: its streams and environment.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	now            func() time.Time
	g              globals
	signals        bool // handle SIGINT, SIGTERM and SIGWINCH while a command runs (a real process, not a test)
	lastNotFound   bool // the last exec failed for a missing program
}

// command is one `sietch NAME` subcommand.
type command struct {
	synopsis string // after "sietch "
	summary  string
	example  string
	run      func(c *cli, ctx context.Context, fs *pflag.FlagSet, args []string) int
}

var commands map[string]*command

func init() {
	// Set here, not in the declaration: the run functions refer to
	// commands (for help), which would be an initialisation cycle.
	commands = map[string]*command{
		"create":     cmdCreate,
		"ls":         cmdLs,
		"rm":         cmdRm,
		"pause":      cmdPause,
		"resume":     cmdResume,
		"exec":       cmdExec,
		"run":        cmdRun,
		"shell":      cmdShell,
		"ps":         cmdPs,
		"logs":       cmdLogs,
		"kill":       cmdKill,
		"wait":       cmdWait,
		"cp":         cmdCp,
		"console":    cmdConsole,
		"stats":      cmdStats,
		"screenshot": cmdScreenshot,
		"input":      cmdInput,
		"vnc":        cmdVNC,
		"browser":    cmdBrowser,
		"net":        cmdNet,
		"port":       cmdPort,
		"snapshot":   cmdSnapshot,
		"snapshots":  cmdSnapshots,
		"restore":    cmdRestore,
		"fork":       cmdFork,
		"images":     cmdImages,
		"template":   cmdTemplate,
		"health":     cmdHealth,
		"stat":       cmdStat,
		"mkdir":      cmdMkdir,
		"mv":         cmdMv,
		"watch":      cmdWatch,
		"mcp":        cmdMcp,
	}
}

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

func realMain(args []string, stdout, stderr io.Writer) int {
	c := &cli{stdin: os.Stdin, stdout: stdout, stderr: stderr, getenv: os.Getenv, now: time.Now, signals: true}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return c.run(ctx, args)
}

func (c *cli) run(ctx context.Context, args []string) int {
	addr, tokenFile := client.Where(c.getenv)
	c.g = globals{addr: addr, tokenFile: tokenFile}
	fs := pflag.NewFlagSet("sietch", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SetInterspersed(false)
	c.g.add(fs)
	help := fs.BoolP("help", "h", false, "")
	if err := fs.Parse(args); err != nil {
		fmt.Fprintf(c.stderr, "sietch: %v\n\n%s", err, usage)
		return exitUsage
	}
	args = fs.Args()
	if *help || (len(args) > 0 && args[0] == "help" && len(args) == 1) {
		fmt.Fprint(c.stdout, usage)
		return exitOK
	}
	if len(args) == 0 {
		fmt.Fprint(c.stderr, usage)
		return exitUsage
	}
	name := args[0]
	if name == "help" { // sietch help COMMAND
		name, args = args[1], []string{args[1], "--help"}
	}
	if name == "image" && len(args) > 1 && args[1] == "--help" {
		fmt.Fprint(c.stdout, usage)
		return exitOK
	}
	if name == "image" {
		return cmdImage(c, args[1:])
	}
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(c.stderr, "sietch: unknown command %q (commands: %s)\n", name, strings.Join(commandNames(), ", "))
		return exitUsage
	}
	sub := c.newFlags(name)
	return cmd.run(c, ctx, sub, args[1:])
}

func commandNames() []string {
	names := []string{"image"}
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// newFlags returns a flag set for a subcommand that also takes the global
// flags.
func (c *cli) newFlags(name string) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.g.add(fs)
	return fs
}

// parsed reports what to do after a subcommand's parse: done is true when
// the command should return rc now (help printed or a usage error).
func (c *cli) parsed(name string, fs *pflag.FlagSet, err error) (rc int, done bool) {
	cmd := commands[name]
	if errors.Is(err, pflag.ErrHelp) {
		fmt.Fprintf(c.stdout, "Usage: sietch %s\n\n%s\n\nExample:\n%s\nFlags:\n%s", cmd.synopsis, cmd.summary, cmd.example, fs.FlagUsages())
		return exitOK, true
	}
	if err != nil {
		fmt.Fprintf(c.stderr, "sietch %s: %v\nUsage: sietch %s (see sietch %s --help)\n", name, err, cmd.synopsis, name)
		return exitUsage, true
	}
	return 0, false
}

// connect returns an SDK client for the global address and token. The
// token is optional only for health.
func (c *cli) connect(needToken bool) (*client.Client, error) {
	raw, err := os.ReadFile(c.g.tokenFile)
	if err != nil && needToken {
		return nil, fmt.Errorf("read the token: %w (sietchd writes it at first start; pass --token-file or set SIETCH_TOKEN_FILE, and check you may read it)", err)
	}
	return client.New(c.g.addr, strings.TrimSpace(string(raw)), client.WithUserAgent("sietch-cli"))
}

// fail prints err and returns the exit code it maps to.
func (c *cli) fail(name string, err error) int {
	fmt.Fprintf(c.stderr, "sietch %s: %v\n", name, err)
	return exitCode(err)
}
