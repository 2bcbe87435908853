package sandbox

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/sietch-vm/sietch/imagebuild"
	"github.com/sietch-vm/sietch/internal/tarx"
	"github.com/sietch-vm/sietch/wire/agentproto"
)

// Where built images and the build cache live in the state directory.
const (
	dirBuiltImages = "images" // NAME/rootfs.ext4 and NAME/image.json
	dirBuildCache  = "build"  // imagebuild's layers, steps and scratch
	fileBuiltRoot  = "rootfs.ext4"
	fileBuiltImage = "image.json"
)

// Build sandbox defaults: RUN steps install packages, so they get more
// memory than a sandbox and a disk-backed writable layer.
const (
	buildMemoryMiB = 1024
	buildDiskMiB   = 8192
)

// ImageBuildSpec is a Dockerfile build.
type ImageBuildSpec struct {
	Name       string // the image's name
	Dockerfile []byte
	// DockerfilePath is the Dockerfile's path inside Context (for its own
	// NAME.dockerignore); "": Dockerfile.
	DockerfilePath string
	// Context is the build context directory on this host ("": none).
	Context   string
	BuildArgs map[string]string
	Target    string
	NoCache   bool
	Limits    Limits // the build sandbox's; zero: 1 GiB, 8 GiB of disk
}

// builtImage is a built image as persisted beside its root disk.
type builtImage struct {
	Image
	Base string `json:"base"` // the image whose kernel and initramfs it boots with
}

// spec looks an image up.
func (m *Manager) spec(name string) (ImageSpec, bool) {
	m.imgMu.RLock()
	defer m.imgMu.RUnlock()
	s, ok := m.specs[name]
	return s, ok
}

// envMap turns K=V entries into a map; later entries win.
func envMap(env []string) map[string]string {
	out := map[string]string{}
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k != "" {
			out[k] = v
		}
	}
	return out
}

// buildBase is the image whose kernel and initramfs built images boot
// with: the one named default, else the only Linux image.
func (m *Manager) buildBase() (ImageSpec, error) {
	name, err := m.defaultTemplateImage()
	if err != nil {
		return ImageSpec{}, fmt.Errorf("an image build boots with another image's kernel and initramfs: %w", err)
	}
	spec, _ := m.spec(name)
	if spec.Kind != KindLinux || spec.Initrd == "" {
		return ImageSpec{}, fmt.Errorf("%w: image %s has no guest agent to run build steps with; give sietchd a Linux image named default", ErrInvalid, name)
	}
	return spec, nil
}

// loadBuiltImages registers the images earlier builds left in the state
// directory. A configured image of the same name wins.
func (m *Manager) loadBuiltImages() {
	// What builds cut short by a restart left: their scratch directories.
	os.RemoveAll(filepath.Join(m.cfg.StateDir, dirBuildCache, "work"))
	dir := filepath.Join(m.cfg.StateDir, dirBuiltImages)
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			os.RemoveAll(filepath.Join(dir, e.Name())) // an unfinished build's image
			continue
		}
		if !e.IsDir() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name(), fileBuiltImage))
		var bi builtImage
		if err == nil {
			err = json.Unmarshal(data, &bi)
		}
		if err != nil {
			m.log.Warn("skipping a built image that does not load", "image", e.Name(), "err", err)
			continue
		}
		if _, dup := m.spec(bi.Name); dup {
			m.log.Warn("a configured image has the name of a built one; the configured one is used", "image", bi.Name)
			continue
		}
		if err := m.register(bi); err != nil {
			m.log.Warn("skipping a built image", "image", bi.Name, "err", err)
		}
	}
}

// register makes a built image available to creates.
func (m *Manager) register(bi builtImage) error {
	base, ok := m.spec(bi.Base)
	if !ok {
		return fmt.Errorf("its base image %s (kernel and initramfs) is not configured", bi.Base)
	}
	spec := base
	spec.Name, spec.MemMiB = bi.Name, 0
	spec.RootFS = filepath.Join(m.cfg.StateDir, dirBuiltImages, bi.Name, fileBuiltRoot)
	spec.Config = bi.Config
	if err := checkImage(spec); err != nil {
		return err
	}
	m.imgMu.Lock()
	m.specs[bi.Name] = spec
	m.images[bi.Name] = bi.Image
	m.imgMu.Unlock()
	return nil
}

