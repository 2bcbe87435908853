// Package imagetest makes small container images for tests: a layer from
// a list of entries, a busybox userland from the host's static busybox,
// and `docker save` tarballs of them. The public registries are not
// reachable from the machines the tests run on, so tests build their own
// bases and serve or save them.
package imagetest

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"sort"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// BusyboxPath is where Debian's busybox-static puts its binary.
const BusyboxPath = "/bin/busybox"

// Image is a linux/amd64 image of one layer holding files (name → content,
// mode 0644; a name ending in "/" is a directory), symlinks (name →
// target) and, if not nil, executables (name → content, mode 0755), with
// env as its config's Env.
func Image(t testing.TB, files, symlinks map[string]string, executables map[string][]byte, env []string) v1.Image {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, n := range sorted(executables) {
		tw.WriteHeader(&tar.Header{Name: n, Mode: 0o755, Size: int64(len(executables[n]))})
		tw.Write(executables[n])
	}
	for _, n := range sorted(symlinks) {
		tw.WriteHeader(&tar.Header{Name: n, Typeflag: tar.TypeSymlink, Linkname: symlinks[n]})
	}
	for _, n := range sorted(files) {
		if n[len(n)-1] == '/' {
			tw.WriteHeader(&tar.Header{Name: n, Typeflag: tar.TypeDir, Mode: 0o755})
			continue
		}
		tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(files[n]))})
		tw.Write([]byte(files[n]))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	data := b.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Config.Env = "linux", "amd64", env
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return img
}

// Busybox is an image of the host's static busybox as /bin/busybox with a
// symlink per applet, plus files; it skips the test when the host has no
// busybox (apt-get install busybox-static; .ci/run installs it).
func Busybox(t testing.TB, applets []string, files map[string]string) v1.Image {
	t.Helper()
	bb, err := os.ReadFile(BusyboxPath)
	if err != nil {
		t.Skipf("the test's base image needs a static busybox at %s (apt-get install busybox-static; make deps installs it): %v", BusyboxPath, err)
	}
	links := map[string]string{}
	for _, a := range applets {
		links["bin/"+a] = "busybox"
	}
	if files == nil {
		files = map[string]string{}
	}
	files["bin/"] = ""
	return Image(t, files, links, map[string][]byte{"bin/busybox": bb}, []string{"PATH=/bin"})
}

// Save is img as a `docker save` tarball tagged ref.
func Save(t testing.TB, img v1.Image, ref string) []byte {
	t.Helper()
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := tarball.Write(tag, img, &out); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func sorted[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
