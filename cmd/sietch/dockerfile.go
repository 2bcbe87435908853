package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"

	"github.com/sietch-vm/sietch/api/client"
	"github.com/sietch-vm/sietch/rootfs/dockerfile"
)

// outsideDockerfile is where a Dockerfile kept outside its build context
// travels in the context archive (and its own ignore file beside it).
const outsideDockerfile = ".sietch-build/Dockerfile"

// checkDockerfile checks `image build -f`'s flags.
func (b *imageBuild) checkDockerfile(fs *pflag.FlagSet, buildArgs []string) error {
	for _, f := range []string{"from-dir", "from-oci", "from-registry", "debian", "default", "desktop", "packages", "mirror", "size", "label", "cache"} {
		if fs.Changed(f) {
			return fmt.Errorf("--%s does not go with -f Dockerfile", f)
		}
	}
	if b.out == "" {
		return fmt.Errorf("-o NAME is required with -f: the name sietchd gives the image")
	}
	if strings.ContainsAny(b.out, "/.") && strings.HasSuffix(b.out, ".ext4") {
		return fmt.Errorf("-o %s: with -f, -o names the image in sietchd (such as myapp), not a file", b.out)
	}
	for _, kv := range buildArgs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return fmt.Errorf("--build-arg %q: want NAME=VALUE", kv)
		}
		if b.buildArgs == nil {
			b.buildArgs = map[string]string{}
		}
		b.buildArgs[k] = v
	}
	return nil
}

// runDockerfile sends the build context (what .dockerignore leaves in, and
// the Dockerfile) to sietchd and streams the build's output to stderr.
func (b imageBuild) runDockerfile(ctx context.Context, c *cli) int {
	fail := func(err error) int {
		fmt.Fprintf(c.stderr, "sietch image build: %v\n", err)
		return exitCode(err)
	}
	file, err := filepath.Abs(b.file)
	if err != nil {
		return fail(err)
	}
	dir := b.context
	if dir == "" {
		dir = filepath.Dir(file)
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return fail(err)
	}
	text, err := os.ReadFile(file)
	if err != nil {
		return fail(fmt.Errorf("read the Dockerfile: %w", err))
	}
	// Refuse what cannot build here, with its line, before sending anything.
	if _, err := dockerfile.Parse(text); err != nil {
		fmt.Fprintf(c.stderr, "sietch image build: %v\n", err)
		return exitUsage
	}
	bc, err := dockerfile.OpenContext(dir, file, dockerfile.Limits{})
	if err != nil {
		return fail(err)
	}
	defer bc.Close()
	var keep []string
	add := map[string][]byte{}
	rel, err := filepath.Rel(dir, file)
	inside := err == nil && !strings.HasPrefix(rel, "..") && !filepath.IsAbs(rel)
	if inside {
		rel = filepath.ToSlash(rel)
		keep = append(keep, rel, rel+".dockerignore")
	} else {
		rel = outsideDockerfile
		add[rel] = text
		if ig, err := os.ReadFile(file + ".dockerignore"); err == nil {
			add[rel+".dockerignore"] = ig
		}
	}
	if bc.IgnoreFile == filepath.Join(dir, ".dockerignore") {
		keep = append(keep, ".dockerignore")
	}
	keep = existing(dir, keep)
	cl, err := c.connect(true)
	if err != nil {
		return fail(err)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(bc.WriteTar(pw, keep, add)) }()
	im, err := cl.BuildImage(ctx, client.ImageBuild{Name: b.out, Dockerfile: rel, Target: b.target, BuildArgs: b.buildArgs, NoCache: b.noCache}, pr, c.stderr)
	pr.CloseWithError(io.ErrClosedPipe)
	if err != nil {
		return fail(err)
	}
	fmt.Fprintln(c.stdout, im.Name)
	return exitOK
}

// existing keeps the names that are files in dir.
func existing(dir string, names []string) []string {
	var out []string
	for _, n := range names {
		if fi, err := os.Lstat(filepath.Join(dir, n)); err == nil && fi.Mode().IsRegular() {
			out = append(out, n)
		}
	}
	return out
}
