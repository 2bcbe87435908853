package tarx

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// An overlayfs upper directory becomes an OCI layer: a deleted file (a 0/0
// character device) a ".wh." entry, an opaque directory its ".wh..wh..opq"
// marker after it, skipped names absent, everything else as Write has it.
func TestWriteLayer(t *testing.T) {
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "etc/apt"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "etc/apt/sources.list"), []byte("deb x"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "etc/hostname"), []byte("sb-1\n"), 0o644))
	must(os.MkdirAll(filepath.Join(dir, "var/cache/new"), 0o755))
	must(os.Symlink("/usr/bin/python3", filepath.Join(dir, "etc/py")))
	if err := unix.Mknod(filepath.Join(dir, "etc/motd"), unix.S_IFCHR|0o000, 0); err != nil {
		t.Skipf("making a whiteout needs CAP_MKNOD (run as root): %v", err)
	}
	if err := unix.Setxattr(filepath.Join(dir, "var/cache"), "trusted.overlay.opaque", []byte("y"), 0); err != nil {
		t.Skipf("marking an opaque directory needs CAP_SYS_ADMIN and a file system with trusted xattrs: %v", err)
	}
	// A device that is not a whiteout is not an image's business.
	must(unix.Mknod(filepath.Join(dir, "etc/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	var buf bytes.Buffer
	var skipped []string
	n, err := WriteLayer(&buf, openRoot(t, dir), Layer{Dir: dir, Skip: func(name string) bool { return name == "etc/hostname" }},
		func(name string, _ os.FileMode) { skipped = append(skipped, name) })
	must(err)
	var got []string
	tr := tar.NewReader(&buf)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		must(err)
		got = append(got, hdr.Name)
	}
	want := []string{"etc/", "etc/apt/", "etc/apt/sources.list", "etc/.wh.motd", "etc/py", "var/", "var/cache/", "var/cache/.wh..wh..opq", "var/cache/new/"}
	if !slices.Equal(got, want) {
		t.Errorf("layer entries:\n %q\nwant\n %q", got, want)
	}
	if n.Whiteouts != 2 || n.Files != 1 {
		t.Errorf("counts %+v; want 2 whiteouts and 1 file", n)
	}
	if !slices.Equal(skipped, []string{"etc/null"}) {
		t.Errorf("skipped %q; want the device etc/null", skipped)
	}
}

// With Limits.Owners the archive's numeric owners are restored, on files,
// directories and symlinks alike; without, the extractor owns them.
func TestExtractOwners(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("restoring owners needs root")
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "app/", Typeflag: tar.TypeDir, Mode: 0o750, Uid: 1000, Gid: 1001})
	tw.WriteHeader(&tar.Header{Name: "app/run.sh", Mode: 0o755, Size: 2, Uid: 1000, Gid: 1001})
	tw.Write([]byte("#!"))
	tw.WriteHeader(&tar.Header{Name: "app/link", Typeflag: tar.TypeSymlink, Linkname: "run.sh", Uid: 1000, Gid: 1001})
	tw.Close()
	for _, owners := range []bool{true, false} {
		dir := t.TempDir()
		if _, err := Extract(bytes.NewReader(buf.Bytes()), openRoot(t, dir), Limits{Owners: owners}); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"app", "app/run.sh", "app/link"} {
			var st unix.Stat_t
			if err := unix.Lstat(filepath.Join(dir, name), &st); err != nil {
				t.Fatal(err)
			}
			want := [2]uint32{0, 0}
			if owners {
				want = [2]uint32{1000, 1001}
			}
			if got := [2]uint32{st.Uid, st.Gid}; got != want {
				t.Errorf("owners=%v: %s belongs to %v; want %v", owners, name, got, want)
			}
		}
	}
}
