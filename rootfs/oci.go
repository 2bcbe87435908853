package rootfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// FromOCI writes an ext4 image of a container image to out. src is a
// `docker save` tarball (one image) or an OCI image layout directory; the
// layers are flattened with whiteouts honoured, then built as FromDir does.
func FromOCI(ctx context.Context, src, out string, o Options) error {
	img, err := loadImage(src)
	if err != nil {
		return err
	}
	return FromImage(ctx, img, src, out, o)
}

// FromImage writes an ext4 image of img (e.g. one pulled from a registry)
// to out, as FromOCI does; name is for messages.
func FromImage(ctx context.Context, img v1.Image, name, out string, o Options) error {
	stage, err := stagingDir(out)
	if err != nil {
		return err
	}
	defer os.RemoveAll(stage)
	if err := Unpack(ctx, img, stage, o.Progress); err != nil {
		return fmt.Errorf("flatten %s: %w", name, err)
	}
	return build(ctx, stage, out, o)
}

// Unpack flattens img's layers into dir, which must exist, with whiteouts
// honoured and every path confined to dir.
func Unpack(ctx context.Context, img v1.Image, dir string, progress io.Writer) error {
	progressf(progress, "rootfs: flattening layers into %s\n", dir)
	rc := mutate.Extract(img)
	defer rc.Close()
	return extractTar(ctx, rc, dir, progress)
}

// stagingDir makes a scratch directory beside out: on the same filesystem,
// and not in a tmpfs /tmp that would hold a whole root tree in RAM.
func stagingDir(out string) (string, error) {
	dir := filepath.Dir(out)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create output directory: %w", err)
	}
	stage, err := os.MkdirTemp(dir, ".rootfs-stage-")
	if err != nil {
		return "", fmt.Errorf("create staging directory: %w", err)
	}
	return stage, nil
}

// LoadImage reads a `docker save` tarball (one image) or an OCI image
// layout directory (this machine's platform from its index).
func LoadImage(src string) (v1.Image, error) { return loadImage(src) }

func loadImage(src string) (v1.Image, error) {
	fi, err := os.Stat(src)
	if err != nil {
		return nil, fmt.Errorf("%w: OCI image: %w", ErrBadSource, err)
	}
	if fi.IsDir() {
		img, err := fromLayout(src)
		if err != nil {
			return nil, fmt.Errorf("%w: OCI layout %s: %w (want a directory with index.json and blobs/)", ErrBadSource, src, err)
		}
		return img, nil
	}
	img, err := tarball.ImageFromPath(src, nil)
	if err == nil {
		// Reading the config checks the tarball is whole before any work.
		_, err = img.ConfigFile()
	}
	if err != nil {
		return nil, fmt.Errorf("%w: image tarball %s: %w (want the output of `docker save IMAGE`, one image)", ErrBadSource, src, err)
	}
	return img, nil
}

// fromLayout picks the image for this machine's architecture from an OCI
// layout, descending into nested indexes (multi-platform images).
func fromLayout(dir string) (v1.Image, error) {
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, err
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return nil, err
	}
	return pickImage(idx, 0)
}

func pickImage(idx v1.ImageIndex, depth int) (v1.Image, error) {
	if depth > 4 {
		return nil, errors.New("image indexes nested too deep")
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	want := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	var fallback *v1.Descriptor
	for i := range m.Manifests {
		d := &m.Manifests[i]
		switch {
		case d.MediaType.IsIndex():
			child, err := idx.ImageIndex(d.Digest)
			if err != nil {
				return nil, err
			}
			if img, err := pickImage(child, depth+1); err == nil {
				return img, nil
			}
		case d.MediaType.IsImage():
			if d.Platform != nil && d.Platform.Satisfies(want) {
				return idx.Image(d.Digest)
			}
			if d.Platform == nil && fallback == nil {
				fallback = d
			}
		}
	}
	if fallback != nil {
		return idx.Image(fallback.Digest)
	}
	return nil, fmt.Errorf("no image for linux/%s in the index", runtime.GOARCH)
}
