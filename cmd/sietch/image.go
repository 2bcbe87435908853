package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/sietch-vm/sietch/rootfs"
	"github.com/sietch-vm/sietch/rootfs/registry"
)

// imageBuild is a parsed `sietch image build` command line.
type imageBuild struct {
	fromDir, fromOCI, debian string
	fromRegistry             string
	packages                 []string
	mirror                   string
	useDefault, useDesktop   bool
	noBrowser                bool // --desktop --browser=false
	out, cache               string
	opts                     rootfs.Options
	verbose                  bool
	// From a Dockerfile, through sietchd: -f, and out is the image's name.
	file, context, target string
	buildArgs             map[string]string
	noCache               bool
}

func cmdImage(c *cli, args []string) int {
	stdout, stderr := c.stdout, c.stderr
	if len(args) == 0 || args[0] != "build" {
		fmt.Fprint(stderr, "sietch image: want a subcommand: build\n\n", usage)
		return exitUsage
	}
	b, err := parseImageBuild(args[1:], &c.g)
	if errors.Is(err, pflag.ErrHelp) {
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "sietch image build: %v\n", err)
		return exitUsage
	}
	if b.verbose || isTerminal(os.Stderr) {
		b.opts.Progress = stderr
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if b.file != "" {
		return b.runDockerfile(ctx, c)
	}
	path, err := b.run(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "sietch image build: %v\n", err)
		return exitError
	}
	fmt.Fprintln(stdout, path)
	return exitOK
}

