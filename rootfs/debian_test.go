package rootfs

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// TestDefault builds the default Debian image: minutes, root and a Debian
// mirror, so only with SIETCH_TEST_DEBIAN=1. SIETCH_TEST_DEBIAN_CACHE keeps
// the image between runs.
func TestDefault(t *testing.T) {
	if os.Getenv("SIETCH_TEST_DEBIAN") != "1" {
		t.Skip("builds a Debian image with debootstrap (minutes, needs a mirror): set SIETCH_TEST_DEBIAN=1")
	}
	needTools(t)
	cache := os.Getenv("SIETCH_TEST_DEBIAN_CACHE")
	if cache == "" {
		cache = t.TempDir()
	}
	start := time.Now()
	img, err := Default(context.Background(), cache, Options{Progress: testWriter{t}})
	if err != nil {
		t.Fatalf("Default: %v", err)
	}
	fi, err := os.Stat(img)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("default image %s: %d MiB, built in %s", img, fi.Size()>>20, time.Since(start).Round(time.Second))
	fsck(t, img)
	for _, p := range []string{"/usr/bin/python3", "/usr/bin/git", "/usr/bin/curl", "/usr/bin/ip", "/etc/ssl/certs/ca-certificates.crt", "/proc", "/tmp"} {
		if msg := debugfsErr(t, img, "stat "+p); msg != "" {
			t.Errorf("%s missing from the default image: %s", p, msg)
		}
	}
	for _, p := range []string{"/etc/hostname", "/etc/resolv.conf"} {
		if debugfsErr(t, img, "stat "+p) == "" {
			t.Errorf("%s copied from the build host into the image", p)
		}
	}
	again, err := Default(context.Background(), cache, Options{})
	if err != nil || again != img {
		t.Errorf("second Default = %q, %v; want the cached %q", again, err, img)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
