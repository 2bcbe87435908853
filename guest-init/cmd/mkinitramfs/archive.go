package main

import (
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/u-root/u-root/pkg/cpio"
)

// fileSpec is one --file SRC:DEST:MODE argument.
type fileSpec struct {
	src  string // path on the host
	dest string // path in the archive, without a leading slash
	mode uint64 // permission bits, at most 07777
}

// dirSpec is one --dir PATH:MODE argument.
type dirSpec struct {
	name string // path in the archive, without a leading slash
	mode uint64 // permission bits, at most 07777
}

// devSpec is one --dev NAME:TYPE:MAJOR:MINOR argument; NAME is under dev/.
type devSpec struct {
	name         string // path in the archive, e.g. "dev/console"
	block        bool   // 'b' (block) rather than 'c' (character)
	major, minor uint64
}

// consoleDev is always in the archive: the kernel opens /dev/console as
// init's stdin, stdout and stderr, and devtmpfs is not mounted yet then.
var consoleDev = devSpec{name: "dev/console", major: 5, minor: 1}

// parseFileSpec parses SRC:DEST:MODE, e.g. "build/init:/init:0755". SRC may
// itself contain colons; DEST and MODE may not.
func parseFileSpec(s string) (fileSpec, error) {
	i := strings.LastIndex(s, ":")
	if i < 0 {
		return fileSpec{}, fmt.Errorf("--file %q: want SRC:DEST:MODE, e.g. build/init:/init:0755", s)
	}
	modeStr := s[i+1:]
	j := strings.LastIndex(s[:i], ":")
	if j < 0 {
		return fileSpec{}, fmt.Errorf("--file %q: want SRC:DEST:MODE, e.g. build/init:/init:0755", s)
	}
	src, destStr := s[:j], s[j+1:i]
	if src == "" {
		return fileSpec{}, fmt.Errorf("--file %q: empty SRC", s)
	}
	dest, err := archivePath(destStr)
	if err != nil {
		return fileSpec{}, fmt.Errorf("--file %q: %w", s, err)
	}
	mode, err := strconv.ParseUint(modeStr, 8, 32)
	if err != nil || mode > 0o7777 {
		return fileSpec{}, fmt.Errorf("--file %q: MODE %q is not octal permission bits such as 0755", s, modeStr)
	}
	return fileSpec{src: src, dest: dest, mode: mode}, nil
}

// parseDirSpec parses PATH:MODE, e.g. "proc:0555" or "/tmp:1777": an
// empty directory, such as a mount point, that saves init a mkdir.
func parseDirSpec(s string) (dirSpec, error) {
	i := strings.LastIndex(s, ":")
	if i < 0 {
		return dirSpec{}, fmt.Errorf("--dir %q: want PATH:MODE, e.g. proc:0555", s)
	}
	name, err := archivePath(s[:i])
	if err != nil {
		return dirSpec{}, fmt.Errorf("--dir %q: %w", s, err)
	}
	mode, err := strconv.ParseUint(s[i+1:], 8, 32)
	if err != nil || mode > 0o7777 {
		return dirSpec{}, fmt.Errorf("--dir %q: MODE %q is not octal permission bits such as 0755", s, s[i+1:])
	}
	return dirSpec{name: name, mode: mode}, nil
}

// parseDevSpec parses NAME:TYPE:MAJOR:MINOR, e.g. "console:c:5:1" for
// dev/console; TYPE is c (character) or b (block).
func parseDevSpec(s string) (devSpec, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 4 {
		return devSpec{}, fmt.Errorf("--dev %q: want NAME:TYPE:MAJOR:MINOR, e.g. console:c:5:1", s)
	}
	name, err := archivePath("dev/" + strings.TrimPrefix(strings.TrimPrefix(parts[0], "/"), "dev/"))
	if err != nil || name == "dev" {
		return devSpec{}, fmt.Errorf("--dev %q: NAME %q is not a device name under /dev", s, parts[0])
	}
	var block bool
	switch parts[1] {
	case "c":
	case "b":
		block = true
	default:
		return devSpec{}, fmt.Errorf("--dev %q: TYPE %q must be c (character) or b (block)", s, parts[1])
	}
	major, err := strconv.ParseUint(parts[2], 10, 32)
	if err != nil {
		return devSpec{}, fmt.Errorf("--dev %q: MAJOR %q is not a decimal number", s, parts[2])
	}
	minor, err := strconv.ParseUint(parts[3], 10, 32)
	if err != nil {
		return devSpec{}, fmt.Errorf("--dev %q: MINOR %q is not a decimal number", s, parts[3])
	}
	return devSpec{name: name, block: block, major: major, minor: minor}, nil
}

