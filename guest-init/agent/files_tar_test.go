package agent

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sietch-vm/sietch/wire/agentproto"
)

func TestRename(t *testing.T) {
	env := startAgent(t, Config{})
	ctx := testCtx(t)
	r := env.root
	os.MkdirAll(r+"/d/sub", 0o755)
	os.MkdirAll(r+"/other", 0o755)
	os.WriteFile(r+"/a", []byte("a"), 0o600)
	os.WriteFile(r+"/b", []byte("b"), 0o644)
	os.WriteFile(r+"/d/sub/f", []byte("f"), 0o644)

	// A file onto a file replaces it, keeping the mover's mode.
	if err := env.c.Rename(ctx, r+"/a", r+"/b"); err != nil {
		t.Fatalf("Rename a over b: %v", err)
	}
	if got, _ := os.ReadFile(r + "/b"); string(got) != "a" {
		t.Errorf("b holds %q after the rename; want a's bytes", got)
	}
	if _, err := os.Stat(r + "/a"); !os.IsNotExist(err) {
		t.Errorf("a still exists: %v", err)
	}
	// A directory moves with its tree.
	if err := env.c.Rename(ctx, r+"/d", r+"/other/d2"); err != nil {
		t.Fatalf("Rename a directory: %v", err)
	}
	if got, _ := os.ReadFile(r + "/other/d2/sub/f"); string(got) != "f" {
		t.Errorf("the moved tree lost its file: %q", got)
	}

	var e *Error
	tests := []struct {
		name, from, to string
		status         int
		says           string
	}{
		{"file over a directory", r + "/b", r + "/other", 409, "is a directory"},
		{"directory over a file", r + "/other/d2", r + "/b", 409, "not a directory"},
		{"directory over an empty directory", r + "/other/d2/sub", r + "/other", 409, "is a directory"},
		{"directory into itself", r + "/other", r + "/other/d2/x", 400, "into itself"},
		{"missing source", r + "/nope", r + "/x", 404, "no such file"},
		{"missing target parent", r + "/b", r + "/no/dir/x", 404, "no such file"},
		{"root", r, r + "/x", 403, "root"},
		{"onto the root", r + "/b", r, 403, "root"},
		{"escape by ..", r + "/b", r + "/../b", 403, ".."},
		{"outside the root", r + "/b", "/tmp/stolen", 403, "outside"},
		{"relative", "b", r + "/c", 400, "absolute"},
	}
	for _, tt := range tests {
		err := env.c.Rename(ctx, tt.from, tt.to)
		if !errors.As(err, &e) || e.Status != tt.status || !strings.Contains(e.Message, tt.says) {
			t.Errorf("%s: Rename %s %s: %v; want %d saying %q", tt.name, tt.from, tt.to, err, tt.status, tt.says)
		}
	}
	if got, _ := os.ReadFile(r + "/b"); string(got) != "a" {
		t.Errorf("refused renames changed b: %q", got)
	}
	// Through a symlink that leaves the root: refused, nothing moves out.
	outside := t.TempDir()
	os.Symlink(outside, r+"/out")
	if err := env.c.Rename(ctx, r+"/b", r+"/out/b"); !errors.As(err, &e) || e.Status != 403 {
		t.Errorf("rename through a symlink out of the root: %v; want 403", err)
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Errorf("a file left the root: %v", ents)
	}
	// The body is strict.
	st, _, body := raw(t, env, "POST", "/v1/rename", `{"from":"`+r+`/b","to":"`+r+`/c","force":true}`, nil)
	if st != 400 || body.Code != "unknown_field" {
		t.Errorf("rename with an unknown field: %d %+v", st, body)
	}
}

