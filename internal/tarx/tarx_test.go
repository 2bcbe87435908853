package tarx

import (
	"archive/tar"
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

func openRoot(t testing.TB, dir string) *os.Root {
	t.Helper()
	r, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// describe lists a tree as "name type mode size target" lines, with mtimes
// of files and directories, for comparing two trees.
func describe(t *testing.T, dir string) string {
	t.Helper()
	var lines []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		fi, _ := os.Lstat(p)
		line := rel + " " + fi.Mode().String()
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			line += " -> " + target
		case fi.Mode().IsRegular():
			b, _ := os.ReadFile(p)
			line += " " + string(b) + " " + fi.ModTime().UTC().Format(time.RFC3339Nano)
		default:
			line += " " + fi.ModTime().UTC().Format(time.RFC3339Nano)
		}
		lines = append(lines, line)
		return nil
	})
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// A tree written and extracted elsewhere comes out the same: contents,
// modes (setuid and setgid dropped), symlinks, hard links, empty and
// read-only directories, mtimes to the nanosecond.
func TestRoundTrip(t *testing.T) {
	src := t.TempDir()
	when := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(src+"/a/b/c", 0o755))
	must(os.Mkdir(src+"/empty", 0o700))
	must(os.Mkdir(src+"/ro", 0o755))
	must(os.WriteFile(src+"/ro/inside", []byte("in a read-only dir"), 0o644))
	must(os.WriteFile(src+"/a/b/c/deep.txt", []byte("deep"), 0o600))
	must(os.WriteFile(src+"/run.sh", []byte("#!/bin/sh\n"), 0o755))
	must(os.WriteFile(src+"/suid", []byte("s"), 0o755))
	must(os.Chmod(src+"/suid", 0o755|os.ModeSetuid))
	must(os.Mkdir(src+"/tmp", 0o777))
	must(os.Chmod(src+"/tmp", 0o777|os.ModeSticky))
	must(os.WriteFile(src+"/"+strings.Repeat("n", 200)+"-long-ü.txt", []byte("long name"), 0o644))
	must(os.Symlink("a/b/c/deep.txt", src+"/rel-link"))
	must(os.Symlink("/etc/passwd", src+"/abs-link"))
	must(os.Link(src+"/run.sh", src+"/a/hard"))
	must(syscall.Mkfifo(src+"/fifo", 0o644))
	for _, p := range []string{"a/b/c/deep.txt", "run.sh", "a/b/c", "empty", "ro/inside"} {
		must(os.Chtimes(src+"/"+p, when, when))
	}
	must(os.Chmod(src+"/ro", 0o555))
	must(os.Chtimes(src+"/ro", when, when))

	var buf bytes.Buffer
	var skipped []string
	n, err := Write(&buf, openRoot(t, src), func(name string, _ fs.FileMode) { skipped = append(skipped, name) })
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	if n.Files != 6 || n.Dirs != 6 || n.Symlinks != 2 || len(skipped) != 1 || skipped[0] != "fifo" {
		t.Errorf("Write counted %+v, skipped %v; want 6 files (one a hard link), 6 dirs, 2 symlinks, the fifo skipped", n, skipped)
	}
	dst := t.TempDir()
	got, err := Extract(bytes.NewReader(buf.Bytes()), openRoot(t, dst), Limits{})
	if err != nil {
		t.Fatalf("Extract: %v", err)
	}
	if got != n {
		t.Errorf("Extract counted %+v; Write %+v", got, n)
	}
	os.Remove(src + "/fifo")
	os.Chmod(src+"/suid", 0o755) // what the extractor keeps
	if want, have := describe(t, src), describe(t, dst); want != have {
		t.Errorf("extracted tree differs\nwant:\n%s\nhave:\n%s", want, have)
	}
	a, _ := os.Stat(dst + "/run.sh")
	b, _ := os.Stat(dst + "/a/hard")
	if !os.SameFile(a, b) {
		t.Errorf("a/hard is not a hard link of run.sh after extraction")
	}
	if ents, _ := os.ReadDir(dst); len(ents) == 0 {
		t.Fatal("nothing extracted")
	}
	// Extracting again over the tree replaces files and keeps the rest.
	if _, err := Extract(bytes.NewReader(buf.Bytes()), openRoot(t, dst), Limits{}); err != nil {
		t.Fatalf("Extract over itself: %v", err)
	}
	if want, have := describe(t, src), describe(t, dst); want != have {
		t.Errorf("tree after a second extraction differs\nwant:\n%s\nhave:\n%s", want, have)
	}
	os.Chmod(dst+"/ro", 0o755)
	os.Chmod(src+"/ro", 0o755)
}

// entry is one header of a hand-made archive.
type entry struct {
	name, link string
	typ        byte
	body       string
	mode       int64
}

func archive(t testing.TB, ents ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		mode := e.mode
		if mode == 0 {
			mode = 0o644
		}
		hdr := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: mode, Size: int64(len(e.body)), Format: tar.FormatPAX}
		if e.typ != tar.TypeReg {
			hdr.Size = 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatalf("header %q: %v", e.name, err)
		}
		if hdr.Size > 0 {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	return buf.Bytes()
}

