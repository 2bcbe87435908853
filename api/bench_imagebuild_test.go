package api

import (
	"archive/tar"
	"bytes"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/sietch-vm/sietch/internal/imagetest"
	"github.com/sietch-vm/sietch/rootfs"
	"github.com/sietch-vm/sietch/sandbox"
)

// benchDockerfile builds on a busybox base from the context: a RUN that
// writes files, a COPY of the context, a RUN that reads what was copied.
const benchDockerfile = `FROM ./base.tar
RUN mkdir -p /app/data && for i in 1 2 3 4 5 6 7 8; do echo "row $i" > /app/data/$i.txt; done
COPY src/ /app/src/
WORKDIR /app
RUN ls -R /app > /app/listing && rm /etc/motd
CMD ["sh"]
`

// busyboxImage is a `docker save` tarball of busybox with a few applets
// and /etc/motd: the base of the benchmark's Dockerfile.
func busyboxImage(b *testing.B) []byte {
	img := imagetest.Busybox(b, []string{"sh", "mkdir", "ls", "rm", "echo", "cat"}, map[string]string{"etc/passwd": "root:x:0:0::/root:/bin/sh\n", "etc/motd": "hi\n"})
	return imagetest.Save(b, img, "base:1")
}

// allocated is a file's allocated bytes (a sparse image's real size).
func allocated(b *testing.B, path string) int64 {
	out, err := exec.Command("du", "-B1", path).Output()
	if err != nil {
		b.Fatal(err)
	}
	var n int64
	fmt.Sscan(string(out), &n)
	return n
}

// BenchmarkImageBuild builds benchDockerfile through POST /v1/images with
// real build sandboxes: a cold build (no cache: every step runs, one boot)
// against a rebuild with nothing changed (every step cached, no boot); and
// the built image's size against the same tree imported from an OCI
// tarball (rootfs.FromOCI), which says what the build adds to an image.
func BenchmarkImageBuild(b *testing.B) {
	img := linuxImage(b)
	e := newEnv(b, func(c *sandbox.Config) { c.Images = []sandbox.ImageSpec{img} })
	var ctxTar bytes.Buffer
	tw := tar.NewWriter(&ctxTar)
	for n, d := range map[string][]byte{
		"Dockerfile": []byte(benchDockerfile), "base.tar": busyboxImage(b),
		"src/main.py": []byte("print('hello')\n"), "src/lib/util.py": []byte("X = 1\n"),
	} {
		tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(d))})
		tw.Write(d)
	}
	tw.Close()
	build := func(query string) time.Duration {
		t0 := time.Now()
		st, body := e.do("POST", "/v1/images?name=bench"+query, ctxTar.Bytes())
		took := time.Since(t0)
		lines := strings.Split(strings.TrimSpace(string(body)), "\n")
		if st != http.StatusOK || !strings.Contains(lines[len(lines)-1], `"image"`) {
			b.Fatalf("POST /v1/images%s: %d\n%s", query, st, body)
		}
		return took
	}
	var cold, cached time.Duration
	for b.Loop() {
		cold = build("&no_cache=true")
		cached = build("")
	}
	built := filepath.Join(e.cfg.StateDir, "images", "bench", "rootfs.ext4")
	tree := b.TempDir()
	if out, err := exec.Command("debugfs", "-R", "rdump / "+tree, built).CombinedOutput(); err != nil {
		b.Fatalf("debugfs rdump: %v\n%s", err, out)
	}
	ociTar := filepath.Join(b.TempDir(), "same.tar")
	if err := exec.Command("tar", "-C", tree, "-cf", ociTar+".layer", "--exclude=./lost+found", ".").Run(); err != nil {
		b.Fatal(err)
	}
	l, err := tarball.LayerFromFile(ociTar + ".layer")
	if err != nil {
		b.Fatal(err)
	}
	oimg, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		b.Fatal(err)
	}
	tag, _ := name.NewTag("same:1")
	if err := tarball.WriteToFile(ociTar, tag, oimg); err != nil {
		b.Fatal(err)
	}
	imported := filepath.Join(b.TempDir(), "imported.ext4")
	if err := rootfs.FromOCI(b.Context(), ociTar, imported, rootfs.Options{}); err != nil {
		b.Fatal(err)
	}
	bs, is := allocated(b, built), allocated(b, imported)
	b.ReportMetric(cold.Seconds(), "cold-build-s")
	b.ReportMetric(cached.Seconds(), "cached-build-s")
	b.ReportMetric(cold.Seconds()/cached.Seconds(), "cached-speedup-x")
	b.ReportMetric(float64(bs)/(1<<20), "image-MiB")
	b.ReportMetric(float64(is)/(1<<20), "oci-import-MiB")
	b.ReportMetric(float64(bs)/float64(is), "size-ratio")
}
