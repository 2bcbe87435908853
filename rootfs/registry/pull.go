// Package registry pulls container images from OCI registries into a local
// layer cache keyed by digest, for the rootfs import to flatten.
package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Options shape a pull.
type Options struct {
	// CacheDir holds the blobs (layers and configs) by digest, as
	// CacheDir/sha256/<hex>; it is created if missing. Required by Pull.
	CacheDir string
	// Platform is the image picked from an index; nil: linux/amd64.
	Platform *v1.Platform
	// Username and Password log in with basic auth (which the registry may
	// trade for a token). Token is a registry bearer token. Neither: the
	// Keychain's credentials for the registry, anonymous if it has none.
	Username, Password string
	Token              string
	// Keychain finds credentials by registry; nil: authn.DefaultKeychain
	// (~/.docker/config.json and its credential helpers).
	Keychain authn.Keychain
	// Insecure allows plain HTTP to a registry that is not on a loopback
	// or private address (those speak HTTP already).
	Insecure bool
	// Transport carries the requests; nil: remote.DefaultTransport.
	Transport http.RoundTripper
	Limits    Limits
	// Progress receives one line per step; nil: quiet.
	Progress io.Writer
}

// Limits bound what a registry can make a pull take. Zero fields take the
// defaults.
type Limits struct {
	ManifestBytes     int64 // one manifest or index; default 4 MiB
	ConfigBytes       int64 // the image config; default 4 MiB
	Layers            int   // default 128
	UncompressedBytes int64 // all layers unpacked; default 16 GiB
}

// DefaultLimits are what a zero Limits field means.
var DefaultLimits = Limits{
	ManifestBytes:     4 << 20,
	ConfigBytes:       4 << 20,
	Layers:            128,
	UncompressedBytes: 16 << 30,
}

func (l Limits) withDefaults() Limits {
	if l.ManifestBytes <= 0 {
		l.ManifestBytes = DefaultLimits.ManifestBytes
	}
	if l.ConfigBytes <= 0 {
		l.ConfigBytes = DefaultLimits.ConfigBytes
	}
	if l.Layers <= 0 {
		l.Layers = DefaultLimits.Layers
	}
	if l.UncompressedBytes <= 0 {
		l.UncompressedBytes = DefaultLimits.UncompressedBytes
	}
	return l
}

var (
	// ErrNoPlatform means the reference has no image for the platform
	// asked for; the error lists the ones it has.
	ErrNoPlatform = errors.New("no image for the platform")
	// ErrTooLarge means the registry served more than Limits allow.
	ErrTooLarge = errors.New("image exceeds a pull limit")
)

// Image is a pulled (or resolved) image.
type Image struct {
	// Ref is the reference as parsed, with defaults filled in
	// (python:3.12 is index.docker.io/library/python:3.12).
	Ref name.Reference
	// Digest is the platform image's manifest digest (not the index's).
	Digest v1.Hash
	// Config is the image's config file; Config.Config holds its Env,
	// WorkingDir, User, Cmd, Entrypoint and ExposedPorts.
	Config *v1.ConfigFile
	// Image reads layers and config from the cache, each verified against
	// its digest when pulled; nil after Resolve.
	Image v1.Image
	// Size is the layers' total unpacked size (0 after Resolve).
	Size int64
}

// Pull fetches ref's image for o.Platform, with every blob not already in
// o.CacheDir (or there but corrupt) downloaded and checked against its
// digest, and each layer's unpacked content against the config's diff ID.
func Pull(ctx context.Context, ref string, o Options) (*Image, error) {
	if o.CacheDir == "" {
		return nil, errors.New("pull: no cache directory given")
	}
	p, err := newPuller(ctx, ref, o)
	if err != nil {
		return nil, err
	}
	return p.pull(ctx)
}

// Resolve fetches only ref's manifest and config: its digest and config
// for o.Platform, without downloading layers.
func Resolve(ctx context.Context, ref string, o Options) (*Image, error) {
	p, err := newPuller(ctx, ref, o)
	if err != nil {
		return nil, err
	}
	return p.resolve()
}

type puller struct {
	ref      name.Reference
	o        Options
	limits   Limits
	platform v1.Platform
	remote   []remote.Option
	indexes  int // nested indexes fetched so far
}

// maxIndexes bounds the nested indexes one pull fetches: an index may
// list many, each listing more.
const maxIndexes = 8

