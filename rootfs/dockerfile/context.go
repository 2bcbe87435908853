package dockerfile

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// Default limits of a build context.
const (
	DefaultMaxFiles = 100_000
	DefaultMaxBytes = 4 << 30
	// maxIgnoreBytes bounds a .dockerignore.
	maxIgnoreBytes = 1 << 20
	// maxLinkHops bounds the symlinks one source path may go through (as
	// Linux's MAXSYMLINKS).
	maxLinkHops = 40
)

// Limits bound what a build context may make the front end read.
type Limits struct {
	// MaxFiles bounds the entries (files, directories, links) the context
	// holds once .dockerignore is applied; 0: DefaultMaxFiles.
	MaxFiles int
	// MaxBytes bounds the bytes of the files COPY and ADD read (each file
	// counted once); 0: DefaultMaxBytes. The COPY and ADD steps together
	// may list at most 4 × MaxFiles entries (COPY . in a few stages).
	MaxBytes int64
}

// FileType is what a context entry is.
type FileType string

// The entries a context may hand to COPY and ADD.
const (
	TypeFile    FileType = "file"
	TypeDir     FileType = "dir"
	TypeSymlink FileType = "symlink"
	// typeOther (devices, fifos, sockets) is never copied.
	typeOther FileType = "other"
)

// Context is a build context directory as COPY and ADD see it: confined to
// the directory (os.Root: no name and no symlink leads out), with
// .dockerignore applied and its size bounded. It is not safe for concurrent
// use.
type Context struct {
	dir string
	// IgnoreFile is the ignore file in effect ("" when none).
	IgnoreFile string
	root       *os.Root
	ignore     *patternmatcher.PatternMatcher
	limits     Limits

	entries map[string]*entry // by slash path relative to dir; nil until walked
	paths   []string          // entries' keys, sorted
	read    int64             // bytes hashed so far
	listed  int               // files handed to COPY and ADD steps so far
}

type entry struct {
	path   string
	typ    FileType
	mode   fs.FileMode // permission, setuid/setgid/sticky bits
	size   int64
	link   string // a symlink's target
	digest string // "sha256:…" once hashed
}

// OpenContext opens the build context dir for a Dockerfile at dockerfile
// (a host path, which may lie outside dir; "" for none). As Docker does, an
// ignore file named after the Dockerfile (Dockerfile.dev.dockerignore beside
// Dockerfile.dev) takes precedence over dir/.dockerignore.
func OpenContext(dir, dockerfile string, l Limits) (*Context, error) {
	if l.MaxFiles <= 0 {
		l.MaxFiles = DefaultMaxFiles
	}
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open build context: %w", err)
	}
	c := &Context{dir: dir, root: root, limits: l}
	if err := c.loadIgnore(dockerfile); err != nil {
		root.Close()
		return nil, err
	}
	return c, nil
}

// Close releases the context directory.
func (c *Context) Close() error { return c.root.Close() }

// Dir is the context directory.
func (c *Context) Dir() string { return c.dir }

func (c *Context) loadIgnore(dockerfile string) error {
	var data []byte
	if dockerfile != "" {
		name := dockerfile + ".dockerignore"
		// Inside the context it is read through the context's root, as
		// every context file is: a symlink there must not lead out (a
		// builder that received the context from a client relies on it).
		// A Dockerfile kept outside the context is the caller's own file.
		open := func() (*os.File, error) { return os.Open(name) }
		absDir, err1 := filepath.Abs(c.dir)
		absName, err2 := filepath.Abs(name)
		if rel, err := filepath.Rel(absDir, absName); err1 == nil && err2 == nil && err == nil && filepath.IsLocal(rel) {
			open = func() (*os.File, error) { return c.root.Open(rel) }
		}
		if f, err := open(); err == nil {
			data, err = readBounded(f, name)
			if err != nil {
				return err
			}
			c.IgnoreFile = name
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("open %s: %w", name, err)
		}
	}
	if c.IgnoreFile == "" {
		f, err := c.root.Open(".dockerignore")
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("open .dockerignore in the build context: %w", err)
		}
		if data, err = readBounded(f, ".dockerignore"); err != nil {
			return err
		}
		c.IgnoreFile = filepath.Join(c.dir, ".dockerignore")
	}
	patterns, err := ignorefile.ReadAll(strings.NewReader(string(data)))
	if err != nil {
		return fmt.Errorf("read %s: %w", c.IgnoreFile, err)
	}
	if len(patterns) == 0 {
		return nil
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		return fmt.Errorf("%s: %w", c.IgnoreFile, err)
	}
	c.ignore = pm
	return nil
}

func readBounded(f *os.File, name string) ([]byte, error) {
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxIgnoreBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if len(data) > maxIgnoreBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, maxIgnoreBytes)
	}
	return data, nil
}

// ignored says whether .dockerignore leaves rel (a slash path) out.
func (c *Context) ignored(rel string) bool {
	if c.ignore == nil {
		return false
	}
	m, err := c.ignore.MatchesOrParentMatches(rel)
	// Patterns were checked when compiled; a match error leaves the file in.
	return err == nil && m
}

