// Package tarx writes a directory tree as a tar stream and extracts one into a directory, confined with os.Root, for directory copies in and out of sandboxes.
//
// Both the guest agent (GET and PUT /v1/tar) and the sietch CLI (cp -r)
// use it, so a tree goes the same way in both directions and an archive
// from the other side, which is untrusted either way, meets the same rules:
//
//   - Names are relative to the directory. An absolute name, a ".."
//     element, a NUL byte or a name that reaches outside the directory
//     through a symlink is refused (ErrUnsafe); os.Root does the last check.
//   - Regular files, directories, symlinks and hard links (to a regular file
//     inside the tree) are extracted; device, fifo, sparse and unknown
//     entries are refused (ErrRefused). Writing skips devices, fifos and sockets.
//   - Each file is written to a temporary name beside it and renamed over
//     its name, so no file is ever seen half-written under its real name;
//     an existing file or symlink is replaced, not written through.
//   - Permission bits and the sticky bit are kept; setuid and setgid are
//     dropped, as tar does without --same-permissions, so an archive cannot
//     plant a setuid program. Modification times are kept. Owners are not
//     restored (files belong to whoever extracts) unless Limits.Owners.
//   - Directory modes and times are set after every entry is written, so a
//     read-only directory in the archive can still be filled.
//
// Extraction stops at the first refused or failed entry; the entries before
// it stay. The returned *EntryError names the entry.
package tarx

import (
	"archive/tar"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"
	"time"
)

// Limits bound what one archive may ask of the extractor; zero fields take
// the defaults.
type Limits struct {
	MaxEntries int // entries in the archive (default 1<<20)
	MaxNameLen int // bytes in an entry's name or link target (default 4096, PATH_MAX)
	// Owners restores each entry's numeric owner (needs CAP_CHOWN), as an
	// image build's COPY --chown does; else files belong to the extractor.
	Owners bool
}

const (
	defaultMaxEntries = 1 << 20
	defaultMaxNameLen = 4096
	maxElemLen        = 255 // NAME_MAX
	copyBuffer        = 1 << 20
)

// TempPrefix starts the name of every temporary file the extractor writes;
// such a file is renamed over its real name or removed.
const TempPrefix = ".sietch-upload-"

// Counts says what was written or extracted.
type Counts struct {
	Files    int64 // regular files, hard links included
	Dirs     int64
	Symlinks int64
	Bytes    int64 // of regular files' contents
	// Whiteouts are the deletions and opaque directories WriteLayer wrote.
	Whiteouts int64
}

// Kinds of refusal, for errors.Is on an *EntryError.
var (
	ErrUnsafe   = errors.New("unsafe name")                                 // absolute, "..", NUL, or out of the directory through a symlink
	ErrRefused  = errors.New("entry type refused")                          // device, fifo, unknown
	ErrLimit    = errors.New("limit exceeded")                              // too many entries, a name too long
	ErrFormat   = errors.New("not a valid tar stream")                      // the archive itself is malformed or cut short
	ErrConflict = errors.New("conflicts with what is in the directory now") // a file where a directory is, or the reverse
)

// EntryError is a refused or failed entry of an archive.
type EntryError struct {
	Index int    // 1-based position in the archive
	Name  string // as the archive spells it
	Err   error
}

func (e *EntryError) Error() string {
	if e.Name == "" {
		return fmt.Sprintf("tar entry %d: %v", e.Index, e.Err)
	}
	return fmt.Sprintf("tar entry %d %q: %v", e.Index, e.Name, e.Err)
}

func (e *EntryError) Unwrap() error { return e.Err }

// IsEscape reports whether an os.Root operation refused a path that leaves
// the root. os does not export that error, so match its text.
func IsEscape(err error) bool {
	return err != nil && strings.Contains(err.Error(), "path escapes from parent")
}

// dirMeta is a directory's mode and time, set once the archive is done.
type dirMeta struct {
	name     string
	mode     os.FileMode
	mtime    time.Time
	uid, gid int
}

type extractor struct {
	root  *os.Root
	lim   Limits
	n     Counts
	dirs  []dirMeta
	buf   []byte
	index int
}

