package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/sietch-vm/sietch/api/client"
	"github.com/sietch-vm/sietch/api/model"
)

// limitFlags are the sandbox shape flags of create and restore.
type limitFlags struct {
	cpus         int
	memory, disk string
	timeout      time.Duration
	onTimeout    string
	labels       []string
}

func (l *limitFlags) add(fs *pflag.FlagSet) {
	fs.IntVar(&l.cpus, "cpus", 0, "vCPUs (default: the server's)")
	fs.StringVar(&l.memory, "memory", "", "guest memory, e.g. 512M, 1G (default: the server's)")
	fs.StringVar(&l.disk, "disk", "", "writable disk layer size, e.g. 2G (default: the server's)")
	fs.DurationVar(&l.timeout, "timeout", 0, "lifetime, e.g. 30m; then --on-timeout happens (default: none)")
	fs.StringVar(&l.onTimeout, "on-timeout", "", "what happens at --timeout: stop (default), snapshot, or pause (to disk; the next exec resumes it)")
	fs.StringArrayVarP(&l.labels, "label", "l", nil, "label KEY=VALUE (repeatable)")
}

// parseKV reads repeated KEY=VALUE flags into a map (nil when none).
func parseKV(flag string, kvs []string) (map[string]string, error) {
	var out map[string]string
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--%s %q: want KEY=VALUE", flag, kv)
		}
		if out == nil {
			out = map[string]string{}
		}
		out[k] = v
	}
	return out, nil
}

func (l *limitFlags) build() (model.Limits, map[string]string, error) {
	var lim model.Limits
	var err error
	if l.cpus < 0 {
		return lim, nil, fmt.Errorf("--cpus %d: want a positive count", l.cpus)
	}
	lim.CPUs = l.cpus
	if lim.MemoryMiB, err = parseMiB(l.memory); err != nil {
		return lim, nil, fmt.Errorf("--memory: %w", err)
	}
	if lim.DiskMiB, err = parseMiB(l.disk); err != nil {
		return lim, nil, fmt.Errorf("--disk: %w", err)
	}
	if l.timeout < 0 || (l.timeout > 0 && l.timeout < time.Second) {
		return lim, nil, fmt.Errorf("--timeout %v: want at least 1s", l.timeout)
	}
	lim.TimeoutS = int(l.timeout / time.Second)
	switch l.onTimeout {
	case "", "stop", "snapshot", "pause":
		lim.OnTimeout = l.onTimeout
	default:
		return lim, nil, fmt.Errorf("--on-timeout %q: want stop, snapshot or pause", l.onTimeout)
	}
	if lim.OnTimeout != "" && lim.TimeoutS == 0 {
		return lim, nil, errors.New("--on-timeout goes with --timeout")
	}
	labels, err := parseKV("label", l.labels)
	return lim, labels, err
}

// parseMiB reads a size in MiB: a bare number is MiB, else a size with a
// unit (512M, 1.5G) that must be whole MiB.
func parseMiB(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 {
			return 0, fmt.Errorf("bad size %q (want e.g. 512M, 2G)", s)
		}
		return n, nil
	}
	b, err := parseSize(s)
	if err != nil {
		return 0, err
	}
	if b%(1<<20) != 0 {
		return 0, fmt.Errorf("size %q is not a whole number of MiB", s)
	}
	return int(b >> 20), nil
}

func parseCreate(fs *pflag.FlagSet, args []string) (model.CreateRequest, error) {
	var req model.CreateRequest
	var l limitFlags
	fs.StringVarP(&req.Template, "template", "t", "", "template name (sietch template ls): a warm resume in milliseconds (default: the template default, built from the image default on first need)")
	fs.StringVarP(&req.Image, "image", "i", "", "image name (sietch images): a cold boot instead, for debugging or one-off images")
	env := fs.StringArrayP("env", "e", nil, "KEY=VALUE in the environment of every command run in the sandbox (repeatable)")
	l.add(fs)
	netOn := fs.Bool("net", false, "network: a TAP and address of its own, NAT to the internet (--allow, --deny and --internet imply it)")
	var n netFlags
	n.add(fs)
	if err := fs.Parse(args); err != nil {
		return req, err
	}
	if *netOn || n.changed() {
		req.Network = &model.NetworkSpec{Enabled: true}
		if err := n.apply(req.Network); err != nil {
			return req, err
		}
	}
	if fs.NArg() > 0 {
		return req, fmt.Errorf("unexpected argument %q (the template is --template NAME)", fs.Arg(0))
	}
	if req.Template != "" && req.Image != "" {
		return req, errors.New("give --template or --image, not both")
	}
	var err error
	if req.Env, err = parseKV("env", *env); err != nil {
		return req, err
	}
	req.Limits, req.Labels, err = l.build()
	return req, err
}

