package registry

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// cache is a directory of blobs named by digest (dir/sha256/<hex>). A blob
// is written under a temporary name and renamed once its digest and size
// match, and is hashed again before each use: a file changed on disk is
// fetched again, never used.
type cache struct {
	dir      string
	progress io.Writer
}

// ensure returns the path of d's blob, fetching it if absent or corrupt.
func (c *cache) ensure(ctx context.Context, d v1.Descriptor, fetch func() (io.ReadCloser, error)) (string, error) {
	if d.Digest.Algorithm != "sha256" || len(d.Digest.Hex) != sha256.Size*2 {
		return "", fmt.Errorf("digest %q: only sha256 is supported", d.Digest)
	}
	if _, err := hex.DecodeString(d.Digest.Hex); err != nil {
		return "", fmt.Errorf("digest %q: %w", d.Digest, err)
	}
	dir := filepath.Join(c.dir, "sha256")
	path := filepath.Join(dir, d.Digest.Hex)
	switch err := verifyFile(path, d); {
	case err == nil:
		return path, nil
	case errors.Is(err, fs.ErrNotExist):
	default:
		progressf(c.progress, "registry: cached blob %s is damaged (%v); fetching it again\n", d.Digest, err)
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("remove damaged cached blob: %w", err)
		}
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create layer cache: %w", err)
	}
	rc, err := fetch()
	if err != nil {
		return "", fmt.Errorf("fetch %s: %w", d.Digest, err)
	}
	defer rc.Close()
	tmp, err := os.CreateTemp(dir, ".fetch-")
	if err != nil {
		return "", fmt.Errorf("create layer cache file: %w", err)
	}
	defer os.Remove(tmp.Name())
	// The remote reader checks digest and size too; this copy does so
	// itself so nothing unchecked is ever renamed into place.
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(rc, d.Size+1))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("fetch %s: %w", d.Digest, err)
	}
	if err := match(d, n, h.Sum(nil)); err != nil {
		return "", fmt.Errorf("fetch %s: %w", d.Digest, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", fmt.Errorf("store %s: %w", d.Digest, err)
	}
	return path, nil
}

func verifyFile(path string, d v1.Descriptor) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(f, d.Size+1))
	if err != nil {
		return err
	}
	return match(d, n, h.Sum(nil))
}

func match(d v1.Descriptor, n int64, sum []byte) error {
	if n != d.Size {
		return fmt.Errorf("%d bytes, the manifest says %d", n, d.Size)
	}
	if got := hex.EncodeToString(sum); got != d.Digest.Hex {
		return fmt.Errorf("content hashes to sha256:%s", got)
	}
	return nil
}

// checkContent unpacks a cached layer to count its size, at most budget
// bytes, and to check it against the config's diff ID.
func checkContent(l cachedLayer, diffID v1.Hash, budget int64) (int64, error) {
	ul, err := partial.CompressedToLayer(l)
	if err != nil {
		return 0, err
	}
	rc, err := ul.Uncompressed()
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(rc, budget+1))
	if err != nil {
		return 0, fmt.Errorf("unpack: %w", err)
	}
	if n > budget {
		return 0, ErrTooLarge
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != diffID.String() {
		return 0, fmt.Errorf("unpacked content is %s, the config's diff ID %s", got, diffID)
	}
	return n, nil
}

// cachedImage is a pulled image read back from the cache; partial
// completes it into a v1.Image.
type cachedImage struct {
	manifest   []byte
	mediaType  types.MediaType
	configPath string
	layers     map[v1.Hash]cachedLayer
}

var _ partial.CompressedImageCore = (*cachedImage)(nil)

func (c *cachedImage) RawConfigFile() ([]byte, error)      { return os.ReadFile(c.configPath) }
func (c *cachedImage) MediaType() (types.MediaType, error) { return c.mediaType, nil }
func (c *cachedImage) RawManifest() ([]byte, error)        { return c.manifest, nil }

func (c *cachedImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	l, ok := c.layers[h]
	if !ok {
		return nil, fmt.Errorf("layer %s is not in the image", h)
	}
	return l, nil
}

func (c *cachedImage) configFile() (*v1.ConfigFile, error) {
	b, err := c.RawConfigFile()
	if err != nil {
		return nil, err
	}
	var cf v1.ConfigFile
	if err := json.Unmarshal(b, &cf); err != nil {
		return nil, err
	}
	return &cf, nil
}

type cachedLayer struct {
	desc v1.Descriptor
	path string
}

func (l cachedLayer) Digest() (v1.Hash, error)            { return l.desc.Digest, nil }
func (l cachedLayer) Size() (int64, error)                { return l.desc.Size, nil }
func (l cachedLayer) MediaType() (types.MediaType, error) { return l.desc.MediaType, nil }
func (l cachedLayer) Compressed() (io.ReadCloser, error)  { return os.Open(l.path) }