// Extract writes the archive r holds into root and returns what it wrote.
// See the package comment for the rules.
func Extract(r io.Reader, root *os.Root, lim Limits) (Counts, error) {
	if lim.MaxEntries <= 0 {
		lim.MaxEntries = defaultMaxEntries
	}
	if lim.MaxNameLen <= 0 {
		lim.MaxNameLen = defaultMaxNameLen
	}
	x := &extractor{root: root, lim: lim}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		x.index++
		if err != nil && !errors.Is(err, tar.ErrInsecurePath) {
			return x.n, &EntryError{Index: x.index, Err: fmt.Errorf("%w: %v", ErrFormat, err)}
		}
		if x.index > lim.MaxEntries {
			return x.n, &EntryError{Index: x.index, Name: hdr.Name, Err: fmt.Errorf("%w: more than %d entries", ErrLimit, lim.MaxEntries)}
		}
		if err := x.entry(hdr, tr); err != nil {
			return x.n, &EntryError{Index: x.index, Name: hdr.Name, Err: err}
		}
	}
	// Children first, so that setting a parent's time is the last change in it.
	for i := len(x.dirs) - 1; i >= 0; i-- {
		d := x.dirs[i]
		if lim.Owners {
			if err := root.Lchown(d.name, d.uid, d.gid); err != nil {
				return x.n, fmt.Errorf("set the owner of directory %s: %w", d.name, err)
			}
		}
		if err := root.Chmod(d.name, d.mode); err != nil {
			return x.n, fmt.Errorf("set the mode of directory %s: %w", d.name, err)
		}
		if !d.mtime.IsZero() {
			if err := root.Chtimes(d.name, d.mtime, d.mtime); err != nil {
				return x.n, fmt.Errorf("set the time of directory %s: %w", d.name, err)
			}
		}
	}
	return x.n, nil
}

// CleanName checks an archive's entry name (or a hard link's target) and
// returns it relative to the directory; "" is the directory itself.
func CleanName(name string, maxLen int) (string, error) {
	if maxLen <= 0 {
		maxLen = defaultMaxNameLen
	}
	switch {
	case name == "":
		return "", fmt.Errorf("%w: empty name", ErrUnsafe)
	case len(name) > maxLen:
		return "", fmt.Errorf("%w: name longer than %d bytes", ErrLimit, maxLen)
	case strings.IndexByte(name, 0) >= 0:
		return "", fmt.Errorf("%w: name contains a NUL byte", ErrUnsafe)
	case strings.HasPrefix(name, "/"):
		return "", fmt.Errorf("%w: absolute name; names must be relative to the directory", ErrUnsafe)
	}
	for _, el := range strings.Split(name, "/") {
		if el == ".." {
			return "", fmt.Errorf("%w: \"..\" element", ErrUnsafe)
		}
		if len(el) > maxElemLen {
			return "", fmt.Errorf("%w: a name element is longer than %d bytes", ErrLimit, maxElemLen)
		}
	}
	clean := path.Clean(name)
	if clean == "." {
		return "", nil
	}
	return clean, nil
}

// keptMode turns a tar header's mode into the bits the extractor sets:
// permissions and sticky, never setuid or setgid.
func keptMode(m int64) os.FileMode {
	mode := os.FileMode(m) & os.ModePerm
	if m&0o1000 != 0 {
		mode |= os.ModeSticky
	}
	return mode
}

func (x *extractor) entry(hdr *tar.Header, tr io.Reader) error {
	name, err := CleanName(hdr.Name, x.lim.MaxNameLen)
	if err != nil {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		if name == "" {
			return nil // the directory itself: it is the caller's
		}
		if err := x.root.MkdirAll(name, 0o755); err != nil {
			return x.fsErr("make directory", err)
		}
		x.n.Dirs++
		x.dirs = append(x.dirs, dirMeta{name: name, mode: keptMode(hdr.Mode), mtime: hdr.ModTime, uid: hdr.Uid, gid: hdr.Gid})
		return nil
	case tar.TypeReg, tar.TypeRegA:
		if sparse(hdr) {
			// A few bytes of sparse map expand to any size: refused, so an
			// archive cannot fill the disk with zeros for free.
			return fmt.Errorf("%w: sparse files are not extracted (archive without tar -S)", ErrRefused)
		}
		if name == "" {
			return fmt.Errorf("%w: a file entry names the directory itself", ErrUnsafe)
		}
		return x.file(name, hdr, tr)
	case tar.TypeSymlink:
		if name == "" {
			return fmt.Errorf("%w: a symlink entry names the directory itself", ErrUnsafe)
		}
		return x.symlink(name, hdr)
	case tar.TypeLink:
		if name == "" {
			return fmt.Errorf("%w: a hard link entry names the directory itself", ErrUnsafe)
		}
		return x.link(name, hdr.Linkname)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return fmt.Errorf("%w: device and fifo entries are not extracted (%s)", ErrRefused, typeName(hdr.Typeflag))
	case tar.TypeXGlobalHeader:
		return nil
	}
	return fmt.Errorf("%w: unsupported entry type %q", ErrRefused, hdr.Typeflag)
}