// tree lists a directory as sorted "name mode size" lines, with symlink
// targets and file contents.
func tree(t *testing.T, dir string) string {
	t.Helper()
	var lines []string
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		line := rel + " " + fi.Mode().String()
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			line += " -> " + target
		case fi.Mode().IsRegular():
			b, _ := os.ReadFile(p)
			line += " " + sha(b)[:12] + " " + fi.ModTime().UTC().Format(time.RFC3339Nano)
		}
		lines = append(lines, line)
		return nil
	})
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// A tree goes out as tar and back in elsewhere unchanged: files, modes,
// empty directories, symlinks, mtimes; devices stay behind.
func TestTarRoundTrip(t *testing.T) {
	env := startAgent(t, Config{})
	ctx := testCtx(t)
	r := env.root
	src := r + "/src"
	os.MkdirAll(src+"/a/b", 0o755)
	os.Mkdir(src+"/empty", 0o700)
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	os.WriteFile(src+"/a/b/big.bin", big, 0o640)
	os.WriteFile(src+"/run.sh", []byte("#!/bin/sh\necho hi\n"), 0o755)
	os.Symlink("a/b/big.bin", src+"/link")
	when := time.Date(2023, 3, 4, 5, 6, 7, 0, time.UTC)
	os.Chtimes(src+"/run.sh", when, when)
	if err := syscall.Mkfifo(src+"/fifo", 0o644); err != nil {
		t.Fatal(err)
	}

	var archive bytes.Buffer
	if err := env.c.DownloadTar(ctx, src, &archive); err != nil {
		t.Fatalf("DownloadTar: %v", err)
	}
	// Names are relative to the directory, and the fifo is not there.
	var names []string
	tr := tar.NewReader(bytes.NewReader(archive.Bytes()))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("reading the archive: %v", err)
		}
		names = append(names, hdr.Name)
	}
	if got := strings.Join(names, " "); got != "a/ a/b/ a/b/big.bin empty/ link run.sh" {
		t.Errorf("archive names: %s", got)
	}
	res, err := env.c.UploadTar(ctx, r+"/copy/of/src", bytes.NewReader(archive.Bytes()))
	if err != nil {
		t.Fatalf("UploadTar: %v", err)
	}
	if want := (agentproto.TarResult{Files: 2, Dirs: 3, Symlinks: 1, Bytes: int64(len(big)) + 18}); res != want {
		t.Errorf("UploadTar counted %+v; want %+v", res, want)
	}
	os.Remove(src + "/fifo")
	if want, got := tree(t, src), tree(t, r+"/copy/of/src"); want != got {
		t.Errorf("copied tree differs\nwant:\n%s\ngot:\n%s", want, got)
	}

	var e *Error
	if err := env.c.DownloadTar(ctx, src+"/run.sh", io.Discard); !errors.As(err, &e) || e.Status != 400 || !strings.Contains(e.Message, "not a directory") {
		t.Errorf("tar of a file: %v; want 400 not a directory", err)
	}
	if err := env.c.DownloadTar(ctx, r+"/missing", io.Discard); !errors.As(err, &e) || e.Status != 404 {
		t.Errorf("tar of a missing directory: %v; want 404", err)
	}
	if _, err := env.c.UploadTar(ctx, src+"/run.sh", bytes.NewReader(archive.Bytes())); !errors.As(err, &e) || e.Status != 409 {
		t.Errorf("tar into a file: %v; want 409", err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(archive.Bytes())
	zw.Close()
	if _, err := env.c.UploadTar(ctx, r+"/gz", &gz); !errors.As(err, &e) || e.Status != 400 || !strings.Contains(e.Message, "gunzip") {
		t.Errorf("gzip body: %v; want 400 saying to gunzip", err)
	}
}

// makeTar builds an archive from (name, type, body-or-link) triples.
func makeTar(t *testing.T, ents ...[3]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		hdr := &tar.Header{Name: e[0], Typeflag: e[1][0], Mode: 0o644, Format: tar.FormatPAX}
		switch hdr.Typeflag {
		case tar.TypeReg:
			hdr.Size = int64(len(e[2]))
		case tar.TypeSymlink, tar.TypeLink:
			hdr.Linkname = e[2]
		case tar.TypeChar:
			hdr.Devmajor, hdr.Devminor = 1, 3
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if hdr.Typeflag == tar.TypeReg {
			tw.Write([]byte(e[2]))
		}
	}
	tw.Close()
	return buf.Bytes()
}

// Archives that try to write outside the directory are refused with the
// entry named, and nothing outside changes.
func TestTarUploadEscapes(t *testing.T) {
	env := startAgent(t, Config{})
	ctx := testCtx(t)
	r := env.root
	outside := t.TempDir()
	os.WriteFile(outside+"/secret", []byte("secret"), 0o644)
	reg, sym, lnk, chr := string(tar.TypeReg), string(tar.TypeSymlink), string(tar.TypeLink), string(tar.TypeChar)
	tests := []struct {
		name   string
		ents   [][3]string
		status int
		says   string
	}{
		{"dot-dot", [][3]string{{"ok", reg, "fine"}, {"../escaped", reg, "pwned"}}, 403, `entry 2 "../escaped"`},
		{"absolute", [][3]string{{outside + "/abs", reg, "pwned"}}, 403, "absolute"},
		{"symlink then a file through it", [][3]string{{"evil", sym, outside}, {"evil/secret", reg, "pwned"}}, 403, "through a symlink"},
		{"symlink up then a file through it", [][3]string{{"up", sym, "../../../../../../.."}, {"up" + outside + "/secret", reg, "pwned"}}, 403, "through a symlink"},
		{"hard link out", [][3]string{{"h", lnk, "../../secret"}}, 403, "hard link target"},
		{"device", [][3]string{{"null", chr, ""}}, 400, "device"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := r + "/dst-" + strings.ReplaceAll(tt.name, " ", "-")
			_, err := env.c.UploadTar(ctx, dst, bytes.NewReader(makeTar(t, tt.ents...)))
			var e *Error
			if !errors.As(err, &e) || e.Status != tt.status || !strings.Contains(e.Message, tt.says) {
				t.Fatalf("UploadTar: %v; want %d saying %q", err, tt.status, tt.says)
			}
			if b, _ := os.ReadFile(outside + "/secret"); string(b) != "secret" {
				t.Errorf("outside/secret now holds %q", b)
			}
			if ents, _ := os.ReadDir(outside); len(ents) != 1 {
				t.Errorf("outside gained entries: %v", ents)
			}
			if _, err := os.Stat(r + "/escaped"); err == nil {
				t.Errorf("a file landed beside the directory")
			}
		})
	}
	// What came before a refused entry stays, each file whole.
	if b, err := os.ReadFile(r + "/dst-dot-dot/ok"); err != nil || string(b) != "fine" {
		t.Errorf("the entry before the refused one: %q %v", b, err)
	}
	// Uploading into a path that leaves the root is refused up front.
	os.Symlink(outside, r+"/out")
	var e *Error
	if _, err := env.c.UploadTar(ctx, r+"/out/x", bytes.NewReader(makeTar(t, [3]string{"f", reg, "x"}))); !errors.As(err, &e) || e.Status != 403 {
		t.Errorf("tar into a directory through a symlink out: %v; want 403", err)
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 1 {
		t.Errorf("outside gained entries: %v", ents)
	}
}
