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
	fs.StringVar(&l.onTimeout, "on-timeout", "", "what happens at --timeout: stop (default) or snapshot")
	fs.StringArrayVarP(&l.labels, "label", "l", nil, "label KEY=VALUE (repeatable)")
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
	case "", "stop", "snapshot":
		lim.OnTimeout = l.onTimeout
	default:
		return lim, nil, fmt.Errorf("--on-timeout %q: want stop or snapshot", l.onTimeout)
	}
	if lim.OnTimeout != "" && lim.TimeoutS == 0 {
		return lim, nil, errors.New("--on-timeout goes with --timeout")
	}
	var labels map[string]string
	for _, kv := range l.labels {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return lim, nil, fmt.Errorf("--label %q: want KEY=VALUE", kv)
		}
		if labels == nil {
			labels = map[string]string{}
		}
		labels[k] = v
	}
	return lim, labels, nil
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
	fs.StringVarP(&req.Image, "image", "i", "", "image name (sietch images; default: the image named default, or the only one)")
	l.add(fs)
	if err := fs.Parse(args); err != nil {
		return req, err
	}
	if fs.NArg() > 0 {
		return req, fmt.Errorf("unexpected argument %q (the image is --image NAME)", fs.Arg(0))
	}
	var err error
	req.Limits, req.Labels, err = l.build()
	return req, err
}

var cmdCreate = &command{
	synopsis: "create [--image NAME] [--cpus N] [--memory SIZE] [--disk SIZE] [--timeout D [--on-timeout stop|snapshot]] [-l K=V]...",
	summary:  "Start a sandbox from an image and print its id (--json: the sandbox) once its guest agent answers: exec, cp and port work at once.",
	example:  "  id=$(sietch create --image default --cpus 2 --memory 512M --timeout 1h)\n",
	run: func(c *cli, ctx context.Context, fs *pflag.FlagSet, args []string) int {
		req, err := parseCreate(fs, args)
		if rc, done := c.parsed("create", fs, err); done {
			return rc
		}
		api, err := c.connect(true)
		if err != nil {
			return c.fail("create", err)
		}
		if req.Image == "" {
			imgs, err := api.Images(ctx)
			if err != nil {
				return c.fail("create", err)
			}
			if req.Image, err = defaultImage(imgs); err != nil {
				fmt.Fprintf(c.stderr, "sietch create: %v\n", err)
				return exitUsage
			}
		}
		p := c.progress("sietch create: cold-booting image "+req.Image+"…", -1)
		sb, err := api.Create(ctx, req)
		p.done(false)
		if err != nil {
			return c.fail("create", err)
		}
		return c.printSandboxID(sb)
	},
}

// defaultImage picks the image create uses when none is named.
func defaultImage(imgs []model.Image) (string, error) {
	names := make([]string, len(imgs))
	for i, im := range imgs {
		if im.Name == "default" {
			return im.Name, nil
		}
		names[i] = im.Name
	}
	if len(imgs) == 1 {
		return imgs[0].Name, nil
	}
	if len(imgs) == 0 {
		return "", errors.New("sietchd offers no images: build the default one (make kernel initramfs image, or make quickstart) and restart sietchd, or start it with --image or an images.json in its state directory")
	}
	return "", fmt.Errorf("pick an image with --image (sietchd offers %s)", strings.Join(names, ", "))
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
	synopsis: "ls",
	summary:  "List sandboxes in every state.",
	example:  "  sietch ls\n  sietch ls --json | jq -r '.sandboxes[] | select(.state==\"failed\") | .id'\n",
	run: func(c *cli, ctx context.Context, fs *pflag.FlagSet, args []string) int {
		err := fs.Parse(args)
		if err == nil && fs.NArg() > 0 {
			err = fmt.Errorf("unexpected argument %q", fs.Arg(0))
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
	synopsis: "rm ID...",
	summary:  "Stop and delete sandboxes (their snapshots stay). Prints each id deleted; goes on past failures.",
	example:  "  sietch rm sb-1 sb-2\n",
	run: func(c *cli, ctx context.Context, fs *pflag.FlagSet, args []string) int {
		ids, err := parseIDs(fs, args)
		if rc, done := c.parsed("rm", fs, err); done {
			return rc
		}
		api, err := c.connect(true)
		if err != nil {
			return c.fail("rm", err)
		}
		rc := exitOK
		for _, id := range ids {
			if err := api.Delete(ctx, id); err != nil {
				if r := c.fail("rm", err); rc == exitOK {
					rc = r
				}
				continue
			}
			fmt.Fprintln(c.stdout, id)
		}
		return rc
	},
}

var cmdPause = &command{
	synopsis: "pause ID...",
	summary:  "Pause sandboxes' vCPUs (memory stays); resume continues them.",
	example:  "  sietch pause sb-1\n",
	run: func(c *cli, ctx context.Context, fs *pflag.FlagSet, args []string) int {
		return c.eachSandbox(ctx, "pause", fs, args, (*client.Client).Pause)
	},
}

var cmdResume = &command{
	synopsis: "resume ID...",
	summary:  "Resume paused sandboxes.",
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
	synopsis: "snapshot ID [--diff]",
	summary:  "Checkpoint a sandbox (it keeps running) and print the snapshot id.",
	example:  "  base=$(sietch snapshot sb-1)\n  sietch snapshot --diff sb-1\n",
	run: func(c *cli, ctx context.Context, fs *pflag.FlagSet, args []string) int {
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
	synopsis: "snapshots ID",
	summary:  "List a sandbox's snapshots.",
	example:  "  sietch snapshots sb-1\n",
	run: func(c *cli, ctx context.Context, fs *pflag.FlagSet, args []string) int {
		err := fs.Parse(args)
		if err == nil && fs.NArg() != 1 {
			err = errors.New("want one sandbox ID")
		}
		if rc, done := c.parsed("snapshots", fs, err); done {
			return rc
		}
		api, err := c.connect(true)
		if err != nil {
			return c.fail("snapshots", err)
		}
		snaps, err := api.Snapshots(ctx, fs.Arg(0))
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