// sparse reports whether a header describes a sparse file (PAX 0.x or 1.0
// sparse records; the old GNU type has its own flag and is refused anyway).
func sparse(hdr *tar.Header) bool {
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

func typeName(t byte) string {
	switch t {
	case tar.TypeChar:
		return "character device"
	case tar.TypeBlock:
		return "block device"
	case tar.TypeFifo:
		return "fifo"
	}
	return string(t)
}

// fsErr names what failed; escapes become ErrUnsafe, a file where a
// directory must be (or the reverse) ErrConflict.
func (x *extractor) fsErr(op string, err error) error {
	switch {
	case IsEscape(err):
		return fmt.Errorf("%w: %s: the path leaves the directory through a symlink", ErrUnsafe, op)
	case errors.Is(err, syscall.ENOTDIR), errors.Is(err, syscall.EISDIR), errors.Is(err, syscall.ENOTEMPTY),
		errors.Is(err, fs.ErrExist):
		return fmt.Errorf("%w: %s: %v", ErrConflict, op, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// prepare makes name's parent directories and refuses to replace a
// directory with a non-directory.
func (x *extractor) prepare(name string) (dir string, err error) {
	dir = path.Dir(name)
	if dir != "." {
		if err := x.root.MkdirAll(dir, 0o755); err != nil {
			return "", x.fsErr("make parent directory", err)
		}
	}
	fi, err := x.root.Lstat(name)
	switch {
	case err == nil && fi.IsDir():
		return "", fmt.Errorf("%w: %s is a directory; the archive has a non-directory there", ErrConflict, name)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return "", x.fsErr("inspect", err)
	}
	return dir, nil
}

func tempName(dir string) string {
	b := make([]byte, 8)
	rand.Read(b)
	return path.Join(dir, TempPrefix+hex.EncodeToString(b))
}

// replace renames tmp over name, or removes tmp on failure.
func (x *extractor) replace(tmp, name string) error {
	if err := x.root.Rename(tmp, name); err != nil {
		x.root.Remove(tmp)
		return x.fsErr("rename into place", err)
	}
	return nil
}

func (x *extractor) file(name string, hdr *tar.Header, tr io.Reader) error {
	dir, err := x.prepare(name)
	if err != nil {
		return err
	}
	tmp := tempName(dir)
	f, err := x.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return x.fsErr("create", err)
	}
	if x.buf == nil {
		x.buf = make([]byte, copyBuffer)
	}
	n, err := io.CopyBuffer(onlyWriter{f}, tr, x.buf)
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF):
		err = fmt.Errorf("%w: the archive ends inside this file", ErrFormat)
	case err == nil && x.lim.Owners:
		err = f.Chown(hdr.Uid, hdr.Gid)
		fallthrough
	case err == nil:
		// Chmod after create (and chown): the umask must not change the
		// archive's mode.
		err = f.Chmod(keptMode(hdr.Mode))
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && !hdr.ModTime.IsZero() {
		err = x.root.Chtimes(tmp, hdr.ModTime, hdr.ModTime)
	}
	if err != nil {
		x.root.Remove(tmp)
		if errors.Is(err, ErrFormat) {
			return err
		}
		return x.fsErr("write", err)
	}
	if err := x.replace(tmp, name); err != nil {
		return err
	}
	x.n.Files++
	x.n.Bytes += n
	return nil
}

// onlyWriter hides *os.File's ReadFrom, which would make CopyBuffer ignore
// the buffer and read in small chunks.
type onlyWriter struct{ io.Writer }

func (x *extractor) symlink(name string, hdr *tar.Header) error {
	target := hdr.Linkname
	switch {
	case target == "":
		return fmt.Errorf("%w: symlink with an empty target", ErrUnsafe)
	case len(target) > x.lim.MaxNameLen:
		return fmt.Errorf("%w: symlink target longer than %d bytes", ErrLimit, x.lim.MaxNameLen)
	case strings.IndexByte(target, 0) >= 0:
		return fmt.Errorf("%w: symlink target contains a NUL byte", ErrUnsafe)
	}
	// The target is stored, not followed: a later entry that goes through
	// it is checked by os.Root when it is written.
	dir, err := x.prepare(name)
	if err != nil {
		return err
	}
	tmp := tempName(dir)
	if err := x.root.Symlink(target, tmp); err != nil {
		return x.fsErr("symlink", err)
	}
	if x.lim.Owners {
		if err := x.root.Lchown(tmp, hdr.Uid, hdr.Gid); err != nil {
			x.root.Remove(tmp)
			return x.fsErr("set the owner of", err)
		}
	}
	if err := x.replace(tmp, name); err != nil {
		return err
	}
	x.n.Symlinks++
	return nil
}

func (x *extractor) link(name, target string) error {
	old, err := CleanName(target, x.lim.MaxNameLen)
	if err != nil {
		return fmt.Errorf("hard link target %q: %w", target, err)
	}
	if old == "" {
		return fmt.Errorf("%w: hard link to the directory itself", ErrRefused)
	}
	fi, err := x.root.Lstat(old)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w: hard link target %s is not in the directory (links must point to a file earlier in the archive)", ErrRefused, old)
		}
		return x.fsErr("hard link target", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: hard link target %s is not a regular file", ErrRefused, old)
	}
	if old == name {
		x.n.Files++
		return nil
	}
	dir, err := x.prepare(name)
	if err != nil {
		return err
	}
	tmp := tempName(dir)
	if err := x.root.Link(old, tmp); err != nil {
		return x.fsErr("hard link", err)
	}
	if err := x.replace(tmp, name); err != nil {
		return err
	}
	x.n.Files++
	return nil
}
