package rootfs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

const (
	mib     = 1 << 20
	minSize = 8 * mib
	// blockSize is fixed: below 512 MiB mke2fs would otherwise pick 1 KiB
	// blocks and 128-byte inodes (no timestamps past 2038).
	blockSize = 4096
)

// findTool looks a program up in PATH and the sbin directories (which a
// non-root PATH often lacks); the error names the package to install.
func findTool(name, pkg string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: %s not found: install %s (apt-get install %s)", ErrMissingTool, name, pkg, pkg)
}

type treeStats struct {
	bytes  int64 // data and directory blocks, rounded to whole blocks
	inodes int64
}

// measure adds up what the tree will occupy in ext4 blocks.
func measure(dir string) (treeStats, error) {
	var st treeStats
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		st.inodes++
		switch {
		case d.IsDir():
			st.bytes += blockSize
		case d.Type().IsRegular():
			fi, err := d.Info()
			if err != nil {
				return err
			}
			st.bytes += (fi.Size() + blockSize - 1) / blockSize * blockSize
		case d.Type()&fs.ModeSymlink != 0:
			// Targets under 60 bytes live in the inode itself.
			if t, err := os.Readlink(p); err == nil && len(t) >= 60 {
				st.bytes += blockSize
			}
		}
		return nil
	})
	return st, err
}

// defaultSize is content * 1.3 + 64 MiB, rounded up to a MiB.
func defaultSize(content int64) int64 {
	s := content + content*3/10 + 64*mib
	return (s + mib - 1) / mib * mib
}

// inodeCount leaves room to grow: twice what the tree needs, and never
// fewer than mke2fs's default of one inode per 16 KiB.
func inodeCount(size, inodes int64) int64 {
	n := 2*inodes + 1024
	if d := size / 16384; d > n {
		n = d
	}
	return n
}

// volumeUUID derives the filesystem UUID (and directory hash seed) from the
// label, so identical inputs give identical images (reproducible builds).
func volumeUUID(label string) string {
	h := sha256.Sum256([]byte("sietch rootfs " + label))
	h[6] = h[6]&0x0f | 0x50 // version 5 style: name-based
	h[8] = h[8]&0x3f | 0x80 // RFC 4122 variant
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

// toolEnv pins mke2fs's and debugfs's clock to SOURCE_DATE_EPOCH when set,
// so superblock and added directories carry reproducible times.
func toolEnv() []string {
	env := os.Environ()
	if v := os.Getenv("SOURCE_DATE_EPOCH"); v != "" {
		if _, err := strconv.ParseUint(v, 10, 63); err == nil {
			env = append(env, "E2FSPROGS_FAKE_TIME="+v)
		}
	}
	return env
}

func runMkfs(ctx context.Context, mkfs, dir, img string, size, inodes int64, o Options) error {
	uuid := volumeUUID(o.Label)
	args := []string{
		"-F", "-t", "ext4",
		"-b", strconv.Itoa(blockSize), "-I", "256",
		"-N", strconv.FormatInt(inodeCount(size, inodes), 10),
		"-m", "0", // no blocks reserved for root: the image is one guest's disk
		"-L", o.Label,
		"-U", uuid,
		"-E", "root_owner=0:0,hash_seed=" + uuid,
		"-d", dir,
		img,
	}
	if o.Progress == nil {
		args = append([]string{"-q"}, args...)
	}
	progressf(o.Progress, "rootfs: %s %s\n", mkfs, strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, mkfs, args...)
	cmd.Env = toolEnv()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if o.Progress != nil {
		// One writer for both streams: exec then never writes concurrently.
		w := io.MultiWriter(&stderr, o.Progress)
		cmd.Stdout, cmd.Stderr = w, w
	}
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("mkfs.ext4: %w", ctx.Err())
		}
		msg := strings.TrimSpace(stderr.String())
		hint := ""
		if strings.Contains(msg, "Could not allocate block") || strings.Contains(msg, "No space left") {
			hint = " (the image is too small for the tree: pass a larger size or 0 for automatic)"
		}
		return fmt.Errorf("mkfs.ext4 -d %s: %w: %s%s", dir, err, msg, hint)
	}
	return nil
}

// fixup adds the mount points guest-init needs and removes /etc/hostname
// (guest-init sets the hostname), editing the image with debugfs so the
// source tree is never touched.
func fixup(ctx context.Context, debugfs, dir, img string, progress io.Writer) error {
	var script strings.Builder
	for _, d := range guestDirs {
		if _, err := os.Lstat(filepath.Join(dir, d.path)); err == nil {
			continue // present (perhaps a symlink, as the image wants it)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("inspect %s: %w", d.path, err)
		}
		fmt.Fprintf(&script, "mkdir %s\nsif %s mode 0%o\nsif %s uid 0\nsif %s gid 0\n",
			d.path, d.path, 0o40000|d.mode, d.path, d.path)
	}
	if fi, err := os.Lstat(filepath.Join(dir, "etc/hostname")); err == nil && !fi.IsDir() {
		script.WriteString("rm /etc/hostname\n")
	}
	if script.Len() == 0 {
		return nil
	}
	progressf(progress, "rootfs: debugfs: %s", script.String())
	cmd := exec.CommandContext(ctx, debugfs, "-w", "-f", "-", img)
	cmd.Env = toolEnv()
	cmd.Stdin = strings.NewReader(script.String())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("debugfs (add mount points): %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	// debugfs exits 0 even when a request fails; its errors are the stderr
	// lines other than the version banner.
	for _, line := range strings.Split(stderr.String(), "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "debugfs ") {
			return fmt.Errorf("debugfs (add mount points): %s", line)
		}
	}
	return nil
}