// BuildImage builds an image from a Dockerfile, its log (a line per step
// and the RUN steps' output) to out, and makes it available to creates
// under req.Name, replacing a built image of that name. RUN steps run in
// a build sandbox: a sandbox like any other (jailed vmm, cgroup, network
// policy from sietchd's default), listed while it runs, labelled
// sietch.build=NAME.
func (m *Manager) BuildImage(ctx context.Context, req ImageBuildSpec, out io.Writer) (Image, error) {
	if err := checkName("image", req.Name); err != nil {
		return Image{}, err
	}
	m.imgMu.Lock()
	if m.building == nil {
		m.building = map[string]bool{}
	}
	if m.building[req.Name] {
		m.imgMu.Unlock()
		return Image{}, fmt.Errorf("%w: image %s is being built already; wait for that build", ErrConflict, req.Name)
	}
	m.building[req.Name] = true
	m.imgMu.Unlock()
	defer func() {
		m.imgMu.Lock()
		delete(m.building, req.Name)
		m.imgMu.Unlock()
	}()
	if s, ok := m.spec(req.Name); ok && s.Config == nil {
		return Image{}, fmt.Errorf("%w: image %s is configured by sietchd (--image or images.json); build under another name", ErrConflict, req.Name)
	}
	base, err := m.buildBase()
	if err != nil {
		return Image{}, err
	}
	dir := filepath.Join(m.cfg.StateDir, dirBuiltImages)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Image{}, err
	}
	work, err := os.MkdirTemp(dir, "."+req.Name+"-")
	if err != nil {
		return Image{}, err
	}
	defer os.RemoveAll(work)
	l := req.Limits
	if l.MemoryMiB == 0 {
		l.MemoryMiB = buildMemoryMiB
	}
	if l.DiskMiB == 0 {
		l.DiskMiB = buildDiskMiB
	}
	// RUN steps fetch packages, as in docker build: the build sandbox
	// gets the internet (sietchd's NAT and DNS) wherever sietchd has
	// sandbox networking.
	var network *NetworkSpec
	if m.cfg.Network != nil {
		network = &NetworkSpec{Enabled: true}
	}
	b := &imagebuild.Builder{
		Dir: filepath.Join(m.cfg.StateDir, dirBuildCache),
		Log: m.log,
		Boot: func(ctx context.Context, disk string) (imagebuild.Machine, error) {
			if network == nil {
				fmt.Fprintf(out, "note: sandbox networking is off on this sietchd (%s): RUN steps have no network\n", cmp.Or(m.cfg.NetworkOff, "started without it"))
			}
			spec := base
			spec.Name, spec.RootFS, spec.Config = "build:"+req.Name, disk, nil
			sb, err := m.bootSpec(ctx, spec, CreateSpec{Limits: l, Labels: map[string]string{"sietch.build": req.Name}, Network: network})
			if err != nil {
				return nil, err
			}
			return &buildMachine{m: m, sb: sb, ac: m.agentFor(sb)}, nil
		},
	}
	m.log.Info("image build started", "image", req.Name)
	res, err := b.Build(ctx, imagebuild.Request{
		Dockerfile: req.Dockerfile, Context: req.Context, DockerfilePath: req.DockerfilePath,
		BuildArgs: req.BuildArgs, Target: req.Target, NoCache: req.NoCache,
		Output: filepath.Join(work, fileBuiltRoot), Out: out,
	})
	if err != nil {
		m.log.Info("image build failed", "image", req.Name, "err", err)
		if errors.Is(err, imagebuild.ErrInvalid) {
			// The message already says what was wrong, with its line.
			return Image{}, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		return Image{}, err
	}
	fi, err := os.Stat(filepath.Join(work, fileBuiltRoot))
	if err != nil {
		return Image{}, err
	}
	bi := builtImage{Base: base.Name, Image: Image{
		Name: req.Name, Kind: KindLinux, SizeBytes: fi.Size(), CreatedAt: time.Now().UTC(),
		Source: "dockerfile", Config: imageConfig(res.Config),
	}}
	data, _ := json.MarshalIndent(bi, "", "  ")
	if err := os.WriteFile(filepath.Join(work, fileBuiltImage), data, 0o600); err != nil {
		return Image{}, err
	}
	// Swap the new directory in. A sandbox running from the old root disk
	// keeps it open; templates of the image see new files and rebuild.
	final := filepath.Join(dir, req.Name)
	old := work + ".old"
	if err := os.Rename(final, old); err != nil && !errors.Is(err, os.ErrNotExist) {
		return Image{}, err
	}
	if err := os.Rename(work, final); err != nil {
		return Image{}, err
	}
	os.RemoveAll(old)
	if err := m.register(bi); err != nil {
		return Image{}, err
	}
	if err := m.db.put(bucketImages, bi.Name, bi.Image); err != nil {
		return Image{}, err
	}
	m.log.Info("image built", "image", req.Name, "steps", res.Steps, "cached", res.Cached, "bytes", fi.Size(), "took_s", res.Took.Seconds())
	return bi.Image, nil
}