func parseImageBuild(args []string, g *globals) (imageBuild, error) {
	var b imageBuild
	var size string
	var buildArgs []string
	fs := pflag.NewFlagSet("image build", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if g != nil {
		g.add(fs)
	}
	fs.StringVarP(&b.file, "file", "f", "", "build from this Dockerfile, in sietchd (RUN steps in a build sandbox); -o names the image")
	fs.StringVar(&b.context, "context", "", "the build context directory (with -f; default the Dockerfile's directory)")
	fs.StringArrayVar(&buildArgs, "build-arg", nil, "NAME=VALUE for an ARG (with -f; repeatable)")
	fs.StringVar(&b.target, "target", "", "the stage to build (with -f; default the last)")
	fs.BoolVar(&b.noCache, "no-cache", false, "run every step even when cached (with -f)")
	fs.StringVar(&b.fromDir, "from-dir", "", "build from this directory tree")
	fs.StringVar(&b.fromOCI, "from-oci", "", "build from a `docker save` tarball or an OCI layout directory")
	fs.StringVar(&b.fromRegistry, "from-registry", "", "pull REF (e.g. python:3.12) from an OCI registry, linux/amd64; credentials from `docker login`")
	fs.StringVar(&b.debian, "debian", "", "build a Debian SUITE with debootstrap (root)")
	fs.StringSliceVar(&b.packages, "packages", nil, "extra Debian packages (with --debian)")
	fs.StringVar(&b.mirror, "mirror", rootfs.DefaultMirror, "Debian mirror (with --debian)")
	fs.BoolVar(&b.useDefault, "default", false, "build (or reuse) the default Debian image")
	fs.BoolVar(&b.useDesktop, "desktop", false, "build (or reuse) the desktop image: the default one with an X server (Xvfb), a font, and with --browser Chromium, Openbox and noVNC")
	browser := fs.Bool("browser", true, "with --desktop: include Chromium, a window manager and noVNC (--browser=false: a lighter image, X only)")
	fs.StringVarP(&b.out, "output", "o", "", "image file to write")
	fs.StringVar(&size, "size", "", "image size (e.g. 2G, 512M); default: content * 1.3 + 64M")
	fs.StringVar(&b.opts.Label, "label", "", "ext4 volume label (default rootfs)")
	fs.StringVar(&b.cache, "cache", "", "cache directory for --default (default ~/.cache/sietch/images) or --from-registry's layers (default ~/.cache/sietch/layers)")
	fs.BoolVarP(&b.verbose, "verbose", "v", false, "print progress even when stderr is not a terminal")
	if err := fs.Parse(args); err != nil {
		return b, err
	}
	if fs.NArg() > 0 {
		return b, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if b.file != "" {
		return b, b.checkDockerfile(fs, buildArgs)
	}
	for _, f := range []string{"context", "build-arg", "target", "no-cache"} {
		if fs.Changed(f) {
			return b, fmt.Errorf("--%s goes with -f Dockerfile", f)
		}
	}
	sources := 0
	for _, set := range []bool{b.fromDir != "", b.fromOCI != "", b.fromRegistry != "", b.debian != "", b.useDefault, b.useDesktop} {
		if set {
			sources++
		}
	}
	if sources != 1 {
		return b, errors.New("give exactly one of --from-dir, --from-oci, --from-registry, --debian, --default, --desktop, -f Dockerfile")
	}
	if b.out == "" && !b.useDefault && !b.useDesktop {
		return b, errors.New("-o OUT.ext4 is required")
	}
	if len(b.packages) > 0 && b.debian == "" {
		return b, errors.New("--packages goes with --debian")
	}
	if fs.Changed("mirror") && b.debian == "" {
		return b, errors.New("--mirror goes with --debian")
	}
	b.noBrowser = !*browser
	if fs.Changed("browser") && !b.useDesktop {
		return b, errors.New("--browser goes with --desktop")
	}
	if b.cache != "" && !b.useDefault && !b.useDesktop && b.fromRegistry == "" {
		return b, errors.New("--cache goes with --default, --desktop or --from-registry")
	}
	if size != "" {
		n, err := parseSize(size)
		if err != nil {
			return b, fmt.Errorf("--size: %w", err)
		}
		b.opts.SizeBytes = n
	}
	return b, nil
}

// run builds the image and returns its path.
func (b imageBuild) run(ctx context.Context) (string, error) {
	switch {
	case b.fromDir != "":
		return b.out, rootfs.FromDir(ctx, b.fromDir, b.out, b.opts)
	case b.fromOCI != "":
		return b.out, rootfs.FromOCI(ctx, b.fromOCI, b.out, b.opts)
	case b.debian != "":
		return b.out, rootfs.FromDebian(ctx, b.debian, b.mirror, b.packages, b.out, b.opts)
	case b.fromRegistry != "":
		cache, err := b.cacheDir("layers")
		if err != nil {
			return "", err
		}
		img, err := registry.Pull(ctx, b.fromRegistry, registry.Options{CacheDir: cache, Progress: b.opts.Progress})
		if err != nil {
			return "", err
		}
		return b.out, rootfs.FromImage(ctx, img.Image, b.fromRegistry+"@"+img.Digest.String(), b.out, b.opts)
	}
	cache, err := b.cacheDir("images")
	if err != nil {
		return "", err
	}
	var path string
	if b.useDesktop {
		path, err = rootfs.Desktop(ctx, cache, b.opts, !b.noBrowser)
	} else {
		path, err = rootfs.Default(ctx, cache, b.opts)
	}
	if err != nil || b.out == "" {
		return path, err
	}
	if err := copySparse(path, b.out); err != nil {
		return "", err
	}
	return b.out, nil
}

// cacheDir is --cache, or ~/.cache/sietch/<kind>.
func (b imageBuild) cacheDir(kind string) (string, error) {
	if b.cache != "" {
		return b.cache, nil
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("find a cache directory (pass --cache DIR): %w", err)
	}
	return filepath.Join(dir, "sietch", kind), nil
}

// parseSize reads a byte count with an optional binary suffix: 2G, 512M,
// 1.5G, 4096, 2GiB.
func parseSize(s string) (int64, error) {
	t := strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(strings.TrimSpace(s)), "B"), "I")
	mult := int64(1)
	if t != "" {
		if i := strings.IndexByte("KMGT", t[len(t)-1]); i >= 0 {
			mult = 1 << (10 * (i + 1))
			t = t[:len(t)-1]
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || !(f > 0 && f*float64(mult) < 1<<53) {
		return 0, fmt.Errorf("bad size %q (want e.g. 2G, 512M, 4096)", s)
	}
	return int64(f * float64(mult)), nil
}

// copySparse copies the cached image to out (via out+".tmp"), leaving the
// all-zero blocks as holes.
func copySparse(src, out string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copy image: %w", err)
	}
	defer in.Close()
	tmp := out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("copy image: %w", err)
	}
	err = copyHoles(f, in)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, out)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("copy image to %s: %w", out, err)
	}
	return nil
}

func copyHoles(dst *os.File, src *os.File) error {
	buf := make([]byte, 1<<20)
	var off int64
	for {
		n, err := io.ReadFull(src, buf)
		if n > 0 {
			if !allZero(buf[:n]) {
				if _, werr := dst.WriteAt(buf[:n], off); werr != nil {
					return werr
				}
			}
			off += int64(n)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if err := dst.Truncate(off); err != nil {
		return err
	}
	return dst.Sync()
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
