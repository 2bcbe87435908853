package dockerfile

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// entries lists an archive as "name type mode uid:gid [content|->link]".
func entries(t *testing.T, b []byte) []string {
	t.Helper()
	var out []string
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		s := fmt.Sprintf("%s %c %o %d:%d", hdr.Name, hdr.Typeflag, hdr.Mode, hdr.Uid, hdr.Gid)
		switch hdr.Typeflag {
		case tar.TypeReg:
			data, _ := io.ReadAll(tr)
			s += " " + string(data)
		case tar.TypeSymlink, tar.TypeLink:
			s += " ->" + hdr.Linkname
		}
		out = append(out, s)
	}
}

// A COPY's archive holds its files at their destinations, owned by the
// --chown owner, with --chmod's mode; an ADD archive is unpacked under its
// destination with its own owners and without setuid bits.
func TestWriteCopy(t *testing.T) {
	var inner bytes.Buffer
	tw := tar.NewWriter(&inner)
	tw.WriteHeader(&tar.Header{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755, Uid: 7, Gid: 7})
	tw.WriteHeader(&tar.Header{Name: "bin/tool", Mode: 0o4755, Size: 2, Uid: 7, Gid: 7})
	tw.Write([]byte("#!"))
	tw.WriteHeader(&tar.Header{Name: "bin/alias", Typeflag: tar.TypeLink, Linkname: "bin/tool"})
	tw.Close()
	c := openTree(t, map[string]string{
		"app/main.py":   "print(1)",
		"app/lib/":      "",
		"app/link":      "symlink:main.py",
		"tools.tar":     inner.String(),
		".dockerignore": "app/secret",
		"app/secret":    "no",
	}, "", Limits{})
	p, err := planCtx(t, c, "FROM scratch\nCOPY --chown=1000:1001 --chmod=640 app /srv/\nADD tools.tar /opt\n", Options{})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := c.WriteCopy(&b, p.Stages[0].Steps[0].Copy, Owner{1000, 1001}); err != nil {
		t.Fatal(err)
	}
	got := entries(t, b.Bytes())
	want := []string{"srv/lib/ 5 640 1000:1001", "srv/link 2 777 1000:1001 ->main.py", "srv/main.py 0 640 1000:1001 print(1)"}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("COPY archive:\n %q\nwant\n %q", got, want)
	}
	b.Reset()
	if err := c.WriteCopy(&b, p.Stages[0].Steps[1].Copy, Owner{}); err != nil {
		t.Fatal(err)
	}
	got = entries(t, b.Bytes())
	want = []string{"opt/bin/ 5 755 7:7", "opt/bin/tool 0 755 7:7 #!", "opt/bin/alias 1 0 0:0 ->opt/bin/tool"}
	if !slices.Equal(got, want) {
		t.Errorf("ADD archive:\n %q\nwant\n %q", got, want)
	}
	// A file changed after the plan fails the step.
	if err := os.WriteFile(filepath.Join(c.Dir(), "app/main.py"), []byte("print(2)"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteCopy(io.Discard, p.Stages[0].Steps[0].Copy, Owner{}); err == nil || !strings.Contains(err.Error(), "changed in the build context") {
		t.Errorf("COPY of a file changed since the plan: %v", err)
	}
}

// An ADD archive whose entries climb out of the destination is refused.
func TestWriteCopyHostileArchive(t *testing.T) {
	for _, name := range []string{"../../etc/passwd", "a/../../x"} {
		var inner bytes.Buffer
		tw := tar.NewWriter(&inner)
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: 1})
		tw.Write([]byte("x"))
		tw.Close()
		c := openTree(t, map[string]string{"evil.tar": inner.String()}, "", Limits{})
		p, err := planCtx(t, c, "FROM scratch\nADD evil.tar /opt/\n", Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.WriteCopy(io.Discard, p.Stages[0].Steps[0].Copy, Owner{}); err == nil || !strings.Contains(err.Error(), "leaves the destination") {
			t.Errorf("ADD of an archive with %q: %v; want a refusal", name, err)
		}
	}
}

// The context a client sends leaves out what .dockerignore ignores, keeps
// the Dockerfile and the ignore file, and keeps symlinks as links.
func TestWriteTar(t *testing.T) {
	c := openTree(t, map[string]string{
		"Dockerfile":     "FROM scratch\n",
		".dockerignore":  "node_modules\nDockerfile\n.dockerignore\n**/*.log\n",
		"app/main.py":    "x",
		"app/debug.log":  "x",
		"node_modules/a": "x",
		"app/link":       "symlink:main.py",
	}, "", Limits{})
	var b bytes.Buffer
	if err := c.WriteTar(&b, []string{"Dockerfile", ".dockerignore"}, map[string][]byte{".sietch-build/Dockerfile": []byte("FROM x\n")}); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries(t, b.Bytes()) {
		names = append(names, strings.Fields(e)[0])
	}
	slices.Sort(names)
	want := []string{".dockerignore", ".sietch-build/Dockerfile", "Dockerfile", "app/", "app/link", "app/main.py"}
	if !slices.Equal(names, want) {
		t.Errorf("context archive %q; want %q", names, want)
	}
}

// FuzzAddArchive: whatever archive an ADD unpacks, WriteCopy either
// refuses it or writes entries that all stay under the destination, with
// hard links pointing under it too and no setuid bits.
func FuzzAddArchive(f *testing.F) {
	for _, names := range [][]string{{"a/b"}, {"../x"}, {"/abs", "a/../../b"}, {"./", "a/./b/"}} {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		for _, n := range names {
			tw.WriteHeader(&tar.Header{Name: n, Mode: 0o4755, Size: 1})
			tw.Write([]byte("x"))
		}
		tw.WriteHeader(&tar.Header{Name: "l", Typeflag: tar.TypeLink, Linkname: "../etc/shadow"})
		tw.Close()
		f.Add(b.Bytes())
	}
	dir := f.TempDir()
	// A small bound, so that an archive whose entries declare (or, sparse,
	// expand to) gigabytes is refused quickly rather than written.
	c, err := OpenContext(dir, "", Limits{MaxBytes: 1 << 20})
	if err != nil {
		f.Fatal(err)
	}
	defer c.Close()
	f.Fuzz(func(t *testing.T, archive []byte) {
		p := filepath.Join(dir, "in.tar")
		if err := os.WriteFile(p, archive, 0o644); err != nil {
			t.Fatal(err)
		}
		info, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		cp := &CopyStep{FromStage: -1, Dest: "/opt/app", Files: []File{{Path: "in.tar", Dest: "/opt/app", Type: TypeFile, Size: info.Size(), Extract: Uncompressed}}}
		var out bytes.Buffer
		if err := c.WriteCopy(&out, cp, Owner{}); err != nil {
			return
		}
		tr := tar.NewReader(&out)
		for {
			hdr, err := tr.Next()
			if err != nil {
				return
			}
			for _, n := range []string{hdr.Name, hdr.Linkname} {
				if n == "" || hdr.Typeflag == tar.TypeSymlink && n == hdr.Linkname {
					continue
				}
				if n != "opt/app" && n != "opt/app/" && !strings.HasPrefix(n, "opt/app/") {
					t.Fatalf("entry %q (link %q) leaves /opt/app", hdr.Name, hdr.Linkname)
				}
				if strings.Contains("/"+n+"/", "/../") {
					t.Fatalf("entry %q has a .. element", n)
				}
			}
			if hdr.Mode&0o6000 != 0 {
				t.Fatalf("entry %q keeps setuid/setgid: %o", hdr.Name, hdr.Mode)
			}
		}
	})
}
