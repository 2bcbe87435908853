package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/sietch-vm/sietch/api/client"
	"github.com/sietch-vm/sietch/api/model"
)

// copySpec is a parsed `sietch cp`: one side local, one in a sandbox.
type copySpec struct {
	upload bool   // local → sandbox
	id     string // sandbox
	remote string // absolute path in the sandbox
	local  string // path here; "-" is stdin or stdout
	mode   os.FileMode
	setMod bool // --mode given
	tree   bool // -r: directories too, as tar streams
}

// sandboxIDPattern is what may stand before the colon of ID:/path. Local
// paths with a colon can be written ./a:b.
var sandboxIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// splitRemote reports whether arg is ID:/path.
func splitRemote(arg string) (id, p string, ok bool) {
	id, p, ok = strings.Cut(arg, ":")
	if !ok || !sandboxIDPattern.MatchString(id) || !strings.HasPrefix(p, "/") {
		return "", "", false
	}
	return id, p, true
}

func parseCp(fs *pflag.FlagSet, args []string) (copySpec, error) {
	var cs copySpec
	mode := fs.String("mode", "", "permission bits of the uploaded file, octal (default: the local file's, 0644 for stdin)")
	tree := fs.BoolP("recursive", "r", false, "copy directories with what they hold (streamed as tar; see sietch cp --help)")
	if err := fs.Parse(args); err != nil {
		return cs, err
	}
	if fs.NArg() != 2 {
		return cs, errors.New("want SRC and DST, one of them ID:/path")
	}
	src, dst := fs.Arg(0), fs.Arg(1)
	sid, sp, srcRemote := splitRemote(src)
	did, dp, dstRemote := splitRemote(dst)
	switch {
	case srcRemote && dstRemote:
		return cs, errors.New("both sides are in sandboxes: copy to a local file, then on")
	case !srcRemote && !dstRemote:
		return cs, errors.New("neither side is ID:/absolute/path")
	case dstRemote:
		cs = copySpec{upload: true, id: did, remote: dp, local: src}
		if strings.HasSuffix(dp, "/") {
			if src == "-" {
				return cs, errors.New("name the file to write from stdin: ID:/dir/name")
			}
			cs.remote = dp + filepath.Base(src)
		}
	default:
		cs = copySpec{id: sid, remote: sp, local: dst}
		if strings.HasSuffix(sp, "/") && !*tree {
			return cs, fmt.Errorf("%s is a directory: copy it with cp -r", src)
		}
	}
	if cs.local == "" {
		return cs, errors.New("the local side is empty: name a local file or directory, or - for stdin or stdout")
	}
	cs.tree = *tree
	if cs.tree && cs.local == "-" {
		return cs, errors.New("-r copies directories, not stdin or stdout (a tar stream: sietch exec ID -- tar c DIR)")
	}
	if *mode != "" {
		if !cs.upload {
			return cs, errors.New("--mode goes with uploads (a download keeps the sandbox file's mode)")
		}
		if cs.tree {
			return cs, errors.New("--mode goes with one-file uploads (-r keeps each file's mode)")
		}
		m, err := strconv.ParseUint(strings.TrimPrefix(*mode, "0o"), 8, 32)
		if err != nil || m > 0o777 {
			return cs, fmt.Errorf("--mode %q: want octal permission bits like 0644", *mode)
		}
		cs.mode, cs.setMod = os.FileMode(m), true
	}
	return cs, nil
}

var cmdCp = &command{
	synopsis: "cp [-r] [--mode 0755] LOCAL ID:/path | cp [-r] ID:/path LOCAL",
	summary: "Copy one file into or out of a sandbox, streamed (any size), keeping permission bits. LOCAL - is\n" +
		"stdin or stdout; ID:/dir/ uploads under the local name; a local directory downloads into it.\n" +
		"With -r a directory is copied with its tree (files, directories, symlinks, modes, mtimes) as a tar\n" +
		"stream: into DST/NAME when DST is an existing directory (or ends in /), else DST is made and gets\n" +
		"the contents. Both ways the receiving side refuses entries that would land outside DST, devices\n" +
		"and fifos; setuid and setgid bits are dropped; each file appears whole or not at all.\n" +
		"A progress bar shows on stderr when it is a terminal.",
	example: "  sietch cp ./data.csv sb-1:/root/data.csv\n  sietch cp sb-1:/root/out.png .\n  tar c src | sietch cp - sb-1:/tmp/src.tar\n" +
		"  sietch cp -r ./project sb-1:/root/project\n  sietch cp -r sb-1:/root/results ./results\n",
	run: func(c *cli, ctx context.Context, fs *pflag.FlagSet, args []string) int {
		cs, err := parseCp(fs, args)
		if rc, done := c.parsed("cp", fs, err); done {
			return rc
		}
		switch {
		case cs.tree && cs.upload:
			err = c.uploadTree(ctx, cs)
		case cs.tree:
			err = c.downloadTree(ctx, cs)
		case cs.upload:
			err = c.upload(ctx, cs)
		default:
			err = c.download(ctx, cs)
		}
		if err != nil {
			return c.fail("cp", err)
		}
		return exitOK
	},
}

func (c *cli) upload(ctx context.Context, cs copySpec) error {
	api, err := c.connect(true)
	if err != nil {
		return err
	}
	var r io.Reader = c.stdin
	size, mode := int64(-1), os.FileMode(0o644)
	if cs.local != "-" {
		f, err := os.Open(cs.local)
		if err != nil {
			return err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			if fi.IsDir() {
				return fmt.Errorf("%s is a directory: copy it with cp -r", cs.local)
			}
			return fmt.Errorf("%s is not a regular file: cp copies files and, with -r, directories", cs.local)
		}
		r, size, mode = f, fi.Size(), fi.Mode().Perm()
	}
	if cs.setMod {
		mode = cs.mode
	}
	bar := c.progress(path.Base(cs.remote), size)
	err = api.Upload(ctx, cs.id, cs.remote, mode, bar.reader(r))
	bar.done(err == nil)
	return err
}

func (c *cli) download(ctx context.Context, cs copySpec) error {
	api, err := c.connect(true)
	if err != nil {
		return err
	}
	f, err := api.Open(ctx, cs.id, cs.remote)
	if err != nil {
		var e *client.Error
		if errors.As(err, &e) && e.Code == model.CodeBadRequest && strings.Contains(e.Message, "not a regular file") {
			return fmt.Errorf("%w (copy directories with sietch cp -r)", err)
		}
		return err
	}
	defer f.Body.Close()
	bar := c.progress(path.Base(cs.remote), f.Size)
	if cs.local == "-" {
		_, err = io.Copy(bar.writer(c.stdout), f.Body)
		bar.done(err == nil)
		return err
	}
	dst := cs.local
	if fi, err := os.Stat(dst); err == nil && fi.IsDir() {
		dst = filepath.Join(dst, path.Base(cs.remote))
	}
	// Write beside the destination and rename, so an interrupted copy
	// never leaves a truncated file under the real name.
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".sietch-*")
	if err != nil {
		return err
	}
	n, err := io.Copy(bar.writer(tmp), f.Body)
	if err == nil && f.Size >= 0 && n != f.Size {
		err = fmt.Errorf("got %d of %d bytes (connection cut?)", n, f.Size)
	}
	if err == nil {
		err = tmp.Chmod(f.Mode)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), dst)
	}
	bar.done(err == nil)
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("download %s to %s: %w", cs.remote, dst, err)
	}
	return nil
}