func newPuller(ctx context.Context, ref string, o Options) (*puller, error) {
	var opts []name.Option
	if o.Insecure {
		opts = append(opts, name.Insecure)
	}
	r, err := name.ParseReference(ref, opts...)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	p := &puller{ref: r, o: o, limits: o.Limits.withDefaults(), platform: v1.Platform{OS: "linux", Architecture: "amd64"}}
	if o.Platform != nil {
		p.platform = *o.Platform
	}
	tr := o.Transport
	if tr == nil {
		tr = remote.DefaultTransport
	}
	p.remote = []remote.Option{
		remote.WithContext(ctx),
		remote.WithTransport(&manifestLimit{next: tr, max: p.limits.ManifestBytes}),
		remote.WithUserAgent("sietch"),
	}
	switch {
	case o.Username != "" || o.Password != "":
		p.remote = append(p.remote, remote.WithAuth(&authn.Basic{Username: o.Username, Password: o.Password}))
	case o.Token != "":
		p.remote = append(p.remote, remote.WithAuth(&authn.Bearer{Token: o.Token}))
	default:
		kc := o.Keychain
		if kc == nil {
			kc = authn.DefaultKeychain
		}
		p.remote = append(p.remote, remote.WithAuthFromKeychain(kc))
	}
	return p, nil
}

// resolve finds the platform image and checks its manifest and config
// against the limits; nothing is cached.
func (p *puller) resolve() (*Image, error) {
	img, m, d, err := p.checkedImage()
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("pull %s: config: %w", p.ref, err)
	}
	if err := p.checkConfig(cf, m); err != nil {
		return nil, err
	}
	return &Image{Ref: p.ref, Digest: d, Config: cf}, nil
}

// checkedImage is the platform image, its manifest within the limits,
// and its digest.
func (p *puller) checkedImage() (v1.Image, *v1.Manifest, v1.Hash, error) {
	img, err := p.platformImage()
	if err != nil {
		return nil, nil, v1.Hash{}, err
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, nil, v1.Hash{}, fmt.Errorf("pull %s: manifest: %w", p.ref, err)
	}
	if err := p.checkManifest(m); err != nil {
		return nil, nil, v1.Hash{}, err
	}
	d, err := img.Digest()
	if err != nil {
		return nil, nil, v1.Hash{}, fmt.Errorf("pull %s: %w", p.ref, err)
	}
	return img, m, d, nil
}

// platformImage fetches the manifest ref names and, for an index, the
// platform's entry in it.
func (p *puller) platformImage() (v1.Image, error) {
	desc, err := remote.Get(p.ref, p.remote...)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", p.ref, err)
	}
	if int64(len(desc.Manifest)) > p.limits.ManifestBytes {
		return nil, p.tooLarge("manifest", int64(len(desc.Manifest)), p.limits.ManifestBytes)
	}
	switch {
	case desc.MediaType.IsIndex():
		idx, err := desc.ImageIndex()
		if err != nil {
			return nil, fmt.Errorf("pull %s: index: %w", p.ref, err)
		}
		return p.pick(idx, 0)
	case desc.MediaType.IsImage():
		return desc.Image()
	default:
		return nil, fmt.Errorf("pull %s: media type %q is not an image or index", p.ref, desc.MediaType)
	}
}

// pick descends an index (and nested ones) for the platform's image.
func (p *puller) pick(idx v1.ImageIndex, depth int) (v1.Image, error) {
	if depth > 4 {
		return nil, fmt.Errorf("pull %s: image indexes nested too deep", p.ref)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("pull %s: index: %w", p.ref, err)
	}
	var have []string
	for _, d := range m.Manifests {
		switch {
		case d.MediaType.IsIndex():
			if p.indexes++; p.indexes > maxIndexes {
				return nil, fmt.Errorf("pull %s: %w: more than %d nested indexes", p.ref, ErrTooLarge, maxIndexes)
			}
			child, err := idx.ImageIndex(d.Digest)
			if err != nil {
				return nil, fmt.Errorf("pull %s: index %s: %w", p.ref, d.Digest, err)
			}
			img, err := p.pick(child, depth+1)
			if err == nil || !errors.Is(err, ErrNoPlatform) {
				return img, err
			}
		case d.MediaType.IsImage() && d.Platform != nil:
			if d.Platform.Satisfies(p.platform) {
				return idx.Image(d.Digest)
			}
			have = append(have, d.Platform.String())
		}
	}
	return nil, fmt.Errorf("pull %s: %w %s (the index has %s)", p.ref, ErrNoPlatform, p.platform.String(), orNone(have))
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none with a platform"
	}
	return strings.Join(s, ", ")
}