// walk lists the context once: every entry .dockerignore leaves in, found
// through the confined root without following symlinks.
func (c *Context) walk() error {
	if c.entries != nil {
		return nil
	}
	entries := map[string]*entry{}
	dirs := []string{"."}
	visited := 0
	for len(dirs) > 0 {
		dir := dirs[len(dirs)-1]
		dirs = dirs[:len(dirs)-1]
		names, err := c.readDirNames(dir)
		if err != nil {
			return err
		}
		if visited += len(names); visited > 4*c.limits.MaxFiles {
			return fmt.Errorf("build context %s: searched %d entries, ignored ones included, and stopped: a \"!\" pattern in %s makes every ignored directory be searched; narrow it, or raise the limit", c.dir, visited, c.IgnoreFile)
		}
		for _, name := range names {
			rel := name
			if dir != "." {
				rel = dir + "/" + name
			}
			fi, err := c.root.Lstat(rel)
			if err != nil {
				return fmt.Errorf("build context: %w", err)
			}
			ign := c.ignored(rel)
			if fi.IsDir() && (!ign || c.ignore.Exclusions()) {
				// An ignored directory is still searched when a "!"
				// pattern may bring something under it back.
				dirs = append(dirs, rel)
			}
			if ign {
				continue
			}
			e := &entry{path: rel, mode: fi.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)}
			switch {
			case fi.Mode().IsRegular():
				e.typ, e.size = TypeFile, fi.Size()
			case fi.IsDir():
				e.typ = TypeDir
			case fi.Mode()&fs.ModeSymlink != 0:
				e.typ = TypeSymlink
				if e.link, err = c.root.Readlink(rel); err != nil {
					return fmt.Errorf("build context: %w", err)
				}
			default:
				e.typ = typeOther
			}
			entries[rel] = e
			if len(entries) > c.limits.MaxFiles {
				return fmt.Errorf("build context %s holds more than %d files and directories after .dockerignore: list what the build does not need in .dockerignore, or raise the limit", c.dir, c.limits.MaxFiles)
			}
		}
	}
	c.entries = entries
	c.paths = make([]string, 0, len(entries))
	for p := range entries {
		c.paths = append(c.paths, p)
	}
	slices.Sort(c.paths)
	return nil
}

// readDirNames reads a directory's names in batches, so a huge directory
// fails at the limit instead of filling memory first.
func (c *Context) readDirNames(dir string) ([]string, error) {
	f, err := c.root.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("build context: %w", err)
	}
	defer f.Close()
	var names []string
	for {
		batch, err := f.Readdirnames(1024)
		names = append(names, batch...)
		if len(names) > c.limits.MaxFiles {
			return nil, fmt.Errorf("build context directory %s holds more than %d entries: list it in .dockerignore, or raise the limit", path.Join(c.dir, dir), c.limits.MaxFiles)
		}
		if errors.Is(err, io.EOF) {
			return names, nil
		}
		if err != nil {
			return nil, fmt.Errorf("build context: read %s: %w", dir, err)
		}
	}
}

// errOutside is a source path that leaves the context.
var errOutside = errors.New("it leads outside the build context")

// cleanSource turns a COPY/ADD source into a slash path relative to the
// context root ("." for the root). An absolute source means the context's
// root, as in Docker; ".." that climbs above the root is refused.
func cleanSource(src string) (string, error) {
	if !path.IsAbs(src) {
		if c := path.Clean(src); c == ".." || strings.HasPrefix(c, "../") {
			return "", errOutside
		}
	}
	rel := strings.TrimPrefix(path.Clean("/"+src), "/")
	if rel == "" {
		rel = "."
	}
	return rel, nil
}

// follow resolves the symlinks along rel within the context: every
// directory on the way, and the last name too when last is set. A link
// that points outside (an absolute target, or ".." above the root) is never
// followed: on the way it is an error, as the last name it stays a link.
func (c *Context) follow(rel string, last bool) (string, error) {
	if rel == "." {
		return rel, nil
	}
	parts := strings.Split(rel, "/")
	cur, hops := "", 0
	for i := 0; i < len(parts); i++ {
		next := path.Join(cur, parts[i])
		e := c.entries[next]
		if e == nil || e.typ != TypeSymlink || (i == len(parts)-1 && !last) {
			cur = next
			continue
		}
		if hops++; hops > maxLinkHops {
			return "", fmt.Errorf("%s: too many levels of symbolic links", rel)
		}
		target := path.Clean(path.Join(cur, e.link))
		if path.IsAbs(e.link) || target == ".." || strings.HasPrefix(target, "../") {
			if i == len(parts)-1 {
				return next, nil
			}
			return "", fmt.Errorf("%s goes through the symlink %s -> %s: %w", rel, next, e.link, errOutside)
		}
		rest := parts[i+1:]
		parts = append(strings.Split(target, "/"), rest...)
		if target == "." {
			parts = rest
		}
		cur, i = "", -1
	}
	if cur == "" {
		return ".", nil
	}
	return cur, nil
}

