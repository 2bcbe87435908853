package main

import (
	"bytes"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/registry"
)

func TestParseImageBuild(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		want    imageBuild
		wantErr string
	}{
		{args: []string{"--from-dir", "/t", "-o", "r.ext4"},
			want: imageBuild{fromDir: "/t", out: "r.ext4"}},
		{args: []string{"--from-oci", "img.tar", "--output=r.ext4", "--size", "2G", "--label", "web"},
			want: imageBuild{fromOCI: "img.tar", out: "r.ext4"}},
		{args: []string{"--debian", "bookworm", "--packages", "git,curl", "--packages", "vim", "-o", "d.ext4", "--mirror", "http://m/debian"},
			want: imageBuild{debian: "bookworm", packages: []string{"git", "curl", "vim"}, mirror: "http://m/debian", out: "d.ext4"}},
		{args: []string{"--default", "--cache", "/c", "-v"},
			want: imageBuild{useDefault: true, cache: "/c", verbose: true}},
		{args: []string{"--default", "-o", "copy.ext4"},
			want: imageBuild{useDefault: true, out: "copy.ext4"}},
		{args: []string{"--desktop", "--cache", "/c", "-o", "build/desktop.ext4"},
			want: imageBuild{useDesktop: true, cache: "/c", out: "build/desktop.ext4"}},
		{args: []string{"--desktop", "--browser=false", "-o", "build/desktop-lite.ext4"},
			want: imageBuild{useDesktop: true, noBrowser: true, out: "build/desktop-lite.ext4"}},
		{args: []string{"--default", "--browser=false"}, wantErr: "--browser goes with --desktop"},
		{args: []string{"--desktop", "--default"}, wantErr: "exactly one of"},
		{args: []string{"-o", "r.ext4"}, wantErr: "exactly one of"},
		{args: []string{"--from-dir", "a", "--from-oci", "b", "-o", "r"}, wantErr: "exactly one of"},
		{args: []string{"--from-dir", "a"}, wantErr: "-o OUT.ext4 is required"},
		{args: []string{"--from-dir", "a", "-o", "r", "--packages", "git"}, wantErr: "--packages goes with --debian"},
		{args: []string{"--from-dir", "a", "-o", "r", "--mirror", "http://x"}, wantErr: "--mirror goes with --debian"},
		{args: []string{"--from-dir", "a", "-o", "r", "--cache", "c"}, wantErr: "--cache goes with --default"},
		{args: []string{"--from-registry", "python:3.12", "-o", "r.ext4", "--cache", "/l"},
			want: imageBuild{fromRegistry: "python:3.12", out: "r.ext4", cache: "/l"}},
		{args: []string{"--from-registry", "python:3.12", "--from-oci", "b", "-o", "r"}, wantErr: "exactly one of"},
		{args: []string{"--from-dir", "a", "-o", "r", "--size", "lots"}, wantErr: "bad size"},
		{args: []string{"--from-dir", "a", "-o", "r", "extra"}, wantErr: "unexpected argument"},
		{args: []string{"--nope"}, wantErr: "unknown flag"},
		{args: []string{"-f", "app/Dockerfile", "-o", "app", "--build-arg", "V=3.12", "--build-arg", "X=a=b", "--target", "final", "--no-cache"},
			want: imageBuild{file: "app/Dockerfile", out: "app", target: "final", noCache: true, buildArgs: map[string]string{"V": "3.12", "X": "a=b"}}},
		{args: []string{"-f", "Dockerfile"}, wantErr: "-o NAME is required"},
		{args: []string{"-f", "Dockerfile", "-o", "out/app.ext4"}, wantErr: "names the image in sietchd"},
		{args: []string{"-f", "Dockerfile", "-o", "app", "--size", "1G"}, wantErr: "--size does not go with -f"},
		{args: []string{"-f", "Dockerfile", "-o", "app", "--build-arg", "NOVALUE"}, wantErr: "want NAME=VALUE"},
		{args: []string{"--from-dir", "a", "-o", "r", "--target", "x"}, wantErr: "--target goes with -f"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			got, err := parseImageBuild(tc.args, nil)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.want.mirror == "" {
				tc.want.mirror = got.mirror // the default mirror
			}
			got.opts = tc.want.opts
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"4096", 4096}, {"512M", 512 << 20}, {"2G", 2 << 30}, {"2g", 2 << 30},
		{"2GiB", 2 << 30}, {"1.5G", 3 << 29}, {"64MB", 64 << 20}, {"1T", 1 << 40}, {"8k", 8 << 10},
		{"", 0}, {"G", 0}, {"-1G", 0}, {"0", 0}, {"2X", 0}, {"1e30", 0}, {"NaN", 0},
	} {
		got, err := parseSize(tc.in)
		if tc.want == 0 {
			if err == nil {
				t.Errorf("parseSize(%q) = %d, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}

func TestExitCodes(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
	}{
		{nil, exitUsage},
		{[]string{"frobnicate"}, exitUsage},
		{[]string{"help"}, exitOK},
		{[]string{"image"}, exitUsage},
		{[]string{"image", "build", "--from-dir", "x"}, exitUsage},
		{[]string{"image", "build", "--help"}, exitOK},
		{[]string{"image", "build", "--from-dir", "/no/such/dir", "-o", filepath.Join(t.TempDir(), "r.ext4")}, exitError},
	} {
		var stdout, stderr bytes.Buffer
		if got := realMain(tc.args, &stdout, &stderr); got != tc.code {
			t.Errorf("sietch %v: exit %d, want %d (stderr %q)", tc.args, got, tc.code, stderr.String())
		}
	}
}

func TestImageBuildFromDir(t *testing.T) {
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		if _, err := os.Stat("/usr/sbin/mkfs.ext4"); err != nil {
			t.Skip("needs e2fsprogs (mkfs.ext4)")
		}
	}
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "hello"), []byte("hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "r.ext4")
	var stdout, stderr bytes.Buffer
	if code := realMain([]string{"image", "build", "--from-dir", src, "-o", out, "--size", "32M", "-v"}, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if strings.TrimSpace(stdout.String()) != out {
		t.Errorf("stdout = %q, want the image path", stdout.String())
	}
	if !strings.Contains(stderr.String(), "rootfs:") {
		t.Errorf("-v printed no progress: %q", stderr.String())
	}
	if fi, err := os.Stat(out); err != nil || fi.Size() != 32<<20 {
		t.Errorf("image: %v, size %v", err, fi)
	}
}

func TestCopySparse(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	data := make([]byte, 3<<20+5)
	copy(data[1<<20:], "middle")
	data[len(data)-1] = 1
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "dst")
	if err := copySparse(src, dst); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(dst)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("copy differs (err %v)", err)
	}
}

func TestImageBuildFromRegistry(t *testing.T) {
	debugfs, err := exec.LookPath("debugfs")
	if err != nil {
		debugfs = "/usr/sbin/debugfs"
	}
	if _, err := os.Stat(debugfs); err != nil {
		t.Skip("needs e2fsprogs (mkfs.ext4, debugfs)")
	}
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	img, err := crane.Image(map[string][]byte{"etc/hello": []byte("from a registry\n")})
	if err != nil {
		t.Fatal(err)
	}
	ref := strings.TrimPrefix(srv.URL, "http://") + "/demo:1"
	if err := crane.Push(img, ref); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "r.ext4")
	cache := t.TempDir()
	var stdout, stderr bytes.Buffer
	if code := realMain([]string{"image", "build", "--from-registry", ref, "--cache", cache, "-o", out, "--size", "32M"}, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	got, err := exec.Command(debugfs, "-R", "cat /etc/hello", out).Output()
	if err != nil || string(got) != "from a registry\n" {
		t.Errorf("/etc/hello in the image: %q, %v", got, err)
	}
	if entries, _ := os.ReadDir(filepath.Join(cache, "sha256")); len(entries) != 2 {
		t.Errorf("layer cache holds %d blobs, want 2 (layer and config)", len(entries))
	}
}
