package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/sietch-vm/sietch/api/client"
	"github.com/sietch-vm/sietch/api/model"
)

var cmdTemplate = &command{
	synopsis: "template build NAME [--image IMAGE | -f Dockerfile [--build-context DIR] [--build-arg K=V]... [--target S]] [--start-cmd CMD] [--ready-port PORT] [--ready-cmd CMD] [--ready-timeout D] [--context LANG]... [--cpus N] [--memory SIZE] [--disk SIZE] | template ls | template rm NAME...",
	summary: "Templates: an image booted once, its start command left running, snapshotted when its ready command passes. " +
		"Every sandbox created from a template resumes that snapshot in milliseconds with its own identity. " +
		"build shows each step (boot, start, ready, contexts, snapshot) and prints the name; rm is refused while sandboxes or snapshots need the template.",
	example: "  sietch template build web --start-cmd 'python3 -m http.server 8000' --ready-port 8000\n" +
		"  sietch template build py --context python --start-cmd 'pip list >/dev/null'\n" +
		"  id=$(sietch create --template web)\n  sietch template ls\n  sietch template rm web\n",
	run: func(c *cli, ctx context.Context, fs *pflag.FlagSet, args []string) int {
		sub := ""
		if len(args) > 0 {
			sub, args = args[0], args[1:]
		}
		switch sub {
		case "build":
			return c.templateBuild(ctx, fs, args)
		case "ls":
			return c.templateLs(ctx, fs, args)
		case "rm":
			return c.templateRm(ctx, fs, args)
		case "--help", "-h", "help":
			_, done := c.parsed("template", fs, pflag.ErrHelp)
			_ = done
			return exitOK
		}
		_, _ = c.parsed("template", fs, fmt.Errorf("want build, ls or rm, not %q", sub))
		return exitUsage
	},
}

// templateDockerfile is template build's -f: the image to build first,
// named as the template, whose ENTRYPOINT and CMD become the start command.
type templateDockerfile struct {
	file, context, target string
	buildArgs             []string
}

func parseTemplateBuild(fs *pflag.FlagSet, args []string) (model.TemplateRequest, error) {
	req, _, err := parseTemplateBuildFile(fs, args)
	return req, err
}

func parseTemplateBuildFile(fs *pflag.FlagSet, args []string) (model.TemplateRequest, templateDockerfile, error) {
	var df templateDockerfile
	fs.StringVarP(&df.file, "file", "f", "", "build the image from this Dockerfile first (named as the template; its ENTRYPOINT/CMD is the start command unless --start-cmd)")
	fs.StringVar(&df.context, "build-context", "", "the Dockerfile's build context (with -f; default its directory)")
	fs.StringArrayVar(&df.buildArgs, "build-arg", nil, "NAME=VALUE for an ARG (with -f; repeatable)")
	fs.StringVar(&df.target, "target", "", "the stage to build (with -f)")
	req, err := parseTemplateFlags(fs, args)
	if err != nil {
		return req, df, err
	}
	if df.file == "" {
		for _, f := range []string{"build-context", "build-arg", "target"} {
			if fs.Changed(f) {
				return req, df, fmt.Errorf("--%s goes with -f Dockerfile", f)
			}
		}
	} else if req.Image != "" {
		return req, df, errors.New("-f builds the template's image: give -f or --image, not both")
	}
	return req, df, nil
}

func parseTemplateFlags(fs *pflag.FlagSet, args []string) (model.TemplateRequest, error) {
	var req model.TemplateRequest
	var l limitFlags
	fs.StringVarP(&req.Image, "image", "i", "", "image to boot (default: default)")
	fs.StringVar(&req.StartCmd, "start-cmd", "", "command (sh -c) started after boot and left running in the template: a server, an interpreter")
	fs.IntVar(&req.ReadyPort, "ready-port", 0, "ready once this guest TCP port accepts a connection (checked without starting a process in the guest)")
	fs.StringVar(&req.ReadyCmd, "ready-cmd", "", "command (sh -c) run until it exits 0 (after --ready-port); then the snapshot is taken")
	readyTimeout := fs.Duration("ready-timeout", 0, "how long the ready command may keep failing (default 5m)")
	fs.StringArrayVar(&req.Contexts, "context", nil, "start this language's default code context (python, node, bash) before the snapshot, warm in every sandbox (repeatable)")
	l.add(fs)
	if err := fs.Parse(args); err != nil {
		return req, err
	}
	if fs.NArg() != 1 {
		return req, errors.New("want one template NAME")
	}
	req.Name = fs.Arg(0)
	if *readyTimeout < 0 {
		return req, fmt.Errorf("--ready-timeout %v is negative", *readyTimeout)
	}
	req.ReadyTimeoutS = int((*readyTimeout + time.Second - 1) / time.Second)
	var err error
	var labels map[string]string
	req.Limits, labels, err = l.build()
	if err == nil && (labels != nil || req.Limits.TimeoutS != 0) {
		err = errors.New("a template takes --cpus, --memory and --disk; give --timeout and --label to each create")
	}
	return req, err
}