// match is one source found: the entry it names and, for a directory,
// everything under it.
type match struct {
	name  string // the last element of the path asked for
	top   *entry // nil for the root
	under []*entry
}

// resolve finds what a COPY/ADD source names: a path, or a pattern with
// *, ? or [ ] (path.Match, one path element per *).
func (c *Context) resolve(src string) ([]match, error) {
	if err := c.walk(); err != nil {
		return nil, err
	}
	rel, err := cleanSource(src)
	if err != nil {
		return nil, fmt.Errorf("source %q: %w", src, err)
	}
	if !hasMeta(rel) {
		p, err := c.follow(rel, true)
		if err != nil {
			return nil, fmt.Errorf("source %q: %w", src, err)
		}
		m, ok := c.matchPath(p)
		m.name = path.Base(rel)
		if !ok {
			if c.ignored(rel) {
				return nil, fmt.Errorf("source %q is excluded by %s: remove its pattern there, or copy something else", src, c.IgnoreFile)
			}
			return nil, fmt.Errorf("source %q is not in the build context %s", src, c.dir)
		}
		return []match{m}, nil
	}
	if _, err := path.Match(rel, ""); err != nil {
		return nil, fmt.Errorf("source %q: bad pattern: %w", src, err)
	}
	var ms []match
	for _, p := range c.paths {
		if ok, _ := path.Match(rel, p); ok {
			m, _ := c.matchPath(p)
			m.name = path.Base(p)
			ms = append(ms, m)
		}
	}
	if len(ms) == 0 {
		return nil, fmt.Errorf("source %q matches no file in the build context %s (after %s)", src, c.dir, cmpOr(c.IgnoreFile, ".dockerignore"))
	}
	return ms, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func hasMeta(p string) bool { return strings.ContainsAny(p, `*?[\`) }

// matchPath is the entry at p (walked) and, for a directory, its contents.
func (c *Context) matchPath(p string) (match, bool) {
	var m match
	prefix := ""
	if p != "." {
		m.top = c.entries[p]
		if m.top != nil && m.top.typ != TypeDir {
			return m, true
		}
		prefix = p + "/"
	}
	i, _ := slices.BinarySearch(c.paths, prefix)
	for ; i < len(c.paths) && strings.HasPrefix(c.paths[i], prefix); i++ {
		m.under = append(m.under, c.entries[c.paths[i]])
	}
	if m.top == nil && p != "." {
		// An ignored directory a "!" pattern brings files back under.
		if len(m.under) == 0 {
			return m, false
		}
		m.top = &entry{path: p, typ: TypeDir, mode: 0o755}
	}
	return m, true
}

// list counts n entries handed to a step against 4 × MaxFiles.
func (c *Context) list(n int) error {
	c.listed += n
	if c.listed > 4*c.limits.MaxFiles {
		return fmt.Errorf("the COPY and ADD steps together copy more than %d files and directories from the build context (4 × its limit of %d): copy less, or raise the limit", 4*c.limits.MaxFiles, c.limits.MaxFiles)
	}
	return nil
}

// hash fills in e's digest, reading it once through the confined root and
// counting it against MaxBytes.
func (c *Context) hash(e *entry) error {
	if e.digest != "" {
		return nil
	}
	if e.size > c.limits.MaxBytes-c.read {
		return fmt.Errorf("%s (%d bytes) takes the files COPY and ADD read past the build context's limit of %d bytes: list it in .dockerignore, or raise the limit", e.path, e.size, c.limits.MaxBytes)
	}
	f, err := c.openRegular(e.path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	// One byte more than was listed shows a file that grew.
	n, err := io.Copy(h, io.LimitReader(f, e.size+1))
	if err != nil {
		return fmt.Errorf("read %s: %w", e.path, err)
	}
	if n != e.size {
		return fmt.Errorf("%s changed while the build context was read (%d bytes, then %d): try again once nothing writes to it", e.path, e.size, n)
	}
	c.read += n
	e.digest = "sha256:" + hex.EncodeToString(h.Sum(nil))
	return nil
}

// openRegular opens a context file that was listed as regular, refusing it
// if it has since become something else (a FIFO would block, a link lead
// elsewhere).
func (c *Context) openRegular(rel string) (*os.File, error) {
	f, err := c.root.OpenFile(rel, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s in the build context: %w", rel, err)
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s in the build context is no longer a regular file", rel)
	}
	return f, nil
}

// OpenLocal opens a file in the build context for reading, confined to it
// (a symlink that leads out is refused), as for FROM ./image.tar.
func (c *Context) OpenLocal(rel string) (*os.File, error) {
	f, err := c.root.Open(rel)
	if err != nil {
		return nil, fmt.Errorf("open %s in the build context: %w", rel, err)
	}
	return f, nil
}

// FS reads the build context, confined to it (os.Root: no symlink leads
// out), as for FROM ./layout-dir.
func (c *Context) FS() fs.FS { return c.root.FS() }
