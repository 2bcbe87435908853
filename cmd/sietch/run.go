package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/sietch-vm/sietch/api/model"
)

// maxRunCode bounds code read from stdin for `sietch run ID -`.
const maxRunCode = 8 << 20

type runCmd struct {
	id, context, lang string
	timeout           time.Duration
	save              string // directory for rich results
	code              string
	fromStdin         bool
}

func parseRun(fs *pflag.FlagSet, args []string) (runCmd, error) {
	var x runCmd
	fs.StringVarP(&x.context, "context", "c", "", `code context id (default: the language's default context: "default" for python, "default-node", "default-bash")`)
	fs.StringVarP(&x.lang, "lang", "l", "", "language of the default context to use: python (default), node or bash")
	fs.DurationVar(&x.timeout, "timeout", 0, "interrupt the run after this long, e.g. 30s (exit status 124)")
	fs.StringVar(&x.save, "save", "", "write rich results (images, HTML) to files in this directory")
	if err := fs.Parse(args); err != nil {
		return x, err
	}
	if fs.NArg() != 2 {
		return x, errors.New("want a sandbox ID and the code (one argument, or - to read it from stdin)")
	}
	x.id, x.code = fs.Arg(0), fs.Arg(1)
	x.fromStdin = x.code == "-"
	if x.context != "" && x.lang != "" {
		return x, errors.New("--context and --lang: give one (a context has its language)")
	}
	switch x.lang {
	case "", model.LanguagePython:
		x.context = firstNonEmpty(x.context, model.DefaultContext)
	case model.LanguageNode, model.LanguageBash:
		x.context = model.DefaultContext + "-" + x.lang
	default:
		return x, fmt.Errorf("--lang %q: want python, node or bash", x.lang)
	}
	if x.timeout < 0 || (x.timeout > 0 && x.timeout < time.Millisecond) {
		return x, fmt.Errorf("--timeout %v: want at least 1ms", x.timeout)
	}
	return x, nil
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

var cmdRun = &command{
	synopsis: "run [--context C | --lang L] [--timeout D] [--save DIR] ID CODE|-",
	summary: "Run code in a code context, a long-lived interpreter in the sandbox whose state persists\n" +
		"between runs, printing stdout, stderr, the value of the last expression and any error as they\n" +
		"come. Exit status: 0 ok, 1 the code raised an error, 124 timed out, 130 interrupted.",
	example: "  sietch run sb-1 'x = 6 * 7'\n  sietch run sb-1 'x'            # 42\n" +
		"  sietch run --lang bash sb-1 'cd /tmp; ls'\n  sietch run sb-1 - < script.py\n",
	run: func(c *cli, ctx context.Context, fs *pflag.FlagSet, args []string) int {
		x, err := parseRun(fs, args)
		if rc, done := c.parsed("run", fs, err); done {
			return rc
		}
		if x.fromStdin {
			b, err := io.ReadAll(io.LimitReader(c.stdin, maxRunCode+1))
			if err != nil {
				return c.fail("run", fmt.Errorf("read the code from stdin: %w", err))
			}
			if len(b) > maxRunCode {
				return c.fail("run", errors.New("the code on stdin is over 8 MiB: copy it in with sietch cp and run it from there"))
			}
			x.code = string(b)
		}
		api, err := c.connect(true)
		if err != nil {
			return c.fail("run", err)
		}
		p := &runPrinter{c: c, save: x.save}
		end, err := api.Run(ctx, x.id, x.context, model.RunRequest{Code: x.code, TimeoutMS: int(x.timeout / time.Millisecond)}, p.event)
		if err != nil {
			if ctx.Err() != nil {
				fmt.Fprintln(c.stderr, "sietch run: interrupted")
				return exitInterrupted
			}
			return c.fail("run", err)
		}
		if c.g.json {
			if err := p.line(model.RunEvent{End: &end}); err != nil {
				return c.fail("run", err)
			}
		}
		switch end.Status {
		case model.RunOK:
			return exitOK
		case model.RunTimeout:
			fmt.Fprintf(c.stderr, "sietch run: interrupted after --timeout %v\n", x.timeout)
			return exitTimedOut
		case model.RunInterrupted:
			return exitInterrupted
		}
		if end.ExitCode != nil && *end.ExitCode > 0 && *end.ExitCode < 256 {
			return *end.ExitCode // bash: the code's own status
		}
		return exitError
	},
}

// runPrinter shows a run's events as a terminal user expects them.
type runPrinter struct {
	c       *cli
	save    string
	results int
}

func (p *runPrinter) event(ev model.RunEvent) error {
	c := p.c
	if c.g.json {
		return p.line(ev)
	}
	switch {
	case ev.Stdout != "":
		_, err := io.WriteString(c.stdout, ev.Stdout)
		return err
	case ev.Stderr != "":
		_, err := io.WriteString(c.stderr, ev.Stderr)
		return err
	case ev.Error != nil:
		msg := ev.Error.Traceback
		if msg == "" {
			msg = ev.Error.Name
			if ev.Error.Value != "" {
				msg += ": " + ev.Error.Value
			}
		}
		_, err := io.WriteString(c.stderr, strings.TrimRight(msg, "\n")+"\n")
		return err
	case ev.Result != nil:
		return p.result(ev.Result)
	}
	return nil
}

// line prints ev as one NDJSON line, as the API streams it.
func (p *runPrinter) line(ev model.RunEvent) error {
	b, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	_, err = p.c.stdout.Write(append(b, '\n'))
	return err
}

// result prints a result's text and saves (or mentions) its richer forms.
func (p *runPrinter) result(r map[string]string) error {
	p.results++
	if t, ok := r["text/plain"]; ok {
		if _, err := io.WriteString(p.c.stdout, strings.TrimRight(t, "\n")+"\n"); err != nil {
			return err
		}
	}
	mimes := make([]string, 0, len(r))
	for m := range r {
		if m != "text/plain" {
			mimes = append(mimes, m)
		}
	}
	sort.Strings(mimes)
	for _, m := range mimes {
		data := []byte(r[m])
		if strings.HasPrefix(m, "image/") && m != "image/svg+xml" {
			b, err := base64.StdEncoding.DecodeString(r[m])
			if err != nil {
				return fmt.Errorf("result %s: bad base64 from the server: %w", m, err)
			}
			data = b
		}
		if p.save == "" {
			fmt.Fprintf(p.c.stderr, "(result %d also as %s, %s; --save DIR writes it)\n", p.results, m, humanBytes(int64(len(data))))
			continue
		}
		name := filepath.Join(p.save, fmt.Sprintf("result-%d%s", p.results, extension(m)))
		if err := os.WriteFile(name, data, 0o644); err != nil {
			return fmt.Errorf("save result: %w", err)
		}
		fmt.Fprintf(p.c.stderr, "(result %d as %s: %s)\n", p.results, m, name)
	}
	return nil
}

func extension(mime string) string {
	switch mime {
	case "image/png":
		return ".png"
	case "image/jpeg":
		return ".jpg"
	case "image/svg+xml":
		return ".svg"
	case "text/html":
		return ".html"
	case "application/json":
		return ".json"
	case "text/markdown":
		return ".md"
	case "text/latex":
		return ".tex"
	}
	return ".txt"
}