// Hostile archives are refused with the entry and the reason, and nothing
// lands outside the directory.
func TestHostileArchives(t *testing.T) {
	reg, dir, sym, lnk := byte(tar.TypeReg), byte(tar.TypeDir), byte(tar.TypeSymlink), byte(tar.TypeLink)
	tests := []struct {
		name    string
		ents    []entry
		want    error
		written int64 // files written before the refusal
	}{
		{"dot-dot", []entry{{name: "ok", typ: reg, body: "x"}, {name: "../x", typ: reg, body: "pwned"}}, ErrUnsafe, 1},
		{"dot-dot inside", []entry{{name: "a/../../x", typ: reg, body: "pwned"}}, ErrUnsafe, 0},
		{"absolute", []entry{{name: "/tmp/x", typ: reg, body: "pwned"}}, ErrUnsafe, 0},
		{"file through a symlink out", []entry{{name: "evil", link: "OUTSIDE", typ: sym}, {name: "evil/x", typ: reg, body: "pwned"}}, ErrUnsafe, 0},
		{"file through a relative symlink up", []entry{{name: "up", link: "../../../../../../..", typ: sym}, {name: "up/tmp/x", typ: reg, body: "pwned"}}, ErrUnsafe, 0},
		{"dir through a symlink out", []entry{{name: "evil", link: "OUTSIDE", typ: sym}, {name: "evil/d/", typ: dir}}, ErrUnsafe, 0},
		{"hard link out", []entry{{name: "h", link: "../secret", typ: lnk}}, ErrUnsafe, 0},
		{"hard link through a symlink out", []entry{{name: "evil", link: "OUTSIDE", typ: sym}, {name: "h", link: "evil/secret", typ: lnk}}, ErrUnsafe, 0},
		{"hard link to nothing", []entry{{name: "h", link: "missing", typ: lnk}}, ErrRefused, 0},
		{"hard link to a dir", []entry{{name: "d/", typ: dir}, {name: "h", link: "d", typ: lnk}}, ErrRefused, 0},
		{"char device", []entry{{name: "null", typ: tar.TypeChar}}, ErrRefused, 0},
		{"block device", []entry{{name: "sda", typ: tar.TypeBlock}}, ErrRefused, 0},
		{"fifo", []entry{{name: "p", typ: tar.TypeFifo}}, ErrRefused, 0},
		{"file over a dir", []entry{{name: "d/", typ: dir}, {name: "d", typ: reg, body: "x"}}, ErrConflict, 0},
		{"dir over a file", []entry{{name: "f", typ: reg, body: "x"}, {name: "f/", typ: dir}}, ErrConflict, 1},
		{"file under a file", []entry{{name: "f", typ: reg, body: "x"}, {name: "f/g", typ: reg, body: "y"}}, ErrConflict, 1},
		{"NUL in name", []entry{{name: "a\x00b", typ: reg}}, nil, 0}, // tar itself refuses to write it
		{"long element", []entry{{name: strings.Repeat("e", 256), typ: reg, body: "x"}}, ErrLimit, 0},
		{"long name", []entry{{name: strings.Repeat("d/", 2100) + "f", typ: reg, body: "x"}}, ErrLimit, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := t.TempDir()
			outside := filepath.Join(base, "outside")
			os.Mkdir(outside, 0o755)
			os.WriteFile(outside+"/secret", []byte("secret"), 0o644)
			dst := filepath.Join(base, "dst", "in")
			os.MkdirAll(dst, 0o755)
			for i := range tt.ents {
				tt.ents[i].link = strings.ReplaceAll(tt.ents[i].link, "OUTSIDE", outside)
			}
			if tt.want == nil {
				var buf bytes.Buffer
				tw := tar.NewWriter(&buf)
				if err := tw.WriteHeader(&tar.Header{Name: tt.ents[0].name, Typeflag: reg}); err == nil {
					t.Fatalf("archive/tar wrote a name with NUL; the extractor must refuse it")
				}
				return
			}
			n, err := Extract(bytes.NewReader(archive(t, tt.ents...)), openRoot(t, dst), Limits{})
			var ee *EntryError
			if !errors.Is(err, tt.want) || !errors.As(err, &ee) || ee.Index == 0 {
				t.Fatalf("Extract: %v; want %v naming the entry", err, tt.want)
			}
			if n.Files != tt.written {
				t.Errorf("counted %d files written before the refusal; want %d", n.Files, tt.written)
			}
			if ents, _ := os.ReadDir(outside); len(ents) != 1 {
				t.Errorf("outside gained entries: %v", ents)
			}
			if b, _ := os.ReadFile(outside + "/secret"); string(b) != "secret" {
				t.Errorf("outside/secret now holds %q", b)
			}
			if _, err := os.Stat(filepath.Join(base, "dst", "x")); err == nil {
				t.Errorf("a file landed beside the directory")
			}
			filepath.WalkDir(dst, func(p string, d fs.DirEntry, err error) error {
				if strings.HasPrefix(d.Name(), TempPrefix) {
					t.Errorf("temporary file left: %s", p)
				}
				return nil
			})
		})
	}
}

