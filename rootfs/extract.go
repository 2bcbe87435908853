package rootfs

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// extractor unpacks a flattened image tar into a directory. Every path is
// resolved with openat2(RESOLVE_IN_ROOT), so neither "../" names nor
// symlinks inside the image (absolute or relative) can reach outside it.
type extractor struct {
	root     int  // O_PATH fd of the target directory
	privileg bool // running as root: owners and device nodes are kept
	progress io.Writer
	budget   int64         // bytes the target filesystem can still take
	dirs     []*tar.Header // metadata applied last: children change a dir's mtime
	links    []*tar.Header // hard links made last: their target may come later
	skipped  int
}

// extractTar writes the entries of r under dir, which must exist.
func extractTar(ctx context.Context, r io.Reader, dir string, progress io.Writer) error {
	root, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	defer unix.Close(root)
	x := &extractor{root: root, privileg: os.Geteuid() == 0, progress: progress}
	// An image may declare files (sparse ones cost nothing in the tar) far
	// larger than any disk; refuse before writing instead of filling it.
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(root, &sfs); err != nil {
		return fmt.Errorf("statfs %s: %w", dir, err)
	}
	x.budget = int64(sfs.Bavail) * sfs.Bsize
	tr := tar.NewReader(r)
	for n := 0; ; n++ {
		if n%1024 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: read image tar: %w", ErrBadSource, err)
		}
		if err := x.entry(h, tr); err != nil {
			return fmt.Errorf("extract %s: %w", h.Name, err)
		}
	}
	for _, h := range x.links {
		if err := x.link(h); err != nil {
			return fmt.Errorf("extract hard link %s: %w", h.Name, err)
		}
	}
	// Deepest first, so a read-only parent is set after its children.
	sort.SliceStable(x.dirs, func(i, j int) bool { return len(x.dirs[i].Name) > len(x.dirs[j].Name) })
	for _, h := range x.dirs {
		if err := x.dirMeta(h); err != nil {
			return fmt.Errorf("extract %s: %w", h.Name, err)
		}
	}
	if x.skipped > 0 {
		progressf(progress, "rootfs: skipped %d device nodes (creating them needs root)\n", x.skipped)
	}
	return nil
}

// dir names the directory fd refers to, for messages.
func dir(fd int) string {
	p, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
	if err != nil {
		return "the staging directory"
	}
	return p
}

// clean maps a tar name to a path relative to the root ("" is the root).
func clean(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}

// openIn opens p (relative to the root) without leaving the root.
func (x *extractor) openIn(p string, flags uint64) (int, error) {
	if p == "" {
		p = "."
	}
	return unix.Openat2(x.root, p, &unix.OpenHow{
		Flags:   flags | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
}

// parent returns an O_PATH fd of p's directory, creating missing
// directories (layers often omit them), and p's last element.
func (x *extractor) parent(p string) (int, string, error) {
	dir, base := path.Split(p)
	dir = strings.TrimSuffix(dir, "/")
	fd, err := x.openIn(dir, unix.O_PATH|unix.O_DIRECTORY)
	if err == nil {
		return fd, base, nil
	}
	if !errors.Is(err, unix.ENOENT) || dir == "" {
		return -1, "", err
	}
	pfd, pbase, err := x.parent(dir)
	if err != nil {
		return -1, "", err
	}
	err = unix.Mkdirat(pfd, pbase, 0o755)
	unix.Close(pfd)
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return -1, "", err
	}
	fd, err = x.openIn(dir, unix.O_PATH|unix.O_DIRECTORY)
	return fd, base, err
}

// clear removes a non-directory at base so an entry can replace it; a later
// layer's entry wins, as in the flattened image.
func clear(dirfd int, base string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return unix.Unlinkat(dirfd, base, unix.AT_REMOVEDIR)
	}
	return unix.Unlinkat(dirfd, base, 0)
}