// imageConfig keeps what sandboxes use of an OCI config.
func imageConfig(c ocispec.ImageConfig) *ImageConfig {
	ic := &ImageConfig{Env: c.Env, Workdir: c.WorkingDir, User: c.User, Entrypoint: c.Entrypoint, Cmd: c.Cmd, Labels: c.Labels}
	ic.ExposedPorts = slices.Sorted(maps.Keys(c.ExposedPorts))
	return ic
}

// buildMachine is a build sandbox, seen by imagebuild.
type buildMachine struct {
	m  *Manager
	sb *sandbox
	ac *agentproto.Client
}

func (b *buildMachine) Run(ctx context.Context, s imagebuild.RunSpec, out io.Writer) (int, error) {
	if len(s.Argv) == 0 {
		return 0, errors.New("an empty command")
	}
	env := envMap(s.Env)
	res, err := b.ac.Exec(ctx, agentproto.ExecRequest{Cmd: s.Argv[0], Args: s.Argv[1:], Env: env, Cwd: s.Dir, User: s.User}, nil, out, out)
	if err != nil {
		return 0, err
	}
	if res.Signal != "" {
		return 128 + 9, fmt.Errorf("killed by %s", res.Signal)
	}
	return res.ExitCode, nil
}

func (b *buildMachine) Extract(ctx context.Context, r io.Reader) error {
	_, err := b.ac.UploadTarOwned(ctx, "/", r)
	return err
}

func (b *buildMachine) Mkdir(ctx context.Context, path string) error {
	return b.ac.Mkdir(ctx, path, 0o755, true)
}

func (b *buildMachine) ReadFile(ctx context.Context, path string) ([]byte, error) {
	var buf bytes.Buffer
	_, err := b.ac.Download(ctx, path, &limitedWriter{w: &buf, n: 4 << 20})
	return buf.Bytes(), err
}

func (b *buildMachine) Layer(ctx context.Context, w io.Writer) error { return b.ac.Layer(ctx, w) }

func (b *buildMachine) Close() error {
	return b.m.Delete(context.Background(), b.sb.id)
}

// limitedWriter fails past n bytes.
type limitedWriter struct {
	w io.Writer
	n int64
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.n {
		return 0, fmt.Errorf("file larger than expected")
	}
	l.n -= int64(len(p))
	return l.w.Write(p)
}

// maxContextBytes bounds a build context sent as a tar archive.
const maxContextBytes = 8 << 30

// BuildImageTar is BuildImage with the build context sent as a tar archive
// (as the API receives it), req.DockerfilePath naming the Dockerfile in it.
// The archive is extracted under the state directory with the rules every
// upload meets (package tarx: nothing lands outside, no devices, no
// setuid), at most 8 GiB.
func (m *Manager) BuildImageTar(ctx context.Context, req ImageBuildSpec, archive io.Reader, out io.Writer) (Image, error) {
	if err := checkName("image", req.Name); err != nil {
		return Image{}, err
	}
	work := filepath.Join(m.cfg.StateDir, dirBuildCache, "work")
	if err := os.MkdirAll(work, 0o700); err != nil {
		return Image{}, err
	}
	dir, err := os.MkdirTemp(work, "context-")
	if err != nil {
		return Image{}, err
	}
	defer os.RemoveAll(dir)
	root, err := os.OpenRoot(dir)
	if err != nil {
		return Image{}, err
	}
	lr := &io.LimitedReader{R: archive, N: maxContextBytes + 1}
	_, err = tarx.Extract(lr, root, tarx.Limits{})
	root.Close()
	if lr.N <= 0 {
		return Image{}, fmt.Errorf("%w: the build context is larger than %d GiB; list what the build does not need in .dockerignore", ErrInvalid, maxContextBytes>>30)
	}
	if err != nil {
		return Image{}, fmt.Errorf("%w: build context: %v", ErrInvalid, err)
	}
	if req.DockerfilePath == "" {
		req.DockerfilePath = "Dockerfile"
	}
	rel, err := tarx.CleanName(req.DockerfilePath, 4096)
	if err != nil || rel == "" {
		return Image{}, fmt.Errorf("%w: dockerfile %q: a path inside the build context", ErrInvalid, req.DockerfilePath)
	}
	droot, err := os.OpenRoot(dir)
	if err != nil {
		return Image{}, err
	}
	// Through the root: a symlink the client sent cannot lead out (the
	// front end reads the ignore file beside it the same way).
	f, err := droot.Open(rel)
	droot.Close()
	if err != nil {
		return Image{}, fmt.Errorf("%w: the build context has no Dockerfile at %s: %v", ErrInvalid, rel, err)
	}
	req.Dockerfile, err = io.ReadAll(io.LimitReader(f, 1<<20+1))
	f.Close()
	if err != nil {
		return Image{}, err
	}
	req.Context, req.DockerfilePath = dir, filepath.Join(dir, rel)
	return m.BuildImage(ctx, req, out)
}