// A symlink may point anywhere (it is stored, not followed), and an
// archive may replace a symlink with a file without writing through it.
func TestSymlinksStoredNotFollowed(t *testing.T) {
	base := t.TempDir()
	os.WriteFile(base+"/secret", []byte("secret"), 0o644)
	dst := base + "/dst"
	os.Mkdir(dst, 0o755)
	os.Symlink(base+"/secret", dst+"/link")
	data := archive(t,
		entry{name: "abs", link: "/etc/passwd", typ: tar.TypeSymlink},
		entry{name: "link", typ: tar.TypeReg, body: "replaced"},
		entry{name: "inner", link: "sub", typ: tar.TypeSymlink},
		entry{name: "sub/", typ: tar.TypeDir},
		entry{name: "inner/f", typ: tar.TypeReg, body: "through an inner link"},
	)
	n, err := Extract(bytes.NewReader(data), openRoot(t, dst), Limits{})
	if err != nil {
		t.Fatalf("Extract: %v", err)
	}
	if n.Symlinks != 2 || n.Files != 2 || n.Dirs != 1 {
		t.Errorf("counts %+v", n)
	}
	if target, _ := os.Readlink(dst + "/abs"); target != "/etc/passwd" {
		t.Errorf("abs -> %q", target)
	}
	if b, _ := os.ReadFile(base + "/secret"); string(b) != "secret" {
		t.Errorf("the file written over a symlink went through it: secret now %q", b)
	}
	if fi, _ := os.Lstat(dst + "/link"); !fi.Mode().IsRegular() {
		t.Errorf("link is %v; want a regular file", fi.Mode())
	}
	if b, _ := os.ReadFile(dst + "/sub/f"); string(b) != "through an inner link" {
		t.Errorf("sub/f = %q", b)
	}
}

func TestLimitsAndFormat(t *testing.T) {
	dst := t.TempDir()
	ents := []entry{{name: "a", typ: tar.TypeReg}, {name: "b", typ: tar.TypeReg}, {name: "c", typ: tar.TypeReg}}
	if _, err := Extract(bytes.NewReader(archive(t, ents...)), openRoot(t, dst), Limits{MaxEntries: 2}); !errors.Is(err, ErrLimit) {
		t.Errorf("3 entries with MaxEntries 2: %v", err)
	}
	if _, err := Extract(strings.NewReader(strings.Repeat("not a tar", 100)), openRoot(t, dst), Limits{}); !errors.Is(err, ErrFormat) {
		t.Errorf("garbage: %v", err)
	}
	full := archive(t, entry{name: "big", typ: tar.TypeReg, body: strings.Repeat("x", 5000)})
	if _, err := Extract(bytes.NewReader(full[:2048]), openRoot(t, dst), Limits{}); !errors.Is(err, ErrFormat) {
		t.Errorf("archive cut inside a file: %v", err)
	}
	if _, err := os.Stat(dst + "/big"); err == nil {
		t.Errorf("a cut file was left under its name")
	}
	if n, err := Extract(strings.NewReader(""), openRoot(t, dst), Limits{}); err != nil || n != (Counts{}) {
		t.Errorf("empty stream: %+v %v; want nothing done", n, err)
	}
}

// Extraction never panics, never writes outside its directory and leaves
// no temporary files, whatever the archive.
func FuzzExtract(f *testing.F) {
	f.Add(archive(f, entry{name: "a/", typ: tar.TypeDir}, entry{name: "a/f", typ: tar.TypeReg, body: "x"}))
	f.Add(archive(f, entry{name: "l", link: "../..", typ: tar.TypeSymlink}, entry{name: "l/x", typ: tar.TypeReg, body: "x"}))
	f.Add(archive(f, entry{name: "f", typ: tar.TypeReg, body: "x"}, entry{name: "h", link: "f", typ: tar.TypeLink}))
	f.Add(archive(f, entry{name: "../x", typ: tar.TypeReg}))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, b []byte) {
		base, err := os.MkdirTemp("", "tarx-fuzz-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(base)
		dst := filepath.Join(base, "dst")
		os.Mkdir(dst, 0o755)
		root, err := os.OpenRoot(dst)
		if err != nil {
			t.Fatal(err)
		}
		defer root.Close()
		Extract(bytes.NewReader(b), root, Limits{MaxEntries: 100})
		ents, _ := os.ReadDir(base)
		if len(ents) != 1 {
			t.Fatalf("entries beside the directory: %v", ents)
		}
		filepath.WalkDir(dst, func(p string, d fs.DirEntry, err error) error {
			if err == nil && strings.HasPrefix(d.Name(), TempPrefix) {
				t.Fatalf("temporary file left: %s", p)
			}
			if err == nil && d.IsDir() {
				os.Chmod(p, 0o755) // so that RemoveAll can empty it
			}
			return nil
		})
	})
}
