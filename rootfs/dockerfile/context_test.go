package dockerfile

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// writeTree makes files under dir: "name/" is a directory, a value
// "symlink:T" a symlink to T, anything else a file with that content.
func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if strings.HasSuffix(name, "/") {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		os.Remove(p)
		var err error
		if target, ok := strings.CutPrefix(content, "symlink:"); ok {
			err = os.Symlink(target, p)
		} else {
			err = os.WriteFile(p, []byte(content), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func openTree(t *testing.T, files map[string]string, dockerfile string, l Limits) *Context {
	t.Helper()
	dir := t.TempDir()
	writeTree(t, dir, files)
	if dockerfile != "" {
		dockerfile = filepath.Join(dir, dockerfile)
	}
	c, err := OpenContext(dir, dockerfile, l)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// copied lists a plan step's files as "path>dest".
func copied(s Step) []string {
	var out []string
	for _, f := range s.Copy.Files {
		out = append(out, f.Path+">"+f.Dest)
	}
	return out
}

func planCtx(t *testing.T, c *Context, text string, o Options) (*Plan, error) {
	t.Helper()
	df, err := Parse([]byte(text))
	if err != nil {
		return nil, err
	}
	return df.Plan(c, o)
}

func TestCopyDestinations(t *testing.T) {
	files := map[string]string{
		"a.py": "a", "b.py": "b", "README": "r",
		"src/x.go": "x", "src/sub/y.go": "y", "empty/": "",
	}
	for _, tc := range []struct {
		instr string
		want  []string
	}{
		{"COPY a.py /app/", []string{"a.py>/app/a.py"}},
		{"COPY a.py /app/main.py", []string{"a.py>/app/main.py"}},
		{"COPY a.py rel/", []string{"a.py>/w/rel/a.py"}},
		{"COPY a.py .", []string{"a.py>/w/a.py"}},
		{"COPY *.py /app/", []string{"a.py>/app/a.py", "b.py>/app/b.py"}},
		{"COPY src /app", []string{"src/sub>/app/sub", "src/sub/y.go>/app/sub/y.go", "src/x.go>/app/x.go"}},
		{"COPY /src/../a.py /abs", []string{"a.py>/abs"}},
		{"COPY src/sub/ README /d/", []string{"src/sub/y.go>/d/y.go", "README>/d/README"}},
		{`COPY ["a.py", "/spaced dir/"]`, []string{"a.py>/spaced dir/a.py"}},
	} {
		t.Run(tc.instr, func(t *testing.T) {
			c := openTree(t, files, "", Limits{})
			p, err := planCtx(t, c, "FROM scratch\nWORKDIR /w\n"+tc.instr+"\n", Options{})
			if err != nil {
				t.Fatal(err)
			}
			if got := copied(p.Stages[0].Steps[1]); !slices.Equal(got, tc.want) {
				t.Errorf("copies %q, want %q", got, tc.want)
			}
		})
	}
}

func TestCopyFlags(t *testing.T) {
	c := openTree(t, map[string]string{"bin/tool": "#!/bin/sh\n", "bin/lib/": ""}, "", Limits{})
	p, err := planCtx(t, c, "FROM scratch\nARG MODE=0750\nCOPY --chown=app:app --chmod=$MODE bin /opt/bin\n", Options{})
	if err != nil {
		t.Fatal(err)
	}
	cp := p.Stages[0].Steps[1].Copy
	if cp.Chown != "app:app" || !cp.ChmodSet || cp.Chmod != 0o750 {
		t.Errorf("chown %q chmod %v %v", cp.Chown, cp.ChmodSet, cp.Chmod)
	}
	for _, f := range cp.Files {
		if f.Mode != 0o750 {
			t.Errorf("%s: mode %v, want --chmod's", f.Path, f.Mode)
		}
		if f.Type == TypeFile && !strings.HasPrefix(f.Digest, "sha256:") {
			t.Errorf("%s: digest %q", f.Path, f.Digest)
		}
	}
}

func tarball(t *testing.T, gz bool) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	tw.WriteHeader(&tar.Header{Name: "hello", Mode: 0o644, Size: 2})
	tw.Write([]byte("hi"))
	tw.Close()
	if !gz {
		return b.Bytes()
	}
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(b.Bytes())
	zw.Close()
	return z.Bytes()
}

func TestAddArchives(t *testing.T) {
	c := openTree(t, map[string]string{
		"plain.tar": string(tarball(t, false)),
		"app.tgz":   string(tarball(t, true)),
		"notar.gz":  "\x1f\x8b\x08 not really gzip",
		"file.txt":  "text",
	}, "", Limits{})
	p, err := planCtx(t, c, "FROM scratch\nADD plain.tar app.tgz notar.gz file.txt /opt/\nCOPY app.tgz /copied/\n", Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		dest string
		ex   Compression
	}{
		"plain.tar": {"/opt", Uncompressed}, "app.tgz": {"/opt", Gzip},
		"notar.gz": {"/opt/notar.gz", ""}, "file.txt": {"/opt/file.txt", ""},
	}
	for _, f := range p.Stages[0].Steps[0].Copy.Files {
		if w := want[f.Path]; f.Dest != w.dest || f.Extract != w.ex {
			t.Errorf("ADD %s: dest %s extract %q, want %s %q", f.Path, f.Dest, f.Extract, w.dest, w.ex)
		}
	}
	if f := p.Stages[0].Steps[1].Copy.Files[0]; f.Extract != "" {
		t.Errorf("COPY of a tarball extracts it: %+v", f)
	}
	c = openTree(t, map[string]string{"x.tar.xz": "\xfd7zXZ\x00rest"}, "", Limits{})
	if _, err := planCtx(t, c, "FROM scratch\nADD x.tar.xz /\n", Options{}); err == nil || !strings.Contains(err.Error(), "xz") {
		t.Errorf("ADD of an xz archive: %v", err)
	}
}

func TestDockerignore(t *testing.T) {
	files := map[string]string{
		".dockerignore": "# comment\n*.log\nnode_modules\n!keep.log\ndocs\n!docs/README.md\n/secret\n",
		"app.py":        "a", "debug.log": "d", "keep.log": "k",
		"node_modules/x/index.js": "n", "docs/guide.md": "g", "docs/README.md": "r",
		"secret": "s", "sub/secret": "kept: only the root's is ignored", "sub/x.log": "kept: *.log matches at the root only",
	}
	c := openTree(t, files, "", Limits{})
	p, err := planCtx(t, c, "FROM scratch\nCOPY . /app/\n", Options{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range p.Stages[0].Steps[0].Copy.Files {
		got = append(got, f.Path)
	}
	want := []string{".dockerignore", "app.py", "docs/README.md", "keep.log", "sub", "sub/secret", "sub/x.log"}
	if !slices.Equal(got, want) {
		t.Errorf("COPY . copies %q, want %q", got, want)
	}
	for _, src := range []string{"debug.log", "node_modules/x/index.js", "secret"} {
		_, err := planCtx(t, c, "FROM scratch\nCOPY "+src+" /x\n", Options{})
		if err == nil || !strings.Contains(err.Error(), "excluded by") {
			t.Errorf("COPY of ignored %s: %v", src, err)
		}
	}
	if _, err := planCtx(t, c, "FROM scratch\nCOPY docs/README.md /x\n", Options{}); err != nil {
		t.Errorf("COPY of a file a ! pattern brings back: %v", err)
	}
	p, err = planCtx(t, c, "FROM scratch\nCOPY docs /d/\n", Options{})
	if err != nil || !slices.Equal(copied(p.Stages[0].Steps[0]), []string{"docs/README.md>/d/README.md"}) {
		t.Errorf("COPY of an ignored directory with a file brought back: %v", err)
	}
}

func TestDockerfileIgnorePrecedence(t *testing.T) {
	files := map[string]string{
		".dockerignore": "a\n", "build/Dockerfile.dev.dockerignore": "b\n", "build/Dockerfile.dev": "FROM scratch\n",
		"a": "a", "b": "b",
	}
	c := openTree(t, files, "build/Dockerfile.dev", Limits{})
	if !strings.HasSuffix(c.IgnoreFile, "Dockerfile.dev.dockerignore") {
		t.Errorf("ignore file %q", c.IgnoreFile)
	}
	if _, err := planCtx(t, c, "FROM scratch\nCOPY a /a\n", Options{}); err != nil {
		t.Errorf("a is listed only in .dockerignore, which the Dockerfile's own ignore file replaces: %v", err)
	}
	if _, err := planCtx(t, c, "FROM scratch\nCOPY b /b\n", Options{}); err == nil {
		t.Errorf("b is in Dockerfile.dev.dockerignore but was copied")
	}
}

// The Dockerfile's own ignore file is read through the context's root
// when it lies in the context: one that is a symlink out of it is refused,
// not followed.
func TestDockerfileIgnoreConfined(t *testing.T) {
	outside := t.TempDir()
	writeTree(t, outside, map[string]string{"secret": "host secret pattern"})
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"Dockerfile": "FROM scratch\n", "Dockerfile.dockerignore": "symlink:" + filepath.Join(outside, "secret")})
	c, err := OpenContext(dir, filepath.Join(dir, "Dockerfile"), Limits{})
	if err == nil {
		c.Close()
		t.Fatalf("an ignore file that is a symlink out of the context was read (ignore file %q)", c.IgnoreFile)
	}
	if strings.Contains(err.Error(), "host secret") {
		t.Errorf("the error shows the outside file's content: %v", err)
	}
}

func TestMaliciousContext(t *testing.T) {
	outside := t.TempDir()
	writeTree(t, outside, map[string]string{"secret": "host secret", "dir/file": "f"})
	files := map[string]string{
		"etc/passwd":  "in the context",
		"out":         "symlink:" + filepath.Join(outside, "secret"),
		"rel-out":     "symlink:../../../../../../" + strings.TrimPrefix(outside, "/") + "/secret",
		"outdir":      "symlink:" + filepath.Join(outside, "dir"),
		"in":          "symlink:etc/passwd",
		"loop":        "symlink:loop",
		"big":         strings.Repeat("x", 2000),
		"small":       "s",
		"ok/":         "",
		"ok/escape":   "symlink:../../",
		"ok/nested/f": "n",
	}
	c := openTree(t, files, "", Limits{MaxBytes: 1000})
	for _, tc := range []struct {
		instr string
		want  string // error text, or "" and copied
		copy  []string
	}{
		{"COPY ../x /x", "outside the build context", nil},
		{"COPY ok/../../x /x", "outside the build context", nil},
		{"COPY outdir/file /x", "outside the build context", nil},
		{"COPY ok/escape/etc/passwd /x", "outside the build context", nil},
		{"COPY /etc/passwd /x", "", []string{"etc/passwd>/x"}},
		{"COPY out /x", "", []string{"out>/x"}},
		{"COPY rel-out /x", "", []string{"rel-out>/x"}},
		{"COPY in /x", "", []string{"etc/passwd>/x"}},
		{"COPY loop /x", "too many levels", nil},
		{"COPY big /x", "limit of 1000 bytes", nil},
	} {
		t.Run(tc.instr, func(t *testing.T) {
			p, err := planCtx(t, c, "FROM scratch\n"+tc.instr+"\n", Options{})
			if tc.want != "" {
				var le *LineError
				if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.As(err, &le) || le.Line != 2 {
					t.Fatalf("error %v, want %q at line 2", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			s := p.Stages[0].Steps[0]
			if got := copied(s); !slices.Equal(got, tc.copy) {
				t.Errorf("copies %q, want %q", got, tc.copy)
			}
			for _, f := range s.Copy.Files {
				if f.Type == TypeSymlink && f.Digest != "" {
					t.Errorf("a symlink was read: %+v", f)
				}
			}
		})
	}
	// The links out are copied as links, their targets never read.
	p, err := planCtx(t, c, "FROM scratch\nCOPY out rel-out outdir /x/\n", Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range p.Stages[0].Steps[0].Copy.Files {
		if f.Type != TypeSymlink {
			t.Errorf("%s copied as %s", f.Path, f.Type)
		}
	}
	// COPY . stops at the byte limit too, and at the file limit.
	if _, err := planCtx(t, c, "FROM scratch\nCOPY . /x/\n", Options{}); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Errorf("COPY . over the byte limit: %v", err)
	}
	c2 := openTree(t, map[string]string{"a": "", "b": "", "c/d": ""}, "", Limits{MaxFiles: 3})
	if _, err := planCtx(t, c2, "FROM scratch\nCOPY a /x\n", Options{}); err == nil || !strings.Contains(err.Error(), "more than 3") {
		t.Errorf("context over the file limit: %v", err)
	}
	c2 = openTree(t, map[string]string{"a": "", "b": ""}, "", Limits{MaxFiles: 3})
	if _, err := planCtx(t, c2, "FROM scratch\n"+strings.Repeat("COPY . /x/\n", 7), Options{}); err == nil || !strings.Contains(err.Error(), "more than 12 files") {
		t.Errorf("COPY . seven times over a 3-file limit: %v", err)
	}
	// A FIFO would block a reader: refused, never opened.
	c3 := openTree(t, map[string]string{"a": "a"}, "", Limits{})
	if err := syscall.Mkfifo(filepath.Join(c3.Dir(), "fifo"), 0o644); err != nil {
		t.Skip(err)
	}
	if _, err := planCtx(t, c3, "FROM scratch\nCOPY . /x/\n", Options{}); err == nil || !strings.Contains(err.Error(), "FIFO") {
		t.Errorf("COPY of a FIFO: %v", err)
	}
}