func (x *extractor) entry(h *tar.Header, r io.Reader) error {
	h.Name = clean(h.Name)
	switch h.Typeflag {
	case tar.TypeDir:
		if h.Name != "" {
			pfd, base, err := x.parent(h.Name)
			if err != nil {
				return err
			}
			defer unix.Close(pfd)
			var st unix.Stat_t
			err = unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW)
			if err == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
				if err := unix.Unlinkat(pfd, base, 0); err != nil {
					return err
				}
				err = unix.ENOENT
			}
			if errors.Is(err, unix.ENOENT) {
				err = unix.Mkdirat(pfd, base, 0o700)
			}
			if err != nil {
				return err
			}
		}
		x.dirs = append(x.dirs, h)
		return nil
	case tar.TypeLink:
		x.links = append(x.links, h)
		return nil
	case tar.TypeReg, tar.TypeSymlink, tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
	default:
		return nil // PAX globals, sockets and vendor types carry no file
	}
	if h.Name == "" {
		return errors.New("a non-directory entry names the image root")
	}
	pfd, base, err := x.parent(h.Name)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if err := clear(pfd, base); err != nil {
		return err
	}
	switch h.Typeflag {
	case tar.TypeReg:
		if x.budget -= h.Size; x.budget < 0 {
			return fmt.Errorf("%w: the image's files need more than the free space where it is unpacked (%s): free space or build elsewhere", ErrBadSource, dir(x.root))
		}
		return x.file(pfd, base, h, r)
	case tar.TypeSymlink:
		if err := unix.Symlinkat(h.Linkname, pfd, base); err != nil {
			return err
		}
	default:
		mode := uint32(unix.S_IFIFO)
		switch h.Typeflag {
		case tar.TypeChar:
			mode = unix.S_IFCHR
		case tar.TypeBlock:
			mode = unix.S_IFBLK
		}
		if mode != unix.S_IFIFO && !x.privileg {
			x.skipped++
			return nil
		}
		dev := int(unix.Mkdev(uint32(h.Devmajor), uint32(h.Devminor)))
		if err := unix.Mknodat(pfd, base, mode|uint32(h.Mode&0o7777), dev); err != nil {
			return err
		}
		if err := unix.Fchmodat(pfd, base, uint32(h.Mode&0o7777), 0); err != nil {
			return err
		}
	}
	return x.owner(pfd, base, h)
}

func (x *extractor) file(pfd int, base string, h *tar.Header, r io.Reader) error {
	fd, err := unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), h.Name)
	defer f.Close()
	if _, err := io.Copy(f, r); err != nil {
		return err
	}
	if x.privileg {
		if err := f.Chown(h.Uid, h.Gid); err != nil {
			return err
		}
	}
	// After chown, which clears set-id bits.
	if err := unix.Fchmod(fd, uint32(h.Mode&0o7777)); err != nil {
		return err
	}
	if err := x.xattrs(fd, h); err != nil {
		return err
	}
	return x.times(pfd, base, h)
}

// xattrs restores extended attributes (file capabilities such as ping's
// cap_net_raw travel as security.capability); mkfs.ext4 -d copies them.
func (x *extractor) xattrs(fd int, h *tar.Header) error {
	for k, v := range h.PAXRecords {
		name, ok := strings.CutPrefix(k, "SCHILY.xattr.")
		if !ok {
			continue
		}
		if err := unix.Fsetxattr(fd, name, []byte(v), 0); err != nil {
			if errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOTSUP) {
				progressf(x.progress, "rootfs: %s: xattr %s not kept: %v\n", h.Name, name, err)
				continue
			}
			return fmt.Errorf("set xattr %s: %w", name, err)
		}
	}
	return nil
}

func (x *extractor) owner(pfd int, base string, h *tar.Header) error {
	if x.privileg {
		if err := unix.Fchownat(pfd, base, h.Uid, h.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
	}
	return x.times(pfd, base, h)
}

func (x *extractor) times(pfd int, base string, h *tar.Header) error {
	t := unix.NsecToTimespec(h.ModTime.UnixNano())
	return unix.UtimesNanoAt(pfd, base, []unix.Timespec{t, t}, unix.AT_SYMLINK_NOFOLLOW)
}

func (x *extractor) link(h *tar.Header) error {
	target := clean(h.Linkname)
	if target == "" {
		return errors.New("hard link to the image root")
	}
	tfd, tbase, err := x.parent(target)
	if err != nil {
		return fmt.Errorf("link target %s: %w", h.Linkname, err)
	}
	defer unix.Close(tfd)
	pfd, base, err := x.parent(h.Name)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if err := clear(pfd, base); err != nil {
		return err
	}
	if err := unix.Linkat(tfd, tbase, pfd, base, 0); err != nil {
		return fmt.Errorf("link to %s: %w", h.Linkname, err)
	}
	return nil
}

func (x *extractor) dirMeta(h *tar.Header) error {
	fd, err := x.openIn(h.Name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if x.privileg {
		if err := unix.Fchown(fd, h.Uid, h.Gid); err != nil {
			return err
		}
	}
	mode := uint32(h.Mode & 0o7777)
	if !x.privileg {
		mode |= 0o700 // stay able to read and remove what we extracted
	}
	if err := unix.Fchmod(fd, mode); err != nil {
		return err
	}
	if err := x.xattrs(fd, h); err != nil {
		return err
	}
	t := unix.NsecToTimeval(h.ModTime.UnixNano())
	return unix.Futimes(fd, []unix.Timeval{t, t})
}
