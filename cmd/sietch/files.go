package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/sietch-vm/sietch/api/client"
	"github.com/sietch-vm/sietch/api/model"
	"github.com/sietch-vm/sietch/internal/tarx"
	"github.com/sietch-vm/sietch/internal/unixmode"
)

// Files in sandboxes: ls ID:/path and rm ID:/path (the sandbox forms of
// ls and rm), stat, mkdir, mv, watch, and cp -r.

// remoteArg parses one ID:/path argument or says what is wrong with it.
func remoteArg(arg string) (id, p string, err error) {
	id, p, ok := splitRemote(arg)
	if !ok {
		return "", "", fmt.Errorf("%q is not ID:/absolute/path", arg)
	}
	return id, p, nil
}

// hasRemote reports whether any of args is ID:/path.
func hasRemote(args []string) bool {
	for _, a := range args {
		if _, _, ok := splitRemote(a); ok {
			return true
		}
	}
	return false
}

// modeString renders a file's type and octal mode as ls -l does
// ("drwxr-xr-x", "-rwsr-xr-x").
func modeString(typ, octal string) string {
	m, err := unixmode.Parse(octal)
	if err != nil {
		return "?" + octal
	}
	t := map[string]byte{"file": '-', "dir": 'd', "symlink": 'l'}[typ]
	if t == 0 {
		t = '?'
	}
	b := []byte{t}
	rwx := "rwxrwxrwx"
	for i := 0; i < 9; i++ {
		if m&(1<<uint(8-i)) != 0 {
			b = append(b, rwx[i])
		} else {
			b = append(b, '-')
		}
	}
	special := func(i int, on bool, set, unset byte) {
		if !on {
			return
		}
		if b[i] == '-' {
			b[i] = unset
		} else {
			b[i] = set
		}
	}
	special(3, m&os.ModeSetuid != 0, 's', 'S')
	special(6, m&os.ModeSetgid != 0, 's', 'S')
	special(9, m&os.ModeSticky != 0, 't', 'T')
	return string(b)
}

// fileName is a listing's name column: directories end in /, symlinks
// show their target.
func fileName(fi model.FileInfo) string {
	switch fi.Type {
	case "dir":
		return fi.Name + "/"
	case "symlink":
		return fi.Name + " -> " + fi.Target
	}
	return fi.Name
}

func fileTable(w io.Writer, ents []model.FileInfo) error {
	rows := make([][]string, 0, len(ents))
	for _, fi := range ents {
		rows = append(rows, []string{modeString(fi.Type, fi.Mode), fmt.Sprint(fi.Size), fi.ModTime.UTC().Format("2006-01-02 15:04:05"), fileName(fi)})
	}
	return table(w, []string{"MODE", "SIZE", "MODIFIED (UTC)", "NAME"}, rows)
}

// lsFiles lists a directory in a sandbox, or describes one file as ls -l
// does.
func (c *cli) lsFiles(ctx context.Context, arg string) int {
	id, p, err := remoteArg(arg)
	if err != nil {
		return c.fail("ls", err)
	}
	api, err := c.connect(true)
	if err != nil {
		return c.fail("ls", err)
	}
	fi, err := api.Stat(ctx, id, p)
	if err != nil {
		return c.fail("ls", err)
	}
	ents := []model.FileInfo{fi}
	if fi.Type == "dir" || (fi.Type == "symlink" && strings.HasSuffix(p, "/")) { // ID:/link/ lists what it points to
		if ents, err = api.ListFiles(ctx, id, p); err != nil {
			return c.fail("ls", err)
		}
	}
	if c.g.json {
		printJSON(c.stdout, model.FileList{Entries: nonNil(ents)})
		return exitOK
	}
	fileTable(c.stdout, ents)
	return exitOK
}

// rmFiles removes files in sandboxes, printing each one removed; it goes on
// past failures and returns the first failure's status.
func (c *cli) rmFiles(ctx context.Context, args []string, recursive bool) int {
	api, err := c.connect(true)
	if err != nil {
		return c.fail("rm", err)
	}
	rc := exitOK
	for _, a := range args {
		id, p, err := remoteArg(a)
		if err == nil {
			err = api.Remove(ctx, id, p, recursive)
		}
		if err != nil {
			if r := c.fail("rm", err); rc == exitOK {
				rc = r
			}
			continue
		}
		fmt.Fprintln(c.stdout, a)
	}
	return rc
}

