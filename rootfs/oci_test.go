package rootfs

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

type tarEntry struct {
	name, body, link string
	typ              byte
	mode             int64
}

func tarBytes(t testing.TB, entries []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.link, ModTime: time.Unix(1700000000, 0)}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
			if h.Typeflag == tar.TypeDir {
				h.Mode = 0o755
			}
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func layer(t *testing.T, entries []tarEntry) v1.Layer {
	t.Helper()
	b := tarBytes(t, entries)
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// testImage has two layers; the second deletes a file of the first with a
// whiteout, empties a directory with an opaque whiteout, and adds files.
func testImage(t *testing.T) v1.Image {
	t.Helper()
	base := layer(t, []tarEntry{
		{name: "etc/", typ: tar.TypeDir},
		{name: "etc/gone.conf", body: "delete me\n"},
		{name: "etc/keep.conf", body: "keep me\n"},
		{name: "usr/lib/", typ: tar.TypeDir},
		{name: "usr/lib/libx.so", body: "ELF?\n"},
		{name: "lib", typ: tar.TypeSymlink, link: "usr/lib"},
		{name: "usr/bin/tool", body: "#!/bin/sh\n", mode: 0o755},
		{name: "var/cache/old", body: "stale\n"},
		{name: "dev/null", typ: tar.TypeChar, mode: 0o666},
	})
	top := layer(t, []tarEntry{
		{name: "etc/.wh.gone.conf", typ: tar.TypeReg},
		{name: "etc/new.conf", body: "added\n", mode: 0o600},
		{name: "var/cache/.wh..wh..opq", typ: tar.TypeReg},
		{name: "var/cache/fresh", body: "fresh\n"},
		{name: "usr/bin/tool-alias", typ: tar.TypeLink, link: "usr/bin/tool"},
	})
	img, err := mutate.AppendLayers(empty.Image, base, top)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestFromOCI(t *testing.T) {
	needTools(t)
	img := testImage(t)
	dir := t.TempDir()

	saved := filepath.Join(dir, "image.tar")
	tag, err := name.NewTag("sietch.test/rootfs:latest")
	if err != nil {
		t.Fatal(err)
	}
	if err := tarball.WriteToFile(saved, tag, img); err != nil {
		t.Fatal(err)
	}
	lay := filepath.Join(dir, "layout")
	p, err := layout.Write(lay, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img); err != nil {
		t.Fatal(err)
	}

	for _, src := range []string{saved, lay} {
		t.Run(filepath.Base(src), func(t *testing.T) {
			outDir := t.TempDir()
			out := filepath.Join(outDir, "root.ext4")
			if err := FromOCI(context.Background(), src, out, Options{}); err != nil {
				t.Fatalf("FromOCI: %v", err)
			}
			fsck(t, out)
			noLeftovers(t, outDir, "root.ext4")
			for path, want := range map[string]string{
				"/etc/keep.conf":      "keep me\n",
				"/etc/new.conf":       "added\n",
				"/lib/libx.so":        "ELF?\n",
				"/var/cache/fresh":    "fresh\n",
				"/usr/bin/tool-alias": "#!/bin/sh\n",
			} {
				if got := debugfs(t, out, "cat "+path); got != want {
					t.Errorf("cat %s = %q, want %q", path, got, want)
				}
			}
			for _, gone := range []string{"/etc/gone.conf", "/etc/.wh.gone.conf", "/var/cache/old", "/var/cache/.wh..wh..opq"} {
				if debugfsErr(t, out, "stat "+gone) == "" {
					t.Errorf("%s is in the image; a whiteout deleted it", gone)
				}
			}
			for path, want := range map[string][]string{
				"/usr/bin/tool": {"Mode:  0755", "Links: 2"},
				"/etc/new.conf": {"Mode:  0600"},
				"/lib":          {"Type: symlink", `Fast link dest: "usr/lib"`},
				"/tmp":          {"Mode:  01777"},
			} {
				st := debugfs(t, out, "stat "+path)
				for _, w := range want {
					if !strings.Contains(st, w) {
						t.Errorf("stat %s lacks %q:\n%s", path, w, st)
					}
				}
			}
			if os.Geteuid() == 0 {
				if st := debugfs(t, out, "stat /dev/null"); !strings.Contains(st, "Type: character special") {
					t.Errorf("/dev/null is not a device node:\n%s", st)
				}
			}
		})
	}
}

// TestExtractConfined feeds tars that try to write outside the root through
// "../" names, absolute names, symlinks and hard links.
func TestExtractConfined(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries []tarEntry
	}{
		{"dotdot name", []tarEntry{{name: "../../escaped", body: "x"}}},
		{"absolute name", []tarEntry{{name: "/escaped", body: "x"}}},
		{"symlink to outside dir", []tarEntry{
			{name: "esc", typ: tar.TypeSymlink, link: "../../.."},
			{name: "esc/escaped", body: "x"},
		}},
		{"absolute symlink", []tarEntry{
			{name: "esc", typ: tar.TypeSymlink, link: "/"},
			{name: "esc/escaped", body: "x"},
		}},
		{"hard link outside", []tarEntry{{name: "escaped", typ: tar.TypeLink, link: "../outside"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			top := t.TempDir()
			writeFile(t, filepath.Join(top, "outside"), "host file\n", 0o644)
			root := filepath.Join(top, "a", "b", "root")
			if err := os.MkdirAll(root, 0o755); err != nil {
				t.Fatal(err)
			}
			err := extractTar(context.Background(), bytes.NewReader(tarBytes(t, tc.entries)), root, nil)
			for _, p := range []string{filepath.Join(top, "escaped"), filepath.Join(top, "a", "escaped"), filepath.Join(top, "a", "b", "escaped"), "/escaped"} {
				if _, serr := os.Lstat(p); serr == nil {
					t.Fatalf("wrote %s outside the root (extract err %v)", p, err)
				}
			}
			if b, _ := os.ReadFile(filepath.Join(top, "outside")); string(b) != "host file\n" {
				t.Error("file outside the root changed")
			}
			if err == nil {
				if _, serr := os.Lstat(filepath.Join(root, "escaped")); serr != nil && tc.name != "hard link outside" {
					t.Errorf("entry not kept inside the root: %v", serr)
				}
			}
		})
	}
}

func TestExtractTooLarge(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	// Only the header: the declared size alone must be refused.
	if err := tw.WriteHeader(&tar.Header{Name: "huge", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1 << 60}); err != nil {
		t.Fatal(err)
	}
	tw.Flush()
	root := t.TempDir()
	err := extractTar(context.Background(), &buf, root, nil)
	if err == nil || !strings.Contains(err.Error(), "free space") {
		t.Fatalf("err = %v, want a free-space error", err)
	}
	noLeftovers(t, root)
}

func FuzzExtract(f *testing.F) {
	f.Add(tarBytes(f, []tarEntry{{name: "a/b", body: "x"}, {name: "l", typ: tar.TypeSymlink, link: "/a"}, {name: "l/c", body: "y"}}))
	f.Add(tarBytes(f, []tarEntry{{name: "d/", typ: tar.TypeDir, mode: 0o500}, {name: "d/f", body: "z"}, {name: "h", typ: tar.TypeLink, link: "d/f"}}))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, data []byte) {
		top := t.TempDir()
		root := filepath.Join(top, "root")
		if err := os.Mkdir(root, 0o755); err != nil {
			t.Fatal(err)
		}
		_ = extractTar(context.Background(), bytes.NewReader(data), root, nil)
		noLeftovers(t, top, "root")
		os.Chmod(root, 0o755)
	})
}