func (p *puller) checkManifest(m *v1.Manifest) error {
	if n := len(m.Layers); n > p.limits.Layers {
		return fmt.Errorf("pull %s: %w: %d layers, the limit is %d", p.ref, ErrTooLarge, n, p.limits.Layers)
	}
	if m.Config.Size > p.limits.ConfigBytes {
		return p.tooLarge("config", m.Config.Size, p.limits.ConfigBytes)
	}
	// Compressed layers are (nearly) never larger than their content: a
	// manifest declaring more than the unpacked limit is refused before
	// any download.
	var sum int64
	for _, l := range m.Layers {
		if l.Size < 0 {
			return fmt.Errorf("pull %s: layer %s has a negative size", p.ref, l.Digest)
		}
		sum += l.Size
		if sum > p.limits.UncompressedBytes {
			return p.tooLarge("layers (compressed)", sum, p.limits.UncompressedBytes)
		}
	}
	return nil
}

func (p *puller) checkConfig(cf *v1.ConfigFile, m *v1.Manifest) error {
	if cf.OS != "" && cf.OS != p.platform.OS || cf.Architecture != "" && cf.Architecture != p.platform.Architecture {
		return fmt.Errorf("pull %s: %w %s (the image is %s/%s)", p.ref, ErrNoPlatform, p.platform.String(), cf.OS, cf.Architecture)
	}
	if len(cf.RootFS.DiffIDs) != len(m.Layers) {
		return fmt.Errorf("pull %s: config lists %d layers, the manifest %d", p.ref, len(cf.RootFS.DiffIDs), len(m.Layers))
	}
	return nil
}

func (p *puller) tooLarge(what string, n, max int64) error {
	return fmt.Errorf("pull %s: %w: %s of %d bytes, the limit is %d", p.ref, ErrTooLarge, what, n, max)
}

// pull resolves the image, then brings each blob into the cache and
// returns an image read from there.
func (p *puller) pull(ctx context.Context) (*Image, error) {
	img, m, digest, err := p.checkedImage()
	if err != nil {
		return nil, err
	}
	raw, err := img.RawManifest()
	if err != nil {
		return nil, fmt.Errorf("pull %s: manifest: %w", p.ref, err)
	}
	c := &cache{dir: p.o.CacheDir, progress: p.o.Progress}
	cfgPath, err := c.ensure(ctx, m.Config, func() (io.ReadCloser, error) {
		b, err := img.RawConfigFile()
		if err != nil {
			return nil, err
		}
		return io.NopCloser(strings.NewReader(string(b))), nil
	})
	if err != nil {
		return nil, fmt.Errorf("pull %s: config: %w", p.ref, err)
	}
	cached := &cachedImage{manifest: raw, mediaType: m.MediaType, configPath: cfgPath, layers: map[v1.Hash]cachedLayer{}}
	if cached.mediaType == "" {
		cached.mediaType = types.OCIManifestSchema1
	}
	cf, err := cached.configFile()
	if err != nil {
		return nil, fmt.Errorf("pull %s: config: %w", p.ref, err)
	}
	if err := p.checkConfig(cf, m); err != nil {
		return nil, err
	}
	budget := p.limits.UncompressedBytes
	for i, l := range m.Layers {
		progressf(p.o.Progress, "registry: %s layer %d/%d %s (%d bytes)\n", p.ref, i+1, len(m.Layers), l.Digest, l.Size)
		path, err := c.ensure(ctx, l, func() (io.ReadCloser, error) {
			rl, err := img.LayerByDigest(l.Digest)
			if err != nil {
				return nil, err
			}
			return rl.Compressed()
		})
		if err != nil {
			return nil, fmt.Errorf("pull %s: layer %d: %w", p.ref, i+1, err)
		}
		cl := cachedLayer{desc: l, path: path}
		cached.layers[l.Digest] = cl
		n, err := checkContent(cl, cf.RootFS.DiffIDs[i], budget)
		if errors.Is(err, ErrTooLarge) {
			return nil, fmt.Errorf("pull %s: %w: layers unpack to more than %d bytes", p.ref, ErrTooLarge, p.limits.UncompressedBytes)
		}
		if err != nil {
			return nil, fmt.Errorf("pull %s: layer %d %s: %w", p.ref, i+1, l.Digest, err)
		}
		budget -= n
	}
	out, err := partial.CompressedToImage(cached)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", p.ref, err)
	}
	return &Image{Ref: p.ref, Digest: digest, Config: cf, Image: out, Size: p.limits.UncompressedBytes - budget}, nil
}

func progressf(w io.Writer, format string, args ...any) {
	if w != nil {
		fmt.Fprintf(w, format, args...)
	}
}