// parseRm reads `sietch rm`: sandbox IDs, or ID:/path with -r allowed;
// files reports which.
func parseRm(fs *pflag.FlagSet, args []string) (ids []string, files, recursive bool, err error) {
	r := fs.BoolP("recursive", "r", false, "with ID:/path: remove directories and everything in them")
	if err := fs.Parse(args); err != nil {
		return nil, false, false, err
	}
	if fs.NArg() == 0 {
		return nil, false, false, errors.New("want at least one sandbox ID, or ID:/path")
	}
	n := 0
	for _, a := range fs.Args() {
		if strings.Contains(a, ":") {
			if _, _, err := remoteArg(a); err != nil {
				return nil, false, false, err
			}
			n++
		}
	}
	switch {
	case n > 0 && n < fs.NArg():
		return nil, false, false, errors.New("both sandbox IDs and ID:/path given: remove sandboxes and files in separate commands")
	case n == 0 && *r:
		return nil, false, false, errors.New("-r goes with ID:/path (sandboxes are always removed whole)")
	}
	return fs.Args(), n > 0, *r, nil
}

var cmdStat = &command{
	synopsis: "stat ID:/path",
	summary:  "Describe a file in a sandbox: type, size, mode, modification time, and a symlink's target (the link itself, not what it points to).",
	example:  "  sietch stat sb-1:/root/run.sh\n  sietch stat --json sb-1:/etc | jq -r .mode\n",
	run: func(c *cli, ctx context.Context, fs *pflag.FlagSet, args []string) int {
		err := fs.Parse(args)
		if err == nil && fs.NArg() != 1 {
			err = errors.New("want one ID:/path")
		}
		var id, p string
		if err == nil {
			id, p, err = remoteArg(fs.Arg(0))
		}
		if rc, done := c.parsed("stat", fs, err); done {
			return rc
		}
		api, err := c.connect(true)
		if err != nil {
			return c.fail("stat", err)
		}
		fi, err := api.Stat(ctx, id, p)
		if err != nil {
			return c.fail("stat", err)
		}
		if c.g.json {
			printJSON(c.stdout, fi)
			return exitOK
		}
		fmt.Fprintf(c.stdout, "path:     %s\ntype:     %s\nsize:     %d\nmode:     %s (%s)\nmodified: %s\n",
			p, fi.Type, fi.Size, fi.Mode, modeString(fi.Type, fi.Mode), fi.ModTime.UTC().Format(time.RFC3339Nano))
		if fi.Type == "symlink" {
			fmt.Fprintf(c.stdout, "target:   %s\n", fi.Target)
		}
		return exitOK
	},
}

func parseMkdir(fs *pflag.FlagSet, args []string) ([][2]string, model.MkdirRequest, error) {
	var req model.MkdirRequest
	fs.BoolVarP(&req.Parents, "parents", "p", false, "make missing parents too; an existing directory is no error")
	fs.StringVar(&req.Mode, "mode", "", "permission bits, octal (default 0755)")
	if err := fs.Parse(args); err != nil {
		return nil, req, err
	}
	if fs.NArg() == 0 {
		return nil, req, errors.New("want at least one ID:/path")
	}
	if req.Mode != "" {
		if _, err := unixmode.Parse(req.Mode); err != nil {
			return nil, req, fmt.Errorf("--mode: %v", err)
		}
	}
	var targets [][2]string
	for _, a := range fs.Args() {
		id, p, err := remoteArg(a)
		if err != nil {
			return nil, req, err
		}
		targets = append(targets, [2]string{id, p})
	}
	return targets, req, nil
}

