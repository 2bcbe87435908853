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
)

// copySpec is a parsed `sietch cp`: one side local, one in a sandbox.
type copySpec struct {
	upload bool   // local → sandbox
	id     string // sandbox
	remote string // absolute path in the sandbox
	local  string // path here; "-" is stdin or stdout
	mode   os.FileMode
	setMod bool // --mode given
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
		if strings.HasSuffix(sp, "/") {
			return cs, fmt.Errorf("%s is a directory: cp copies one file", src)
		}
	}
	if *mode != "" {
		if !cs.upload {
			return cs, errors.New("--mode goes with uploads (a download keeps the sandbox file's mode)")
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
	synopsis: "cp [--mode 0755] LOCAL ID:/path | cp ID:/path LOCAL",
	summary: "Copy one file into or out of a sandbox, streamed (any size), keeping permission bits. LOCAL - is\n" +
		"stdin or stdout; ID:/dir/ uploads under the local name; a local directory downloads into it.\n" +
		"A progress bar shows on stderr when it is a terminal.",
	example: "  sietch cp ./data.csv sb-1:/root/data.csv\n  sietch cp sb-1:/root/out.png .\n  tar c src | sietch cp - sb-1:/tmp/src.tar\n",
	run: func(c *cli, ctx context.Context, fs *pflag.FlagSet, args []string) int {
		cs, err := parseCp(fs, args)
		if rc, done := c.parsed("cp", fs, err); done {
			return rc
		}
		if cs.upload {
			err = c.upload(ctx, cs)
		} else {
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
			return fmt.Errorf("%s is not a regular file: cp copies one file (tar a directory and pipe it: tar c DIR | sietch cp - ID:/tmp/d.tar)", cs.local)
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