var cmdCreate = &command{
	synopsis: "create [--template NAME | --image NAME] [-e K=V]... [--cpus N] [--memory SIZE] [--disk SIZE] [--timeout D [--on-timeout stop|snapshot|pause]] [-l K=V]... [--net [--allow X]... [--deny X]... [--internet on|off]]",
	summary:  "Start a sandbox and print its id (--json: the sandbox) once its guest agent answers: exec, cp and port work at once. By default it resumes the template default (built on first need: a cold boot, once); --image cold-boots instead.",
	example:  "  id=$(sietch create)\n  id=$(sietch create --template web -e API_KEY=k --timeout 1h --on-timeout pause)\n  id=$(sietch create --image default --cpus 2 --memory 512M)\n  id=$(sietch create --net --internet off --allow pypi.org --allow files.pythonhosted.org)\n",
	run: func(c *cli, ctx context.Context, fs *pflag.FlagSet, args []string) int {
		req, err := parseCreate(fs, args)
		if rc, done := c.parsed("create", fs, err); done {
			return rc
		}
		api, err := c.connect(true)
		if err != nil {
			return c.fail("create", err)
		}
		label := "sietch create: from template " + req.Template
		switch {
		case req.Image != "":
			label = "sietch create: cold-booting image " + req.Image + "…"
		case req.Template == "":
			label = "sietch create: from template default (built once, on first need: a cold boot)…"
		}
		p := c.progress(label, -1)
		sb, err := api.Create(ctx, req)
		p.done(false)
		if err != nil {
			return c.fail("create", err)
		}
		return c.printSandboxID(sb)
	},
}

func (c *cli) printSandboxID(sb model.Sandbox) int {
	if c.g.json {
		printJSON(c.stdout, sb)
	} else {
		fmt.Fprintln(c.stdout, sb.ID)
	}
	return exitOK
}

func parseRestore(fs *pflag.FlagSet, args []string) (model.CreateRequest, error) {
	var req model.CreateRequest
	var l limitFlags
	l.add(fs)
	if err := fs.Parse(args); err != nil {
		return req, err
	}
	if fs.NArg() != 1 {
		return req, errors.New("want one SNAPSHOT_ID")
	}
	req.Snapshot = fs.Arg(0)
	var err error
	req.Limits, req.Labels, err = l.build()
	return req, err
}

var cmdRestore = &command{
	synopsis: "restore SNAPSHOT_ID [--cpus N] [--memory SIZE] [--timeout D] [-l K=V]...",
	summary:  "Start a new sandbox from a snapshot (sietch snapshots ID lists them) and print its id.",
	example:  "  snap=$(sietch snapshot $id)\n  sietch rm $id\n  sietch restore $snap\n",
	run: func(c *cli, ctx context.Context, fs *pflag.FlagSet, args []string) int {
		req, err := parseRestore(fs, args)
		if rc, done := c.parsed("restore", fs, err); done {
			return rc
		}
		api, err := c.connect(true)
		if err != nil {
			return c.fail("restore", err)
		}
		sb, err := api.Create(ctx, req)
		if err != nil {
			return c.fail("restore", err)
		}
		return c.printSandboxID(sb)
	},
}