var cmdMkdir = &command{
	synopsis: "mkdir [-p] [--mode 0755] ID:/path...",
	summary:  "Make directories in sandboxes (and their parents with -p, as mkdir -p). Goes on past failures.",
	example:  "  sietch mkdir -p sb-1:/root/project/src\n",
	run: func(c *cli, ctx context.Context, fs *pflag.FlagSet, args []string) int {
		targets, req, err := parseMkdir(fs, args)
		if rc, done := c.parsed("mkdir", fs, err); done {
			return rc
		}
		api, err := c.connect(true)
		if err != nil {
			return c.fail("mkdir", err)
		}
		rc := exitOK
		for _, t := range targets {
			r := req
			r.Path = t[1]
			if _, err := api.Mkdir(ctx, t[0], r); err != nil {
				if x := c.fail("mkdir", err); rc == exitOK {
					rc = x
				}
			}
		}
		return rc
	},
}

// parseMv reads `sietch mv ID:/from ID:/to`; a destination ending in /
// means "into that directory, under the same name".
func parseMv(fs *pflag.FlagSet, args []string) (id, from, to string, err error) {
	if err := fs.Parse(args); err != nil {
		return "", "", "", err
	}
	if fs.NArg() != 2 {
		return "", "", "", errors.New("want ID:/from and ID:/to")
	}
	id, from, err = remoteArg(fs.Arg(0))
	if err != nil {
		return "", "", "", err
	}
	did, to, err := remoteArg(fs.Arg(1))
	if err != nil {
		return "", "", "", err
	}
	if did != id {
		return "", "", "", errors.New("mv moves within one sandbox; between sandboxes, cp out and in")
	}
	if strings.HasSuffix(to, "/") {
		to += path.Base(from)
	}
	return id, from, to, nil
}

var cmdMv = &command{
	synopsis: "mv ID:/from ID:/to",
	summary: "Rename or move a file, symlink or directory within a sandbox. An existing file at the destination is\n" +
		"replaced; an existing directory never is (name a path inside it, or end the destination with /).",
	example: "  sietch mv sb-1:/root/out.txt sb-1:/root/results/\n  sietch mv sb-1:/tmp/build sb-1:/srv/app\n",
	run: func(c *cli, ctx context.Context, fs *pflag.FlagSet, args []string) int {
		id, from, to, err := parseMv(fs, args)
		if rc, done := c.parsed("mv", fs, err); done {
			return rc
		}
		api, err := c.connect(true)
		if err != nil {
			return c.fail("mv", err)
		}
		if _, err := api.Rename(ctx, id, from, to); err != nil {
			return c.fail("mv", err)
		}
		return exitOK
	},
}

var cmdWatch = &command{
	synopsis: "watch [-r] ID:/dir",
	summary: "Print changes under a directory in a sandbox as they happen, one line each: time, what\n" +
		"(create, write, remove, rename, chmod, overflow), path (directories end in /). A rename prints\n" +
		"rename for the old name and create for the new one; overflow means events were lost. -r watches\n" +
		"every directory under it too, those made later included. Runs until interrupted, or until the\n" +
		"directory itself is removed or moved. --json prints the API's NDJSON events.",
	example: "  sietch watch -r sb-1:/root/project\n  sietch watch --json sb-1:/tmp | jq -r 'select(.type==\"create\") | .path'\n",
	run: func(c *cli, ctx context.Context, fs *pflag.FlagSet, args []string) int {
		recursive := fs.BoolP("recursive", "r", false, "watch subdirectories too, those made later included")
		err := fs.Parse(args)
		if err == nil && fs.NArg() != 1 {
			err = errors.New("want one ID:/dir")
		}
		var id, p string
		if err == nil {
			id, p, err = remoteArg(fs.Arg(0))
		}
		if rc, done := c.parsed("watch", fs, err); done {
			return rc
		}
		api, err := c.connect(true)
		if err != nil {
			return c.fail("watch", err)
		}
		w, err := api.Watch(ctx, id, p, *recursive)
		if err != nil {
			return c.fail("watch", err)
		}
		defer w.Close()
		for {
			ev, err := w.Next()
			if errors.Is(err, io.EOF) {
				return exitOK // the directory went away; the last event said so
			}
			if err != nil {
				if ctx.Err() != nil {
					return exitOK // interrupted: the normal end
				}
				return c.fail("watch", err)
			}
			if c.g.json {
				printJSONLine(c.stdout, ev)
				continue
			}
			name := ev.Path
			if ev.IsDir && !strings.HasSuffix(name, "/") {
				name += "/"
			}
			fmt.Fprintf(c.stdout, "%s %-8s %s\n", ev.Time.UTC().Format("2006-01-02T15:04:05.000Z"), ev.Type, name)
		}
	},
}

