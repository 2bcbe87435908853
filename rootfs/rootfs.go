// Package rootfs builds ext4 root filesystem images for guests without mounting anything.
package rootfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Options shape the image every builder writes.
type Options struct {
	// SizeBytes is the image size. 0 picks content size * 1.3 + 64 MiB,
	// rounded up to a whole MiB.
	SizeBytes int64
	// Label is the ext4 volume label ("rootfs" when empty).
	Label string
	// Progress receives one line per step and the tools' output; nil: quiet.
	Progress io.Writer
}

var (
	// ErrBadSource means the input (directory, tarball, OCI layout) is
	// missing or unreadable; no image was written.
	ErrBadSource = errors.New("bad image source")
	// ErrMissingTool means a host program the build needs is not installed;
	// the error names the Debian package that provides it.
	ErrMissingTool = errors.New("missing host tool")
)

// guestDirs are the mount points guest-init needs in the root it switches
// into; an image lacks them, so they are added (see fixup).
var guestDirs = []struct {
	path string
	mode uint32
}{
	{"/proc", 0o555}, {"/sys", 0o555}, {"/dev", 0o755}, {"/run", 0o755}, {"/tmp", 0o1777},
}

// FromDir writes an ext4 image of the tree at dir to out. The tree is read,
// never changed: missing mount points are added inside the image only.
func FromDir(ctx context.Context, dir, out string, o Options) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("%w: root directory: %w", ErrBadSource, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%w: root directory %s is not a directory", ErrBadSource, dir)
	}
	return build(ctx, dir, out, o)
}

// build turns the tree at dir into out via out+".tmp", so a failed or
// interrupted build never leaves a file named out.
func build(ctx context.Context, dir, out string, o Options) error {
	if out == "" {
		return errors.New("build image: no output path given")
	}
	if o.Label == "" {
		o.Label = "rootfs"
	}
	if len(o.Label) > 16 {
		return fmt.Errorf("build image: label %q is longer than ext4's 16 bytes", o.Label)
	}
	mkfs, err := findTool("mkfs.ext4", "e2fsprogs")
	if err != nil {
		return err
	}
	debugfs, err := findTool("debugfs", "e2fsprogs")
	if err != nil {
		return err
	}
	size := o.SizeBytes
	st, err := measure(dir)
	if err != nil {
		return fmt.Errorf("measure %s: %w", dir, err)
	}
	if size == 0 {
		size = defaultSize(st.bytes)
	}
	if size < minSize {
		return fmt.Errorf("build image: size %d bytes is below the %d MiB minimum", size, minSize>>20)
	}
	tmp := out + ".tmp"
	progressf(o.Progress, "rootfs: %s: %d files, %d MiB of content, image %d MiB\n", dir, st.inodes, st.bytes>>20, size>>20)
	if err := writeImage(ctx, mkfs, debugfs, dir, tmp, size, st.inodes, o); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, out); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("build image: %w", err)
	}
	progressf(o.Progress, "rootfs: wrote %s\n", out)
	return nil
}

func writeImage(ctx context.Context, mkfs, debugfs, dir, tmp string, size int64, inodes int64, o Options) error {
	if err := os.MkdirAll(filepath.Dir(tmp), 0o755); err != nil {
		return fmt.Errorf("create image directory: %w", err)
	}
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("create image: %w", err)
	}
	// Sparse: mkfs writes only metadata and file data.
	if err := f.Truncate(size); err != nil {
		f.Close()
		return fmt.Errorf("size image to %d bytes: %w", size, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("create image: %w", err)
	}
	if err := runMkfs(ctx, mkfs, dir, tmp, size, inodes, o); err != nil {
		return err
	}
	if err := fixup(ctx, debugfs, dir, tmp, o.Progress); err != nil {
		return err
	}
	f, err = os.OpenFile(tmp, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("sync image: %w", err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync image: %w", err)
	}
	return nil
}

func progressf(w io.Writer, format string, args ...any) {
	if w != nil {
		fmt.Fprintf(w, format, args...)
	}
}