var cmdLs = &command{
	synopsis: "ls [ID:/path]",
	summary:  "List sandboxes in every state. With ID:/path, list that directory in the sandbox: mode, size, modification time (UTC), name (directories end in /, symlinks show their target); a file is listed alone.",
	example:  "  sietch ls\n  sietch ls --json | jq -r '.sandboxes[] | select(.state==\"failed\") | .id'\n  sietch ls sb-1:/root\n",
	run: func(c *cli, ctx context.Context, fs *pflag.FlagSet, args []string) int {
		err := fs.Parse(args)
		if err == nil && fs.NArg() == 1 && strings.Contains(fs.Arg(0), ":") {
			return c.lsFiles(ctx, fs.Arg(0))
		}
		if err == nil && fs.NArg() > 0 {
			err = fmt.Errorf("unexpected argument %q (to list files in a sandbox: sietch ls ID:/path)", fs.Arg(0))
		}
		if rc, done := c.parsed("ls", fs, err); done {
			return rc
		}
		api, err := c.connect(true)
		if err != nil {
			return c.fail("ls", err)
		}
		sbs, err := api.List(ctx)
		if err != nil {
			return c.fail("ls", err)
		}
		if c.g.json {
			printJSON(c.stdout, map[string][]model.Sandbox{"sandboxes": nonNil(sbs)})
			return exitOK
		}
		sandboxTable(c.stdout, sbs, c.now())
		return exitOK
	},
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// parseIDs parses a command that takes flags and one or more ids.
func parseIDs(fs *pflag.FlagSet, args []string) ([]string, error) {
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() == 0 {
		return nil, errors.New("want at least one sandbox ID")
	}
	return fs.Args(), nil
}

var cmdRm = &command{
	synopsis: "rm ID... | rm [-r] ID:/path...",
	summary: "Stop and delete sandboxes (their snapshots stay). With ID:/path, remove files in sandboxes instead: a\n" +
		"file, a symlink (not its target) or an empty directory; -r a whole tree. Prints each one removed;\n" +
		"goes on past failures.",
	example: "  sietch rm sb-1 sb-2\n  sietch rm -r sb-1:/tmp/build\n",
	run: func(c *cli, ctx context.Context, fs *pflag.FlagSet, args []string) int {
		ids, files, recursive, err := parseRm(fs, args)
		if rc, done := c.parsed("rm", fs, err); done {
			return rc
		}
		if files {
			return c.rmFiles(ctx, ids, recursive)
		}
		return c.removeEach(ctx, "rm", "rm", "sandbox ID", fs, args, (*client.Client).Delete)
	},
}

var cmdPause = &command{
	synopsis: "pause [--to-disk] ID...",
	summary:  "Pause sandboxes' vCPUs (memory stays); resume continues them. --to-disk snapshots each and ends its vmm, freeing its memory: it is suspended, across sietchd restarts, until resume or the next exec, cp or port restores it.",
	example:  "  sietch pause sb-1\n  sietch pause --to-disk sb-1 && sietch exec sb-1 -- cat /root/state\n",
	run: func(c *cli, ctx context.Context, fs *pflag.FlagSet, args []string) int {
		toDisk := fs.Bool("to-disk", false, "snapshot and free the sandbox's memory; it resumes on demand")
		op := func(api *client.Client, ctx context.Context, id string) (model.Sandbox, error) {
			if *toDisk {
				return api.PauseToDisk(ctx, id)
			}
			return api.Pause(ctx, id)
		}
		return c.eachSandbox(ctx, "pause", fs, args, op)
	},
}

var cmdResume = &command{
	synopsis: "resume ID...",
	summary:  "Resume paused sandboxes; suspended ones (pause --to-disk) are restored from disk.",
	example:  "  sietch resume sb-1\n",
	run: func(c *cli, ctx context.Context, fs *pflag.FlagSet, args []string) int {
		return c.eachSandbox(ctx, "resume", fs, args, (*client.Client).Resume)
	},
}

// eachSandbox runs op on every id, printing "ID STATE" (or the JSON) for
// each; the status is the first failure's.
func (c *cli) eachSandbox(ctx context.Context, name string, fs *pflag.FlagSet, args []string, op func(*client.Client, context.Context, string) (model.Sandbox, error)) int {
	ids, err := parseIDs(fs, args)
	if rc, done := c.parsed(name, fs, err); done {
		return rc
	}
	api, err := c.connect(true)
	if err != nil {
		return c.fail(name, err)
	}
	rc := exitOK
	for _, id := range ids {
		sb, err := op(api, ctx, id)
		if err != nil {
			if r := c.fail(name, err); rc == exitOK {
				rc = r
			}
			continue
		}
		if c.g.json {
			printJSON(c.stdout, sb)
		} else {
			fmt.Fprintf(c.stdout, "%s %s\n", sb.ID, sb.State)
		}
	}
	return rc
}

func parseSnapshot(fs *pflag.FlagSet, args []string) (string, model.SnapshotRequest, error) {
	var req model.SnapshotRequest
	diff := fs.Bool("diff", false, "write only the memory changed since the sandbox's last snapshot")
	if err := fs.Parse(args); err != nil {
		return "", req, err
	}
	if fs.NArg() != 1 {
		return "", req, errors.New("want one sandbox ID")
	}
	if *diff {
		req.Kind = "diff"
	}
	return fs.Arg(0), req, nil
}

var cmdSnapshot = &command{
	synopsis: "snapshot ID [--diff] | snapshot rm SNAPSHOT_ID...",
	summary:  "Checkpoint a sandbox (it keeps running) and print the snapshot id; snapshot rm deletes snapshots nothing depends on.",
	example:  "  base=$(sietch snapshot sb-1)\n  sietch snapshot --diff sb-1\n  sietch snapshot rm snap-1\n",
	run: func(c *cli, ctx context.Context, fs *pflag.FlagSet, args []string) int {
		if len(args) > 0 && args[0] == "rm" {
			return c.snapshotRm(ctx, fs, args[1:])
		}
		id, req, err := parseSnapshot(fs, args)
		if rc, done := c.parsed("snapshot", fs, err); done {
			return rc
		}
		api, err := c.connect(true)
		if err != nil {
			return c.fail("snapshot", err)
		}
		bar := c.progress("snapshot "+id, -1)
		snap, err := api.Snapshot(ctx, id, req)
		bar.done(err == nil)
		if err != nil {
			return c.fail("snapshot", err)
		}
		if c.g.json {
			printJSON(c.stdout, snap)
		} else {
			fmt.Fprintln(c.stdout, snap.ID)
		}
		return exitOK
	},
}

var cmdSnapshots = &command{
	synopsis: "snapshots [ID]",
	summary:  "List a sandbox's snapshots, or every snapshot with its size and what depends on it.",
	example:  "  sietch snapshots\n  sietch snapshots sb-1\n",
	run: func(c *cli, ctx context.Context, fs *pflag.FlagSet, args []string) int {
		err := fs.Parse(args)
		if err == nil && fs.NArg() > 1 {
			err = errors.New("want at most one sandbox ID")
		}
		if rc, done := c.parsed("snapshots", fs, err); done {
			return rc
		}
		api, err := c.connect(true)
		if err != nil {
			return c.fail("snapshots", err)
		}
		var snaps []model.Snapshot
		if fs.NArg() == 1 {
			snaps, err = api.Snapshots(ctx, fs.Arg(0))
		} else {
			snaps, err = api.AllSnapshots(ctx)
		}
		if err != nil {
			return c.fail("snapshots", err)
		}
		if c.g.json {
			printJSON(c.stdout, map[string][]model.Snapshot{"snapshots": nonNil(snaps)})
			return exitOK
		}
		snapshotTable(c.stdout, snaps, c.now())
		return exitOK
	},
}

// snapshotRm deletes snapshots, printing each id deleted; a snapshot
// something depends on is refused with the dependents named.
func (c *cli) snapshotRm(ctx context.Context, fs *pflag.FlagSet, args []string) int {
	return c.removeEach(ctx, "snapshot", "snapshot rm", "snapshot ID", fs, args, (*client.Client).DeleteSnapshot)
}

// removeEach parses one or more names (of what) and calls remove on each,
// printing every one removed; it goes on past failures and returns the
// first failure's status.
func (c *cli) removeEach(ctx context.Context, cmd, name, what string, fs *pflag.FlagSet, args []string, remove func(*client.Client, context.Context, string) error) int {
	err := fs.Parse(args)
	if err == nil && fs.NArg() == 0 {
		err = fmt.Errorf("want at least one %s", what)
	}
	if rc, done := c.parsed(cmd, fs, err); done {
		return rc
	}
	api, err := c.connect(true)
	if err != nil {
		return c.fail(name, err)
	}
	rc := exitOK
	for _, id := range fs.Args() {
		if err := remove(api, ctx, id); err != nil {
			if r := c.fail(name, err); rc == exitOK {
				rc = r
			}
			continue
		}
		fmt.Fprintln(c.stdout, id)
	}
	return rc
}

func parseFork(fs *pflag.FlagSet, args []string) (string, model.ForkRequest, error) {
	var req model.ForkRequest
	fs.StringVar(&req.Snapshot, "snapshot", "", "fork from this snapshot of the sandbox (default: a full snapshot taken now)")
	fs.IntVarP(&req.Count, "count", "n", 1, "how many sandboxes to start")
	if err := fs.Parse(args); err != nil {
		return "", req, err
	}
	if fs.NArg() != 1 {
		return "", req, errors.New("want one sandbox ID")
	}
	if req.Count < 1 {
		return "", req, fmt.Errorf("-n %d: want at least 1", req.Count)
	}
	return fs.Arg(0), req, nil
}

var cmdFork = &command{
	synopsis: "fork ID [--snapshot SNAPSHOT_ID] [-n N]",
	summary:  "Start N sandboxes from one of ID's snapshots (default: one taken now) and print their ids, one a line.",
	example:  "  for f in $(sietch fork sb-1 -n 4); do sietch exec $f -- ./try-variant; done\n",
	run: func(c *cli, ctx context.Context, fs *pflag.FlagSet, args []string) int {
		id, req, err := parseFork(fs, args)
		if rc, done := c.parsed("fork", fs, err); done {
			return rc
		}
		api, err := c.connect(true)
		if err != nil {
			return c.fail("fork", err)
		}
		sbs, err := api.Fork(ctx, id, req)
		if err != nil {
			return c.fail("fork", err)
		}
		if c.g.json {
			printJSON(c.stdout, map[string][]model.Sandbox{"sandboxes": nonNil(sbs)})
			return exitOK
		}
		for _, sb := range sbs {
			fmt.Fprintln(c.stdout, sb.ID)
		}
		return exitOK
	},
}
