package registry

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/sietch-vm/sietch/rootfs"
	"github.com/sietch-vm/sietch/rootfs/dockerfile"
)

// testRegistry is an in-process registry that counts the blob downloads
// it serves and, with auth set, wants that Authorization header.
type testRegistry struct {
	host string
	mu   sync.Mutex
	gets map[string]int // blob digest -> GETs
	auth string         // "Basic …" or "Bearer …"; "": anonymous
}

func newRegistry(t *testing.T) *testRegistry {
	t.Helper()
	r := &testRegistry{gets: map[string]int{}}
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		auth := r.auth
		if req.Method == http.MethodGet && strings.Contains(req.URL.Path, "/blobs/sha256:") {
			r.gets[req.URL.Path[strings.LastIndex(req.URL.Path, "/")+1:]]++
		}
		r.mu.Unlock()
		if auth != "" && req.Header.Get("Authorization") != auth {
			scheme, _, _ := strings.Cut(auth, " ")
			w.Header().Set("WWW-Authenticate", scheme+` realm="http://`+req.Host+`/token",service="test"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	r.host = strings.TrimPrefix(srv.URL, "http://")
	return r
}

func (r *testRegistry) setAuth(header string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.auth = header
}

func (r *testRegistry) blobGets() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.gets {
		n += c
	}
	return n
}

func (r *testRegistry) ref(t *testing.T, repo string) name.Reference {
	t.Helper()
	ref, err := name.ParseReference(r.host + "/" + repo)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

type entry struct {
	name, body string
	typ        byte
}

func layer(t *testing.T, entries ...entry) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: 0o644, Size: int64(len(e.body)), ModTime: time.Unix(1700000000, 0)}
		if e.typ == tar.TypeDir {
			h.Mode = 0o755
		}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, e.body)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// image is two layers, the second deleting a file of the first, for arch.
func image(t *testing.T, arch string) v1.Image {
	t.Helper()
	base := layer(t,
		entry{name: "etc/", typ: tar.TypeDir},
		entry{name: "etc/gone.conf", body: "delete me\n"},
		entry{name: "etc/arch", body: arch + "\n"},
		entry{name: "app/", typ: tar.TypeDir},
	)
	top := layer(t,
		entry{name: "etc/.wh.gone.conf"},
		entry{name: "app/main.py", body: "print('hi')\n"},
	)
	img, err := mutate.AppendLayers(empty.Image, base, top)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	cf.Config = v1.Config{
		Env:          []string{"PATH=/usr/bin:/bin", "APP=demo"},
		WorkingDir:   "/app",
		User:         "1000:1000",
		Cmd:          []string{"python3", "main.py"},
		Entrypoint:   []string{"/usr/bin/env"},
		ExposedPorts: map[string]struct{}{"8080/tcp": {}},
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func push(t *testing.T, ref name.Reference, img v1.Image, o ...remote.Option) {
	t.Helper()
	if err := remote.Write(ref, img, o...); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}

// pushIndex pushes an index of an image per arch and returns the images.
func pushIndex(t *testing.T, ref name.Reference, arches ...string) map[string]v1.Image {
	t.Helper()
	imgs := map[string]v1.Image{}
	idx := v1.ImageIndex(empty.Index)
	for _, arch := range arches {
		img := image(t, arch)
		imgs[arch] = img
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}},
		})
	}
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatalf("push index %s: %v", ref, err)
	}
	return imgs
}

func digest(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestPullIndex(t *testing.T) {
	r := newRegistry(t)
	ref := r.ref(t, "team/python:3.12")
	imgs := pushIndex(t, ref, "arm64", "amd64")
	cache := t.TempDir()
	o := Options{CacheDir: cache, Keychain: authn.NewMultiKeychain()}
	ctx := context.Background()

	before := r.blobGets()
	got, err := Pull(ctx, ref.String(), o)
	if err != nil {
		t.Fatalf("Pull: %v", err)
	}
	if want := digest(t, imgs["amd64"]); got.Digest != want {
		t.Errorf("digest %s, want the amd64 image's %s", got.Digest, want)
	}
	c := got.Config.Config
	if got.Config.Architecture != "amd64" || c.WorkingDir != "/app" || c.User != "1000:1000" ||
		!slices.Equal(c.Env, []string{"PATH=/usr/bin:/bin", "APP=demo"}) || !slices.Equal(c.Cmd, []string{"python3", "main.py"}) ||
		!slices.Equal(c.Entrypoint, []string{"/usr/bin/env"}) || len(c.ExposedPorts) != 1 {
		t.Errorf("config %+v", got.Config)
	}
	if got.Size <= 0 {
		t.Errorf("size %d", got.Size)
	}
	// Two layers and a config, each fetched once and kept by digest.
	if n := r.blobGets() - before; n != 3 {
		t.Errorf("first pull fetched %d blobs, want 3", n)
	}
	m, err := got.Image.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range m.Layers {
		if _, err := os.Stat(filepath.Join(cache, "sha256", l.Digest.Hex)); err != nil {
			t.Errorf("layer not cached: %v", err)
		}
	}

	root := t.TempDir()
	if err := rootfs.Unpack(ctx, got.Image, root, nil); err != nil {
		t.Fatalf("Unpack: %v", err)
	}
	if s := readFile(t, filepath.Join(root, "etc/arch")); s != "amd64\n" {
		t.Errorf("etc/arch = %q: the wrong platform was pulled", s)
	}
	if s := readFile(t, filepath.Join(root, "app/main.py")); s != "print('hi')\n" {
		t.Errorf("app/main.py = %q", s)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/gone.conf")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("whited-out etc/gone.conf: %v", err)
	}

	// A second pull asks for the manifest only.
	before = r.blobGets()
	again, err := Pull(ctx, ref.String(), o)
	if err != nil {
		t.Fatalf("second Pull: %v", err)
	}
	if n := r.blobGets() - before; n != 0 {
		t.Errorf("second pull fetched %d blobs, want 0 (all cached)", n)
	}
	if again.Digest != got.Digest {
		t.Errorf("second pull digest %s, first %s", again.Digest, got.Digest)
	}

	// A damaged cached layer is fetched again, not used.
	victim := filepath.Join(cache, "sha256", m.Layers[1].Digest.Hex)
	b := []byte(readFile(t, victim))
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(victim, b, 0o644); err != nil {
		t.Fatal(err)
	}
	var progress bytes.Buffer
	o.Progress = &progress
	before = r.blobGets()
	if _, err := Pull(ctx, ref.String(), o); err != nil {
		t.Fatalf("pull over a damaged cache: %v", err)
	}
	if n := r.blobGets() - before; n != 1 {
		t.Errorf("pull over a damaged layer fetched %d blobs, want 1", n)
	}
	if !strings.Contains(progress.String(), "damaged") {
		t.Errorf("progress does not say the cached blob was damaged:\n%s", progress.String())
	}
	if err := verifyFile(victim, m.Layers[1]); err != nil {
		t.Errorf("cached layer after re-fetch: %v", err)
	}

	// Resolve (for the Dockerfile planner) reads manifest and config only.
	before = r.blobGets()
	res, err := Resolver(ctx, Options{Keychain: authn.NewMultiKeychain()})(dockerfile.Base{Kind: dockerfile.BaseImage, Ref: ref.String()})
	if err != nil {
		t.Fatalf("Resolver: %v", err)
	}
	if res.Digest != got.Digest.String() || res.Config.WorkingDir != "/app" || res.Config.User != "1000:1000" || len(res.Config.ExposedPorts) != 1 {
		t.Errorf("resolved %+v", res)
	}
	if n := r.blobGets() - before; n != 1 {
		t.Errorf("resolve fetched %d blobs, want 1 (the config)", n)
	}
}

func TestPullByDigestAndAuth(t *testing.T) {
	r := newRegistry(t)
	ref := r.ref(t, "team/img:v1")
	img := image(t, "amd64")
	push(t, ref, img)
	r.setAuth("Basic " + base64.StdEncoding.EncodeToString([]byte("alice:secret")))
	d := digest(t, img)
	byDigest := r.host + "/team/img@" + d.String()
	ctx := context.Background()

	_, err := Pull(ctx, byDigest, Options{CacheDir: t.TempDir(), Keychain: authn.NewMultiKeychain()})
	if err == nil || !strings.Contains(err.Error(), "401") && !strings.Contains(strings.ToLower(err.Error()), "unauthorized") {
		t.Fatalf("anonymous pull from a registry wanting a login: %v", err)
	}
	got, err := Pull(ctx, byDigest, Options{CacheDir: t.TempDir(), Username: "alice", Password: "secret"})
	if err != nil {
		t.Fatalf("Pull with a login: %v", err)
	}
	if got.Digest != d {
		t.Errorf("digest %s, want %s", got.Digest, d)
	}
	// The platform check applies to a plain manifest too.
	_, err = Pull(ctx, byDigest, Options{CacheDir: t.TempDir(), Username: "alice", Password: "secret", Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}})
	if !errors.Is(err, ErrNoPlatform) {
		t.Errorf("pull of an amd64 image for arm64: %v", err)
	}
	// A registry token goes as the bearer token itself.
	r.setAuth("Bearer tok3n")
	if _, err := Pull(ctx, byDigest, Options{CacheDir: t.TempDir(), Token: "tok3n"}); err != nil {
		t.Errorf("Pull with a registry token: %v", err)
	}
	if _, err := Pull(ctx, byDigest, Options{CacheDir: t.TempDir(), Token: "wrong"}); err == nil {
		t.Errorf("Pull with a wrong registry token succeeded")
	}
}

func TestPullRefused(t *testing.T) {
	r := newRegistry(t)
	ctx := context.Background()
	arm := r.ref(t, "team/arm:1")
	pushIndex(t, arm, "arm64")
	ok := r.ref(t, "team/ok:1")
	push(t, ok, image(t, "amd64"))
	anon := authn.NewMultiKeychain()

	tests := []struct {
		name   string
		ref    name.Reference
		limits Limits
		is     error
		says   string
	}{
		{"arm64 only", arm, Limits{}, ErrNoPlatform, "no image for the platform linux/amd64 (the index has linux/arm64)"},
		{"layer count", ok, Limits{Layers: 1}, ErrTooLarge, "2 layers, the limit is 1"},
		{"unpacked size", ok, Limits{UncompressedBytes: 2048}, ErrTooLarge, "unpack to more than 2048 bytes"},
		{"compressed size", ok, Limits{UncompressedBytes: 100}, ErrTooLarge, "layers (compressed) of"},
		{"manifest size", ok, Limits{ManifestBytes: 100}, ErrTooLarge, "limit is 100"},
		{"config size", ok, Limits{ConfigBytes: 100}, ErrTooLarge, "config of"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cache := t.TempDir()
			_, err := Pull(ctx, tt.ref.String(), Options{CacheDir: cache, Keychain: anon, Limits: tt.limits})
			if !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.says) {
				t.Fatalf("err = %v, want %v saying %q", err, tt.is, tt.says)
			}
			if tt.is == ErrNoPlatform {
				if entries, _ := os.ReadDir(cache); len(entries) != 0 {
					t.Errorf("a refused pull cached %d entries", len(entries))
				}
			}
		})
	}
}

// An index of indexes is descended, within a bound on how many are fetched.
func TestPullNestedIndex(t *testing.T) {
	r := newRegistry(t)
	ctx := context.Background()
	anon := authn.NewMultiKeychain()
	arm := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{
		Add: image(t, "arm64"), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}},
	})
	amd := image(t, "amd64")
	inner := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{
		Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}},
	})
	// Distinct arm64-only indexes (an annotation each), then the amd64 one.
	outer := func(arms int) v1.ImageIndex {
		idx := v1.ImageIndex(empty.Index)
		for i := range arms {
			idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: mutate.Annotations(arm, map[string]string{"n": string(rune('a' + i))}).(v1.ImageIndex)})
		}
		return mutate.AppendManifests(idx, mutate.IndexAddendum{Add: inner})
	}
	for _, tt := range []struct {
		arms int
		ok   bool
	}{{2, true}, {maxIndexes, false}} {
		ref := r.ref(t, "team/nested:"+string(rune('a'+tt.arms)))
		if err := remote.WriteIndex(ref, outer(tt.arms)); err != nil {
			t.Fatal(err)
		}
		got, err := Pull(ctx, ref.String(), Options{CacheDir: t.TempDir(), Keychain: anon})
		if tt.ok {
			if err != nil || got.Digest != digest(t, amd) {
				t.Errorf("%d arm64 indexes first: %v", tt.arms, err)
			}
		} else if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "nested indexes") {
			t.Errorf("%d arm64 indexes first: err %v, want ErrTooLarge", tt.arms, err)
		}
	}
}