// templatePoll is how often build asks how the build goes.
var templatePoll = 250 * time.Millisecond

func (c *cli) templateBuild(ctx context.Context, fs *pflag.FlagSet, args []string) int {
	req, df, err := parseTemplateBuildFile(fs, args)
	if rc, done := c.parsed("template", fs, err); done {
		return rc
	}
	if df.file != "" {
		b := imageBuild{file: df.file, context: df.context, target: df.target, out: req.Name}
		if err := b.checkDockerfile(fs, df.buildArgs); err != nil {
			_, _ = c.parsed("template", fs, err)
			return exitUsage
		}
		quiet := *c
		quiet.stdout = io.Discard // the template's name is printed at the end
		if rc := b.runDockerfile(ctx, &quiet); rc != exitOK {
			return rc
		}
		req.Image = req.Name
	}
	api, err := c.connect(true)
	if err != nil {
		return c.fail("template build", err)
	}
	t, err := api.BuildTemplate(ctx, req)
	if err != nil {
		return c.fail("template build", err)
	}
	var tty io.Writer
	if f, ok := c.stderr.(*os.File); ok && isTerminal(f) {
		tty = f
	}
	start, stepStart, step := time.Now(), time.Now(), ""
	report := func(next string) {
		if step != "" {
			line := fmt.Sprintf("template %s: %s done in %.1fs", req.Name, step, time.Since(stepStart).Seconds())
			if tty != nil {
				fmt.Fprintf(tty, "\r%s\x1b[K\n", line)
			} else {
				fmt.Fprintln(c.stderr, line)
			}
		}
		step, stepStart = next, time.Now()
	}
	tick := time.NewTicker(templatePoll)
	defer tick.Stop()
	for t.State == model.TemplateBuilding {
		if t.Step != step {
			report(t.Step)
		}
		if tty != nil {
			fmt.Fprintf(tty, "\rtemplate %s: %s… %.0fs\x1b[K", req.Name, step, time.Since(stepStart).Seconds())
		}
		select {
		case <-ctx.Done():
			if tty != nil {
				fmt.Fprint(tty, "\r\x1b[K")
			}
			fmt.Fprintf(c.stderr, "sietch template build: interrupted; the build goes on in sietchd (sietch template ls; sietch template rm %s cancels it)\n", req.Name)
			return exitError
		case <-tick.C:
		}
		if t, err = api.Template(ctx, req.Name); err != nil {
			if tty != nil {
				fmt.Fprint(tty, "\r\x1b[K")
			}
			return c.fail("template build", err)
		}
	}
	if t.State == model.TemplateReady {
		report("")
		fmt.Fprintf(c.stderr, "template %s: ready in %.1fs (snapshot %s, %s)\n", req.Name, time.Since(start).Seconds(), t.Snapshot, humanBytes(t.SizeBytes))
	} else if tty != nil {
		fmt.Fprint(tty, "\r\x1b[K")
	}
	if t.State == model.TemplateFailed {
		fmt.Fprintf(c.stderr, "sietch template build: %s failed at step %s: %s\n", req.Name, step, t.Reason)
		return exitError
	}
	if c.g.json {
		printJSON(c.stdout, t)
	} else {
		fmt.Fprintln(c.stdout, t.Name)
	}
	return exitOK
}

func (c *cli) templateLs(ctx context.Context, fs *pflag.FlagSet, args []string) int {
	err := fs.Parse(args)
	if err == nil && fs.NArg() > 0 {
		err = fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if rc, done := c.parsed("template", fs, err); done {
		return rc
	}
	api, err := c.connect(true)
	if err != nil {
		return c.fail("template ls", err)
	}
	ts, err := api.Templates(ctx)
	if err != nil {
		return c.fail("template ls", err)
	}
	if c.g.json {
		printJSON(c.stdout, map[string][]model.Template{"templates": nonNil(ts)})
		return exitOK
	}
	templateTable(c.stdout, ts, c.now())
	return exitOK
}

func (c *cli) templateRm(ctx context.Context, fs *pflag.FlagSet, args []string) int {
	return c.removeEach(ctx, "template", "template rm", "template NAME", fs, args, (*client.Client).DeleteTemplate)
}
