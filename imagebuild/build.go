// Package imagebuild executes a Dockerfile's plan (package
// rootfs/dockerfile): RUN steps run in a sietch sandbox booted from the
// image built so far, COPY and ADD go into it through its agent, and each
// step's result is captured as an OCI layer (the guest root's overlayfs
// upper directory) and cached by the step's key. The image is the base's
// layers plus the last captured layer, flattened into ext4 (package
// rootfs) without mounting anything on the host.
//
// The sandbox is the isolation: a build's RUN steps are untrusted code, and
// they get the same jail as any sandbox. The host only reads what the
// guest hands back, as a tar archive it extracts confined to a directory.
package imagebuild

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/sietch-vm/sietch/rootfs"
	"github.com/sietch-vm/sietch/rootfs/dockerfile"
	"github.com/sietch-vm/sietch/rootfs/registry"
)

// RunSpec is one RUN step's process.
type RunSpec struct {
	Argv []string
	Env  []string // K=V, the step's whole environment
	Dir  string   // working directory, made if missing
	User string   // "" for root
}

// Machine is a booted build sandbox.
type Machine interface {
	// Run runs a process to its end, its output (stdout and stderr
	// together) to out, and returns its exit status.
	Run(ctx context.Context, s RunSpec, out io.Writer) (int, error)
	// Extract unpacks a tar archive at the root, keeping its owners.
	Extract(ctx context.Context, tar io.Reader) error
	// Mkdir makes a directory and its parents (mode 0755) if missing.
	Mkdir(ctx context.Context, path string) error
	// ReadFile reads a small file (/etc/passwd).
	ReadFile(ctx context.Context, path string) ([]byte, error)
	// Layer writes what changed in the root since boot, as an OCI layer.
	Layer(ctx context.Context, w io.Writer) error
	Close() error
}

// Builder runs builds; one Builder may run several at once.
type Builder struct {
	// Boot starts a build sandbox from an ext4 root image.
	Boot func(ctx context.Context, rootfs string) (Machine, error)
	// Dir holds the layer and step cache and the builds' scratch files.
	Dir string
	// Pull is how bases are fetched; its CacheDir defaults to Dir/blobs.
	Pull registry.Options
	Log  *slog.Logger
}

// Request is one build.
type Request struct {
	Dockerfile []byte
	// Context is the build context directory; "": none (no COPY, ADD or
	// local FROM).
	Context string
	// DockerfilePath is where the Dockerfile is, for its own ignore file
	// (NAME.dockerignore beside it); "": only the context's .dockerignore.
	DockerfilePath string
	BuildArgs      map[string]string
	Target         string
	// Output is the ext4 image to write.
	Output string
	// NoCache runs every step even when its result is cached.
	NoCache bool
	// Out receives the build's log: a line per step and RUN's output.
	Out io.Writer
}

// Result is a finished build.
type Result struct {
	Config   ocispec.ImageConfig
	Steps    int // steps of the stages built
	Cached   int // of which were in the cache
	Warnings []string
	Took     time.Duration
}

// ErrInvalid marks a build refused before it ran (errors.Is): the
// Dockerfile does not parse or plan, the context cannot be read, a base
// cannot be resolved. The error's text is the cause's.
var ErrInvalid = errors.New("invalid build")

type invalid struct{ error }

func (e invalid) Is(target error) bool { return target == ErrInvalid }
func (e invalid) Unwrap() error        { return e.error }

// maxLayerBytes bounds one captured layer.
const maxLayerBytes = 32 << 30