// printJSONLine writes v as one line (NDJSON).
func printJSONLine(w io.Writer, v any) {
	b, _ := json.Marshal(v)
	w.Write(append(b, '\n'))
}

// treeTarget is where a directory copy lands: inside dst under src's name
// when dst is an existing directory, else dst itself.
func treeTarget(dst, srcBase string, dstIsDir bool) string {
	if dstIsDir {
		return path.Join(dst, srcBase)
	}
	return dst
}

// uploadTree copies a local directory into a sandbox as a tar stream. A
// local file with -r is copied as cp would without it.
func (c *cli) uploadTree(ctx context.Context, cs copySpec) error {
	fi, err := os.Stat(cs.local)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return c.upload(ctx, cs)
	}
	api, err := c.connect(true)
	if err != nil {
		return err
	}
	target := cs.remote
	if st, err := api.Stat(ctx, cs.id, cs.remote); err == nil && st.Type == "dir" {
		target = treeTarget(cs.remote, filepath.Base(filepath.Clean(cs.local)), true)
	} else if err != nil && !isNotFound(err) {
		return err
	}
	root, err := os.OpenRoot(cs.local)
	if err != nil {
		return err
	}
	defer root.Close()
	pr, pw := io.Pipe()
	go func() {
		_, err := tarx.Write(pw, root, func(name string, mode fs.FileMode) {
			fmt.Fprintf(c.stderr, "sietch cp: skipped %s: %s files are not copied\n", filepath.Join(cs.local, name), kindOf(mode))
		})
		pw.CloseWithError(err)
	}()
	bar := c.progress(path.Base(target), -1)
	_, err = api.UploadTar(ctx, cs.id, target, bar.reader(pr))
	pr.CloseWithError(errors.New("upload ended")) // stops the writer if the upload failed first
	bar.done(err == nil)
	if err != nil {
		return fmt.Errorf("copy %s to %s:%s: %w", cs.local, cs.id, target, err)
	}
	return nil
}

func kindOf(m fs.FileMode) string {
	switch {
	case m&fs.ModeDevice != 0:
		return "device"
	case m&fs.ModeNamedPipe != 0:
		return "fifo"
	case m&fs.ModeSocket != 0:
		return "socket"
	}
	return "special"
}

func isNotFound(err error) bool {
	var e *client.Error
	return errors.As(err, &e) && e.Code == model.CodeNotFound
}

// downloadTree copies a directory out of a sandbox, extracting its tar
// stream here with the same rules the agent applies (package tarx). A
// sandbox file with -r is copied as cp would without it.
func (c *cli) downloadTree(ctx context.Context, cs copySpec) error {
	api, err := c.connect(true)
	if err != nil {
		return err
	}
	remote := strings.TrimSuffix(cs.remote, "/")
	if remote == "" {
		remote = "/"
	}
	st, err := api.Stat(ctx, cs.id, remote)
	if err != nil {
		return err
	}
	if st.Type != "dir" {
		cs.remote = remote
		return c.download(ctx, cs)
	}
	target := cs.local
	if fi, err := os.Stat(cs.local); err == nil && fi.IsDir() {
		name := path.Base(remote)
		if name == "/" {
			name = cs.id
		}
		target = filepath.Join(cs.local, name)
	}
	if err := os.MkdirAll(target, 0o755); err != nil {
		return err
	}
	root, err := os.OpenRoot(target)
	if err != nil {
		return err
	}
	defer root.Close()
	body, err := api.OpenTar(ctx, cs.id, remote)
	if err != nil {
		return err
	}
	defer body.Close()
	bar := c.progress(path.Base(remote), -1)
	_, err = tarx.Extract(bar.reader(body), root, tarx.Limits{})
	bar.done(err == nil)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = ctxErr
		}
		return fmt.Errorf("copy %s:%s to %s: %w", cs.id, remote, target, err)
	}
	return nil
}
