package tarx

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ErrChanged is a file that shrank while it was written to the archive:
// the archive would lie about it, so writing stops.
var ErrChanged = errors.New("file changed while it was read")

// Write writes the tree under root to w as a PAX tar archive, names
// relative to root and in lexical order: directories (as "name/"),
// regular files, symlinks with their targets, and hard links (a file's
// second name becomes a link to its first). Modes (setuid, setgid and
// sticky included), modification times and numeric owners are recorded.
// Devices, fifos and sockets are left out; skipped, if not nil, hears of
// each. A file that vanishes during the walk is left out too. The root
// itself has no entry.
func Write(w io.Writer, root *os.Root, skipped func(name string, mode fs.FileMode)) (Counts, error) {
	return write(w, root, skipped, nil)
}

// Layer says how WriteLayer reads an overlayfs upper directory.
type Layer struct {
	// Dir is the upper directory's path, for reading the opaque marker
	// (the trusted.overlay.opaque extended attribute) that os.Root cannot.
	Dir string
	// Skip leaves a name (and, for a directory, all under it) out.
	Skip func(name string) bool
}

// WriteLayer writes an overlayfs upper directory as an OCI image layer
// (image-spec layer.md): what Write writes, plus a ".wh.NAME" entry for
// each whiteout (a character device 0/0: NAME was deleted from the layers
// below) and a "DIR/.wh..wh..opq" entry after each opaque directory (one
// that replaced a directory below rather than merging with it).
func WriteLayer(w io.Writer, root *os.Root, l Layer, skipped func(name string, mode fs.FileMode)) (Counts, error) {
	return write(w, root, skipped, &l)
}

// Whiteout names of the OCI layer format.
const (
	WhiteoutPrefix = ".wh."
	WhiteoutOpaque = ".wh..wh..opq"
)

func write(w io.Writer, root *os.Root, skipped func(name string, mode fs.FileMode), layer *Layer) (Counts, error) {
	tw := tar.NewWriter(w)
	var n Counts
	seen := map[inode]string{}
	buf := make([]byte, copyBuffer)
	err := fs.WalkDir(root.FS(), ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && name != "." {
				return nil // removed since its directory was read
			}
			return err
		}
		if name == "." {
			return nil
		}
		if layer != nil && layer.Skip != nil && layer.Skip(name) {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		fi, err := root.Lstat(name)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		switch {
		case fi.IsDir():
			hdr, err := header(fi, name+"/", "")
			if err != nil {
				return err
			}
			n.Dirs++
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			if layer != nil && opaque(filepath.Join(layer.Dir, name)) {
				n.Whiteouts++
				return tw.WriteHeader(whiteout(path.Join(name, WhiteoutOpaque)))
			}
			return nil
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := root.Readlink(name)
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			if err != nil {
				return err
			}
			hdr, err := header(fi, name, target)
			if err != nil {
				return err
			}
			n.Symlinks++
			return tw.WriteHeader(hdr)
		case fi.Mode().IsRegular():
			return writeFile(tw, root, name, &n, seen, buf)
		case layer != nil && fi.Mode()&fs.ModeCharDevice != 0 && rdev(fi) == 0:
			n.Whiteouts++
			return tw.WriteHeader(whiteout(path.Join(path.Dir(name), WhiteoutPrefix+path.Base(name))))
		}
		if skipped != nil {
			skipped(name, fi.Mode())
		}
		return nil
	})
	if err != nil {
		return n, err
	}
	return n, tw.Close()
}

// inode identifies a file with more than one name.
type inode struct{ dev, ino uint64 }

func writeFile(tw *tar.Writer, root *os.Root, name string, n *Counts, seen map[inode]string, buf []byte) error {
	f, err := root.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	// Describe what was opened, not what the walk saw before.
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return nil
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
		key := inode{uint64(st.Dev), uint64(st.Ino)}
		if first, ok := seen[key]; ok {
			hdr, err := header(fi, name, "")
			if err != nil {
				return err
			}
			hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
			n.Files++
			return tw.WriteHeader(hdr)
		}
		seen[key] = name
	}
	hdr, err := header(fi, name, "")
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	// A file that grows is cut at the size in its header; one that shrinks
	// cannot be told truthfully, so the archive ends with an error.
	c, err := io.CopyBuffer(tw, io.LimitReader(f, hdr.Size), buf)
	if err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	if c != hdr.Size {
		return fmt.Errorf("%w: %s shrank from %d to %d bytes", ErrChanged, name, hdr.Size, c)
	}
	n.Files++
	n.Bytes += c
	return nil
}

// header describes fi under name in PAX format, with no user or group
// names (only ids) and no access or change times.
func header(fi fs.FileInfo, name, link string) (*tar.Header, error) {
	hdr, err := tar.FileInfoHeader(fi, link)
	if err != nil {
		return nil, fmt.Errorf("describe %s: %w", name, err)
	}
	hdr.Name = name
	hdr.Format = tar.FormatPAX
	hdr.Uname, hdr.Gname = "", ""
	hdr.AccessTime, hdr.ChangeTime = time.Time{}, time.Time{}
	return hdr, nil
}

// whiteout is an empty entry that marks a deletion in a layer.
func whiteout(name string) *tar.Header {
	return &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o600, Format: tar.FormatPAX}
}

// opaque says whether an overlayfs upper directory hides the directories
// below it ("y" in trusted.overlay.opaque).
func opaque(dir string) bool {
	var b [8]byte
	n, err := unix.Lgetxattr(dir, "trusted.overlay.opaque", b[:])
	return err == nil && string(b[:n]) == "y"
}

func rdev(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Rdev)
	}
	return ^uint64(0)
}