// Build runs req: plans the Dockerfile, builds the stages the target
// needs and writes req.Output.
func (b *Builder) Build(ctx context.Context, req Request) (*Result, error) {
	start := time.Now()
	if req.Out == nil {
		req.Out = io.Discard
	}
	if req.Output == "" {
		return nil, errors.New("image build: no output image given")
	}
	for _, d := range []string{"layers", "steps", "work"} {
		if err := os.MkdirAll(filepath.Join(b.Dir, d), 0o700); err != nil {
			return nil, fmt.Errorf("image build cache: %w", err)
		}
	}
	pull := b.Pull
	if pull.CacheDir == "" {
		pull.CacheDir = filepath.Join(b.Dir, "blobs")
	}
	pull.Progress = req.Out
	df, err := dockerfile.Parse(req.Dockerfile)
	if err != nil {
		return nil, invalid{err}
	}
	var bc *dockerfile.Context
	if req.Context != "" {
		if bc, err = dockerfile.OpenContext(req.Context, req.DockerfilePath, dockerfile.Limits{}); err != nil {
			return nil, invalid{err}
		}
		defer bc.Close()
	}
	run := &build{b: b, req: req, ctx: bc, pull: pull, bases: map[string]v1.Image{}, bctx: ctx}
	plan, err := df.Plan(bc, dockerfile.Options{BuildArgs: req.BuildArgs, Target: req.Target, Resolve: run.resolve})
	if err != nil {
		return nil, invalid{err}
	}
	for _, w := range plan.Warnings {
		fmt.Fprintf(req.Out, "warning: %s\n", w)
	}
	run.plan = plan
	run.images = make([]v1.Image, len(plan.Stages))
	run.trees = make([]string, len(plan.Stages))
	defer run.cleanup()
	for i := range plan.Stages {
		if run.images[i], err = run.stage(ctx, i); err != nil {
			return nil, err
		}
	}
	last := len(plan.Stages) - 1
	fmt.Fprintf(req.Out, "writing the image %s\n", req.Output)
	tree, err := run.tree(ctx, last)
	if err != nil {
		return nil, err
	}
	if err := rootfs.FromDir(ctx, tree, req.Output, rootfs.Options{}); err != nil {
		return nil, fmt.Errorf("write the image: %w", err)
	}
	res := &Result{Config: plan.Config, Steps: run.steps, Cached: run.cached, Warnings: plan.Warnings, Took: time.Since(start)}
	fmt.Fprintf(req.Out, "built %s in %v: %d steps, %d from the cache\n", req.Output, res.Took.Round(100*time.Millisecond), res.Steps, res.Cached)
	return res, nil
}

// build is one Build's state.
type build struct {
	b             *Builder
	req           Request
	ctx           *dockerfile.Context
	pull          registry.Options
	plan          *dockerfile.Plan
	images        []v1.Image // each stage's result
	trees         []string   // each stage's result flattened, once a COPY --from or the output needs it
	bases         map[string]v1.Image
	scratch       []string // files and directories to remove at the end
	steps, cached int
	bctx          context.Context // the build's, for the pulls planning makes
}

func (r *build) cleanup() {
	for _, p := range r.scratch {
		os.RemoveAll(p)
	}
}

// resolve is the plan's Options.Resolve: a registry base's manifest digest
// and config, or a local tarball's.
func (r *build) resolve(base dockerfile.Base) (dockerfile.Resolved, error) {
	img, err := r.baseImage(r.bctx, base)
	if err != nil {
		return dockerfile.Resolved{}, err
	}
	d, err := img.Digest()
	if err != nil {
		return dockerfile.Resolved{}, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return dockerfile.Resolved{}, err
	}
	return dockerfile.Resolved{Digest: d.String(), Config: registry.OCIConfig(cf)}, nil
}

// baseImage fetches a registry or local base, once per build.
func (r *build) baseImage(ctx context.Context, base dockerfile.Base) (v1.Image, error) {
	key := string(base.Kind) + ":" + base.Ref + base.Path
	if img, ok := r.bases[key]; ok {
		return img, nil
	}
	var img v1.Image
	switch base.Kind {
	case dockerfile.BaseImage:
		fmt.Fprintf(r.req.Out, "pulling %s\n", base.Ref)
		p, err := registry.Pull(ctx, base.Ref, r.pull)
		if err != nil {
			return nil, err
		}
		img = p.Image
	case dockerfile.BaseLocal:
		if r.ctx == nil {
			return nil, fmt.Errorf("FROM ./%s: no build context", base.Path)
		}
		f, err := r.ctx.OpenLocal(base.Path)
		if err != nil {
			return nil, err
		}
		fi, err := f.Stat()
		f.Close()
		if err != nil {
			return nil, err
		}
		if fi.IsDir() {
			img, err = r.layoutBase(base.Path)
			if err != nil {
				return nil, err
			}
			break
		}
		img, err = tarball.Image(func() (io.ReadCloser, error) { return r.ctx.OpenLocal(base.Path) }, nil)
		if err == nil {
			_, err = img.ConfigFile()
		}
		if err != nil {
			return nil, fmt.Errorf("FROM ./%s: %w (want the output of `docker save IMAGE`, one image)", base.Path, err)
		}
	case dockerfile.BaseScratch:
		img = empty.Image
	default:
		return nil, fmt.Errorf("a %s base is not fetched", base.Kind)
	}
	r.bases[key] = img
	return img, nil
}