// archivePath turns a guest path ("/init", "bin/agent") into the relative,
// clean form newc archives use, refusing anything that would leave the root.
func archivePath(p string) (string, error) {
	if p == "" {
		return "", fmt.Errorf("empty archive path")
	}
	for _, el := range strings.Split(p, "/") {
		if el == ".." {
			return "", fmt.Errorf("archive path %q contains ..", p)
		}
	}
	clean := path.Clean(strings.TrimLeft(p, "/"))
	if clean == "." || clean == "" {
		return "", fmt.Errorf("archive path %q names the root itself", p)
	}
	return clean, nil
}

// records builds the archive contents: every directory, file and device,
// their parent directories (0755 unless given), dev/ and dev/console,
// sorted by name so parents come first. Ownership is root, mtimes are zero
// and inode numbers follow the order, so the same inputs always give the
// same bytes.
func records(dirs []dirSpec, files []fileSpec, devs []devSpec) ([]cpio.Record, error) {
	byName := map[string]cpio.Record{}
	addDirs := func(p string) {
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			if _, ok := byName[d]; !ok {
				byName[d] = cpio.Directory(d, 0o755)
			}
		}
	}

	// Given directories first: their modes win over the default parents'.
	givenDir := map[string]bool{}
	for _, d := range dirs {
		if givenDir[d.name] {
			return nil, fmt.Errorf("--dir /%s is given twice", d.name)
		}
		givenDir[d.name] = true
		byName[d.name] = cpio.Directory(d.name, d.mode)
		addDirs(d.name)
	}
	for _, d := range append([]devSpec{consoleDev}, devs...) {
		mode := uint64(cpio.S_IFCHR)
		if d.block {
			mode = cpio.S_IFBLK
		}
		if r, ok := byName[d.name]; ok && r.Mode&cpio.S_IFMT == cpio.S_IFDIR {
			return nil, fmt.Errorf("device /%s is also given as a --dir", d.name)
		}
		// A later --dev with the same name replaces the default console.
		byName[d.name] = cpio.Record{Info: cpio.Info{
			Name: d.name, Mode: mode | 0o600, Rmajor: d.major, Rminor: d.minor,
		}}
		addDirs(d.name)
	}

	seen := map[string]string{}
	for _, f := range files {
		if prev, ok := seen[f.dest]; ok {
			return nil, fmt.Errorf("%s and %s both go to /%s; give each destination once", prev, f.src, f.dest)
		}
		if _, ok := byName[f.dest]; ok {
			return nil, fmt.Errorf("%s goes to /%s, which is already a device or directory in the archive", f.src, f.dest)
		}
		seen[f.dest] = f.src
		data, err := os.ReadFile(f.src)
		if err != nil {
			return nil, fmt.Errorf("read %s for /%s: %w", f.src, f.dest, err)
		}
		byName[f.dest] = cpio.StaticRecord(data, cpio.Info{Name: f.dest, Mode: cpio.S_IFREG | f.mode})
		addDirs(f.dest)
	}
	for name := range byName {
		// A parent must be a directory, not a file or device.
		for d := path.Dir(name); d != "."; d = path.Dir(d) {
			if byName[d].Mode&cpio.S_IFMT != cpio.S_IFDIR {
				return nil, fmt.Errorf("/%s needs /%s to be a directory, but it is a file or device", name, d)
			}
		}
	}

	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	sort.Strings(names)
	recs := make([]cpio.Record, 0, len(names))
	for i, n := range names {
		r := cpio.MakeReproducible(byName[n])
		r.Ino = uint64(i + 1)
		r.NLink = 1 // no hard links; the kernel ignores it for the rest
		recs = append(recs, r)
	}
	return recs, nil
}

// writeArchive writes recs and the trailer as a newc archive.
func writeArchive(w io.Writer, recs []cpio.Record) error {
	cw := cpio.Newc.Writer(w)
	if err := cpio.WriteRecords(cw, recs); err != nil {
		return err
	}
	return cpio.WriteTrailer(cw)
}
