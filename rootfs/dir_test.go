package rootfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func sampleTree(t *testing.T) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), "tree")
	writeFile(t, filepath.Join(src, "hello.txt"), "hello, guest\n", 0o644)
	writeFile(t, filepath.Join(src, "bin/run.sh"), "#!/bin/sh\necho ran\n", 0o755)
	writeFile(t, filepath.Join(src, "a/b/c/deep.txt"), "deep\n", 0o600)
	writeFile(t, filepath.Join(src, "etc/hostname"), "buildhost\n", 0o644)
	if err := os.Symlink("hello.txt", filepath.Join(src, "greeting")); err != nil {
		t.Fatal(err)
	}
	return src
}

func TestFromDir(t *testing.T) {
	needTools(t)
	src := sampleTree(t)
	img := filepath.Join(t.TempDir(), "root.ext4")
	var progress bytes.Buffer
	if err := FromDir(context.Background(), src, img, Options{Label: "test", Progress: &progress}); err != nil {
		t.Fatalf("FromDir: %v", err)
	}
	fsck(t, img)

	for path, want := range map[string]string{
		"/hello.txt":      "hello, guest\n",
		"/a/b/c/deep.txt": "deep\n",
		"/bin/run.sh":     "#!/bin/sh\necho ran\n",
	} {
		if got := debugfs(t, img, "cat "+path); got != want {
			t.Errorf("cat %s = %q, want %q", path, got, want)
		}
	}
	for path, want := range map[string][]string{
		"/bin/run.sh":     {"Type: regular", "Mode:  0755", fmt.Sprintf("User: %5d", os.Geteuid())},
		"/a/b/c/deep.txt": {"Mode:  0600"},
		"/greeting":       {"Type: symlink", `Fast link dest: "hello.txt"`},
		"/proc":           {"Type: directory", "Mode:  0555"},
		"/tmp":            {"Type: directory", "Mode:  01777"},
		"/dev":            {"Type: directory"},
		"/run":            {"Type: directory"},
		"/sys":            {"Type: directory"},
	} {
		st := debugfs(t, img, "stat "+path)
		for _, w := range want {
			if !strings.Contains(st, w) {
				t.Errorf("stat %s lacks %q:\n%s", path, w, st)
			}
		}
	}
	if msg := debugfsErr(t, img, "stat /etc/hostname"); msg == "" {
		t.Error("/etc/hostname is in the image; guest-init sets the hostname")
	}
	if !strings.Contains(debugfs(t, img, "stats"), "Filesystem volume name:   test") {
		t.Error("label not set")
	}
	// The source is read, never changed.
	mustNotExist(t, filepath.Join(src, "proc"), filepath.Join(src, "tmp"))
	if _, err := os.Stat(filepath.Join(src, "etc/hostname")); err != nil {
		t.Errorf("source /etc/hostname removed: %v", err)
	}
	noLeftovers(t, filepath.Dir(img), "root.ext4")
	if !strings.Contains(progress.String(), "wrote "+img) {
		t.Errorf("progress does not report the result:\n%s", progress.String())
	}
}

func TestFromDirReproducible(t *testing.T) {
	needTools(t)
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	src := sampleTree(t)
	dir := t.TempDir()
	var images [][]byte
	for _, name := range []string{"one.ext4", "two.ext4"} {
		p := filepath.Join(dir, name)
		if err := FromDir(context.Background(), src, p, Options{}); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		images = append(images, b)
	}
	if !bytes.Equal(images[0], images[1]) {
		t.Error("two builds of the same tree differ")
	}
}

func TestFromDirSize(t *testing.T) {
	needTools(t)
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "big"), strings.Repeat("x", 20<<20), 0o644)
	dir := t.TempDir()

	img := filepath.Join(dir, "auto.ext4")
	if err := FromDir(context.Background(), src, img, Options{}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(img)
	if err != nil {
		t.Fatal(err)
	}
	// 20 MiB * 1.3 + 64 MiB, rounded up to a MiB.
	if fi.Size() != 91<<20 {
		t.Errorf("automatic size = %d, want 91 MiB", fi.Size())
	}

	img = filepath.Join(dir, "fixed.ext4")
	if err := FromDir(context.Background(), src, img, Options{SizeBytes: 40 << 20}); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(img); fi.Size() != 40<<20 {
		t.Errorf("size = %d, want 40 MiB", fi.Size())
	}

	small := filepath.Join(dir, "small.ext4")
	err = FromDir(context.Background(), src, small, Options{SizeBytes: 10 << 20})
	if err == nil || !strings.Contains(err.Error(), "too small") {
		t.Errorf("20 MiB into 10 MiB: err = %v, want a too-small error", err)
	}
	mustNotExist(t, small, small+".tmp")
}

func TestBadInputs(t *testing.T) {
	needTools(t)
	in := t.TempDir()
	garbage := filepath.Join(in, "garbage.tar")
	writeFile(t, garbage, "this is not a tarball\x00\x01\x02", 0o644)
	plainTar := filepath.Join(in, "plain.tar")
	writeFile(t, plainTar, string(tarBytes(t, []tarEntry{{name: "etc/x", body: "x"}})), 0o644)
	notDir := filepath.Join(in, "file")
	writeFile(t, notDir, "x", 0o644)
	emptyDir := filepath.Join(in, "empty")
	if err := os.Mkdir(emptyDir, 0o755); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name  string
		build func(out string) error
		want  error
		say   string
	}{
		{"missing dir", func(out string) error {
			return FromDir(context.Background(), filepath.Join(in, "nope"), out, Options{})
		}, ErrBadSource, "no such file"},
		{"dir is a file", func(out string) error { return FromDir(context.Background(), notDir, out, Options{}) }, ErrBadSource, "not a directory"},
		{"missing tarball", func(out string) error {
			return FromOCI(context.Background(), filepath.Join(in, "nope.tar"), out, Options{})
		}, ErrBadSource, "no such file"},
		{"garbage tarball", func(out string) error { return FromOCI(context.Background(), garbage, out, Options{}) }, ErrBadSource, "docker save"},
		{"tar without manifest", func(out string) error { return FromOCI(context.Background(), plainTar, out, Options{}) }, ErrBadSource, "docker save"},
		{"empty layout dir", func(out string) error { return FromOCI(context.Background(), emptyDir, out, Options{}) }, ErrBadSource, "index.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			outDir := t.TempDir()
			out := filepath.Join(outDir, "root.ext4")
			err := tc.build(out)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.say) {
				t.Errorf("error %q does not say %q", err, tc.say)
			}
			noLeftovers(t, outDir)
		})
	}
}

func TestFromDebianBadInputs(t *testing.T) {
	out := filepath.Join(t.TempDir(), "d.ext4")
	for _, tc := range []struct {
		suite string
		pkgs  []string
	}{
		{"", nil},
		{"bookworm", []string{"git,curl"}},
		{"bookworm", []string{""}},
		{"../bookworm", nil},
	} {
		err := FromDebian(context.Background(), tc.suite, "", tc.pkgs, out, Options{})
		if !errors.Is(err, ErrBadSource) {
			t.Errorf("FromDebian(%q, %q): err = %v, want ErrBadSource", tc.suite, tc.pkgs, err)
		}
		mustNotExist(t, out, out+".tmp")
	}
}

func TestMissingTool(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := findTool("no-such-mkfs", "e2fsprogs")
	if !errors.Is(err, ErrMissingTool) || !strings.Contains(err.Error(), "install e2fsprogs") {
		t.Errorf("err = %v, want ErrMissingTool naming e2fsprogs", err)
	}
}