// entry is a cached step: the layers on top of the stage's base that make
// its result.
type entry struct {
	Layers []string `json:"layers"` // digests, in order
}

func (r *build) stepFile(key string) string {
	return filepath.Join(r.b.Dir, "steps", strings.TrimPrefix(key, "sha256:")+".json")
}

func (r *build) layerFile(digest string) string {
	return filepath.Join(r.b.Dir, "layers", strings.TrimPrefix(digest, "sha256:")+".tar")
}

// lookup finds a cached step whose layers are all still there.
func (r *build) lookup(key string) (entry, bool) {
	var e entry
	data, err := os.ReadFile(r.stepFile(key))
	if err != nil || json.Unmarshal(data, &e) != nil {
		return e, false
	}
	for _, l := range e.Layers {
		if _, err := os.Stat(r.layerFile(l)); err != nil {
			return e, false
		}
	}
	return e, true
}

func (r *build) store(key string, e entry) error {
	data, _ := json.Marshal(e)
	tmp := r.stepFile(key) + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, r.stepFile(key))
}

// withLayers is img with the cached layers on top.
func (r *build) withLayers(img v1.Image, digests []string) (v1.Image, error) {
	var ls []v1.Layer
	for _, d := range digests {
		l, err := tarball.LayerFromFile(r.layerFile(d))
		if err != nil {
			return nil, fmt.Errorf("cached layer %s: %w", d, err)
		}
		ls = append(ls, l)
	}
	if len(ls) == 0 {
		return img, nil
	}
	return mutate.AppendLayers(img, ls...)
}

// stage builds stage i: the longest run of its steps that is cached is
// taken from the cache, and a sandbox runs the rest.
func (r *build) stage(ctx context.Context, i int) (v1.Image, error) {
	st := &r.plan.Stages[i]
	var base v1.Image
	var err error
	if st.Base.Kind == dockerfile.BaseStage {
		base = r.images[st.Base.Stage]
	} else if base, err = r.baseImage(ctx, st.Base); err != nil {
		return nil, err
	}
	name := st.Name
	if name == "" {
		name = fmt.Sprint(i)
	}
	r.steps += len(st.Steps)
	resume, layers := -1, []string(nil)
	if !r.req.NoCache {
		for k := len(st.Steps) - 1; k >= 0; k-- {
			if e, ok := r.lookup(st.Steps[k].Key); ok {
				resume, layers = k, e.Layers
				break
			}
		}
	}
	for k := 0; k <= resume; k++ {
		r.cached++
		fmt.Fprintf(r.req.Out, "[%s %d/%d] CACHED Dockerfile:%d %s\n", name, k+1, len(st.Steps), st.Steps[k].Line, st.Steps[k].Original)
	}
	if resume == len(st.Steps)-1 {
		return r.withLayers(base, layers)
	}
	// The build sandbox boots at the first step that needs one: a change
	// to ENV, CMD or LABEL alone boots nothing.
	var m Machine
	defer func() {
		if m != nil {
			m.Close()
		}
	}()
	cur := slices.Clone(layers)
	bootLayers := layers
	for k := resume + 1; k < len(st.Steps); k++ {
		s := &st.Steps[k]
		fmt.Fprintf(r.req.Out, "[%s %d/%d] Dockerfile:%d %s\n", name, k+1, len(st.Steps), s.Line, s.Original)
		if m == nil && needsMachine(s.Kind) {
			img, err := r.withLayers(base, cur)
			if err != nil {
				return nil, err
			}
			if m, err = r.boot(ctx, img, name); err != nil {
				return nil, err
			}
			bootLayers = slices.Clone(cur)
		}
		changed, err := r.step(ctx, m, s)
		if err != nil {
			return nil, &dockerfile.LineError{Line: s.Line, Err: err}
		}
		if changed {
			d, err := r.capture(ctx, m)
			if err != nil {
				return nil, &dockerfile.LineError{Line: s.Line, Err: err}
			}
			cur = append(slices.Clone(bootLayers), d)
		}
		if err := r.store(s.Key, entry{Layers: cur}); err != nil {
			return nil, fmt.Errorf("cache step: %w", err)
		}
	}
	return r.withLayers(base, cur)
}

// boot writes img as a root image and boots a build sandbox from it.
func (r *build) boot(ctx context.Context, img v1.Image, stage string) (Machine, error) {
	dir, err := os.MkdirTemp(filepath.Join(r.b.Dir, "work"), "boot-")
	if err != nil {
		return nil, err
	}
	r.scratch = append(r.scratch, dir)
	tree := filepath.Join(dir, "tree")
	if err := os.Mkdir(tree, 0o755); err != nil {
		return nil, err
	}
	if err := rootfs.Unpack(ctx, img, tree, nil); err != nil {
		return nil, fmt.Errorf("flatten stage %s: %w", stage, err)
	}
	disk := filepath.Join(dir, "root.ext4")
	if err := rootfs.FromDir(ctx, tree, disk, rootfs.Options{}); err != nil {
		return nil, err
	}
	os.RemoveAll(tree)
	fmt.Fprintf(r.req.Out, "[%s] booting a build sandbox\n", stage)
	t0 := time.Now()
	m, err := r.b.Boot(ctx, disk)
	if err != nil {
		return nil, fmt.Errorf("boot a build sandbox for stage %s: %w", stage, err)
	}
	fmt.Fprintf(r.req.Out, "[%s] build sandbox up in %v\n", stage, time.Since(t0).Round(100*time.Millisecond))
	return m, nil
}

// capture stores the machine's layer by its digest.
func (r *build) capture(ctx context.Context, m Machine) (string, error) {
	f, err := os.CreateTemp(filepath.Join(r.b.Dir, "layers"), ".capture-")
	if err != nil {
		return "", err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	h := sha256.New()
	lw := &limitWriter{w: io.MultiWriter(f, h), n: maxLayerBytes}
	if err := m.Layer(ctx, lw); err != nil {
		return "", fmt.Errorf("capture the step's files: %w", err)
	}
	if err := f.Sync(); err != nil {
		return "", err
	}
	d := "sha256:" + hex.EncodeToString(h.Sum(nil))
	if err := os.Rename(f.Name(), r.layerFile(d)); err != nil {
		return "", err
	}
	return d, nil
}

type limitWriter struct {
	w io.Writer
	n int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.n {
		return 0, fmt.Errorf("the step's layer exceeds %d GiB", maxLayerBytes>>30)
	}
	l.n -= int64(len(p))
	return l.w.Write(p)
}

// tree is stage i's result flattened into a directory, made once.
func (r *build) tree(ctx context.Context, i int) (string, error) {
	if r.trees[i] != "" {
		return r.trees[i], nil
	}
	dir, err := os.MkdirTemp(filepath.Join(r.b.Dir, "work"), "tree-")
	if err != nil {
		return "", err
	}
	r.scratch = append(r.scratch, dir)
	if err := rootfs.Unpack(ctx, r.images[i], dir, nil); err != nil {
		return "", fmt.Errorf("flatten stage %d: %w", i, err)
	}
	r.trees[i] = dir
	return dir, nil
}

// maxLayoutBytes bounds an OCI layout copied out of the context.
const maxLayoutBytes = 16 << 30

// layoutBase reads an OCI layout directory in the context. The layout
// reader wants a path, and a path would follow the context's symlinks out
// of it, so the layout's directories and regular files are first copied
// through the context's confined root (symlinks are left behind: an OCI
// layout has none).
func (r *build) layoutBase(rel string) (v1.Image, error) {
	dir, err := os.MkdirTemp(filepath.Join(r.b.Dir, "work"), "layout-")
	if err != nil {
		return nil, err
	}
	r.scratch = append(r.scratch, dir)
	fsys := r.ctx.FS()
	var total int64
	err = fs.WalkDir(fsys, rel, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, filepath.FromSlash(strings.TrimPrefix(strings.TrimPrefix(p, rel), "/")))
		switch {
		case d.IsDir():
			return os.MkdirAll(dst, 0o700)
		case !d.Type().IsRegular():
			return nil
		}
		in, err := fsys.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		n, err := io.Copy(out, io.LimitReader(in, maxLayoutBytes-total+1))
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if total += n; err == nil && total > maxLayoutBytes {
			err = fmt.Errorf("larger than %d GiB", maxLayoutBytes>>30)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("FROM ./%s: copy the OCI layout: %w", rel, err)
	}
	img, err := rootfs.LoadImage(dir)
	if err != nil {
		return nil, fmt.Errorf("FROM ./%s: %w", rel, err)
	}
	return img, nil
}

// needsMachine says whether a step runs in, or writes into, the build
// sandbox; the others only change the image's config.
func needsMachine(k dockerfile.Kind) bool {
	switch k {
	case dockerfile.Run, dockerfile.Copy, dockerfile.Add, dockerfile.Workdir:
		return true
	}
	return false
}
