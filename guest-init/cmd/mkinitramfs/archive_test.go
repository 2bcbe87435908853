package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/u-root/u-root/pkg/cpio"
)

func TestParseFileSpec(t *testing.T) {
	tests := []struct {
		in      string
		want    fileSpec
		wantErr string
	}{
		{in: "build/init:/init:0755", want: fileSpec{src: "build/init", dest: "init", mode: 0o755}},
		{in: "a:bin/agent:755", want: fileSpec{src: "a", dest: "bin/agent", mode: 0o755}},
		{in: "c:/x.y/z:4755", want: fileSpec{src: "c", dest: "x.y/z", mode: 0o4755}},
		{in: "with:colon:/etc//motd/:0644", want: fileSpec{src: "with:colon", dest: "etc/motd", mode: 0o644}},
		{in: "init", wantErr: "want SRC:DEST:MODE"},
		{in: "init:/init", wantErr: "want SRC:DEST:MODE"},
		{in: ":/init:0755", wantErr: "empty SRC"},
		{in: "init::0755", wantErr: "empty archive path"},
		{in: "init:/:0755", wantErr: "names the root"},
		{in: "init:/../etc/passwd:0644", wantErr: "contains .."},
		{in: "init:/init:0758", wantErr: "not octal"},
		{in: "init:/init:17777", wantErr: "not octal"},
		{in: "init:/init:", wantErr: "not octal"},
	}
	for _, tt := range tests {
		got, err := parseFileSpec(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseFileSpec(%q) error = %v, want it to mention %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parseFileSpec(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestParseDevSpec(t *testing.T) {
	tests := []struct {
		in      string
		want    devSpec
		wantErr string
	}{
		{in: "console:c:5:1", want: devSpec{name: "dev/console", major: 5, minor: 1}},
		{in: "/dev/vda:b:254:0", want: devSpec{name: "dev/vda", block: true, major: 254}},
		{in: "net/tun:c:10:200", want: devSpec{name: "dev/net/tun", major: 10, minor: 200}},
		{in: "console:c:5", wantErr: "want NAME:TYPE:MAJOR:MINOR"},
		{in: "console:x:5:1", wantErr: "must be c (character) or b (block)"},
		{in: "console:c:five:1", wantErr: "MAJOR"},
		{in: "console:c:5:-1", wantErr: "MINOR"},
		{in: "../etc:c:5:1", wantErr: "not a device name"},
		{in: ":c:5:1", wantErr: "not a device name"},
	}
	for _, tt := range tests {
		got, err := parseDevSpec(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseDevSpec(%q) error = %v, want it to mention %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parseDevSpec(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

// entry is what a user sees when listing an archive.
type entry struct {
	name         string
	mode         uint64
	rmajor       uint64
	rminor       uint64
	content      string
	uid, gid     uint64
	mtime, nlink uint64
}

func list(t *testing.T, archive []byte) []entry {
	t.Helper()
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(archive)))
	if err != nil {
		t.Fatalf("read archive back: %v", err)
	}
	var es []entry
	for _, r := range recs {
		data, err := io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
		if err != nil {
			t.Fatalf("read %s: %v", r.Name, err)
		}
		es = append(es, entry{r.Name, r.Mode, r.Rmajor, r.Rminor, string(data), r.UID, r.GID, r.MTime, r.NLink})
	}
	return es
}

func writeFile(t *testing.T, dir, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestArchiveContentsAndReproducible(t *testing.T) {
	dir := t.TempDir()
	initPath := writeFile(t, dir, "init", "\x7fELF init", 0o700)
	agentPath := writeFile(t, dir, "agent", "agent bytes", 0o600)
	outA := filepath.Join(dir, "a.cpio")
	outB := filepath.Join(dir, "b.cpio")
	args := []string{"--file", agentPath + ":/usr/bin/agent:0755", "--file", initPath + ":/init:0755", "--dev", "vda:b:254:0"}

	if err := run(append([]string{"-o", outA}, args...)); err != nil {
		t.Fatalf("first run: %v", err)
	}
	// Different host mtimes and modes must not change the archive.
	if err := os.Chtimes(initPath, time1, time1); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(initPath, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := run(append([]string{"-o", outB}, args...)); err != nil {
		t.Fatalf("second run: %v", err)
	}
	a, _ := os.ReadFile(outA)
	b, _ := os.ReadFile(outB)
	if !bytes.Equal(a, b) {
		t.Fatalf("same inputs gave different archives (%d and %d bytes)", len(a), len(b))
	}

	want := []entry{
		{name: "dev", mode: cpio.S_IFDIR | 0o755},
		{name: "dev/console", mode: cpio.S_IFCHR | 0o600, rmajor: 5, rminor: 1},
		{name: "dev/vda", mode: cpio.S_IFBLK | 0o600, rmajor: 254},
		{name: "init", mode: cpio.S_IFREG | 0o755, content: "\x7fELF init"},
		{name: "usr", mode: cpio.S_IFDIR | 0o755},
		{name: "usr/bin", mode: cpio.S_IFDIR | 0o755},
		{name: "usr/bin/agent", mode: cpio.S_IFREG | 0o755, content: "agent bytes"},
	}
	for i := range want {
		want[i].nlink = 1
	}
	got := list(t, a)
	if len(got) != len(want) {
		t.Fatalf("archive lists %d entries %+v, want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entry %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if !bytes.HasSuffix(bytes.TrimRight(a, "\x00"), []byte("TRAILER!!!")) {
		t.Errorf("archive does not end with the newc trailer")
	}
}

var time1 = time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)

func TestArchiveAlwaysHasConsole(t *testing.T) {
	out := filepath.Join(t.TempDir(), "min.cpio")
	if err := run([]string{"-o", out}); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(out)
	got := list(t, a)
	if len(got) != 2 || got[0].name != "dev" || got[1].name != "dev/console" || got[1].rmajor != 5 || got[1].rminor != 1 {
		t.Errorf("minimal archive = %+v, want dev/ and dev/console (5:1)", got)
	}
}

func TestRunErrors(t *testing.T) {
	dir := t.TempDir()
	f := writeFile(t, dir, "f", "x", 0o644)
	out := filepath.Join(dir, "o.cpio")
	tests := []struct {
		name    string
		args    []string
		wantErr string
		usage   bool
	}{
		{"no output", []string{"--file", f + ":/f:0644"}, "-o OUT.cpio is required", true},
		{"bad flag", []string{"-o", out, "--bogus"}, "unknown flag", true},
		{"stray arg", []string{"-o", out, "extra"}, "unexpected argument", true},
		{"bad file spec", []string{"-o", out, "--file", "nocolon"}, "want SRC:DEST:MODE", true},
		{"missing source", []string{"-o", out, "--file", filepath.Join(dir, "nope") + ":/x:0644"}, "read ", false},
		{"duplicate dest", []string{"-o", out, "--file", f + ":/x:0644", "--file", f + ":x:0600"}, "both go to /x", false},
		{"file over dir", []string{"-o", out, "--file", f + ":/dev:0644"}, "already a device or directory", false},
		{"file under file", []string{"-o", out, "--file", f + ":/a:0644", "--file", f + ":/a/b:0644"}, "to be a directory", false},
	}
	for _, tt := range tests {
		err := run(tt.args)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: run error = %v, want it to mention %q", tt.name, err, tt.wantErr)
			continue
		}
		if _, isUsage := err.(usageError); isUsage != tt.usage {
			t.Errorf("%s: usage error = %v, want %v", tt.name, isUsage, tt.usage)
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("failed runs left %s behind", out)
	}
}

func FuzzParseSpecs(f *testing.F) {
	for _, s := range []string{"build/init:/init:0755", "a:b:c", "console:c:5:1", "vda:b:254:0", "::", ":::", "x:/../y:0644", "proc:0555", "/tmp:1777"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if fs, err := parseFileSpec(s); err == nil {
			if fs.dest == "" || strings.HasPrefix(fs.dest, "/") || strings.Contains("/"+fs.dest+"/", "/../") || fs.mode > 0o7777 {
				t.Errorf("parseFileSpec(%q) accepted a bad spec: %+v", s, fs)
			}
		}
		if ds, err := parseDirSpec(s); err == nil {
			if ds.name == "" || strings.HasPrefix(ds.name, "/") || strings.Contains("/"+ds.name+"/", "/../") || ds.mode > 0o7777 {
				t.Errorf("parseDirSpec(%q) accepted a bad spec: %+v", s, ds)
			}
		}
		if ds, err := parseDevSpec(s); err == nil {
			if !strings.HasPrefix(ds.name, "dev/") || strings.Contains("/"+ds.name+"/", "/../") {
				t.Errorf("parseDevSpec(%q) accepted a bad spec: %+v", s, ds)
			}
		}
	})
}

func TestParseDirSpec(t *testing.T) {
	tests := []struct {
		in      string
		want    dirSpec
		wantErr string
	}{
		{in: "proc:0555", want: dirSpec{name: "proc", mode: 0o555}},
		{in: "/tmp:1777", want: dirSpec{name: "tmp", mode: 0o1777}},
		{in: ".sietch/lower/:755", want: dirSpec{name: ".sietch/lower", mode: 0o755}},
		{in: "proc", wantErr: "want PATH:MODE"},
		{in: ":0755", wantErr: "empty archive path"},
		{in: "/:0755", wantErr: "names the root"},
		{in: "../x:0755", wantErr: "contains .."},
		{in: "x:rwx", wantErr: "not octal"},
		{in: "x:77777", wantErr: "not octal"},
	}
	for _, tt := range tests {
		got, err := parseDirSpec(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseDirSpec(%q) error = %v, want it to mention %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parseDirSpec(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestArchiveDirs(t *testing.T) {
	dir := t.TempDir()
	f := writeFile(t, dir, "f", "x", 0o644)
	out := filepath.Join(dir, "d.cpio")
	err := run([]string{"-o", out, "--dir", "a/b:0700", "--dir", "a:0711", "--dir", "tmp:1777", "--file", f + ":/a/b/f:0644"})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(out)
	want := []entry{
		{name: "a", mode: cpio.S_IFDIR | 0o711},
		{name: "a/b", mode: cpio.S_IFDIR | 0o700},
		{name: "a/b/f", mode: cpio.S_IFREG | 0o644, content: "x"},
		{name: "dev", mode: cpio.S_IFDIR | 0o755},
		{name: "dev/console", mode: cpio.S_IFCHR | 0o600, rmajor: 5, rminor: 1},
		{name: "tmp", mode: cpio.S_IFDIR | 0o1777},
	}
	got := list(t, a)
	if len(got) != len(want) {
		t.Fatalf("archive lists %+v, want %d entries", got, len(want))
	}
	for i := range want {
		want[i].nlink = 1
		if got[i] != want[i] {
			t.Errorf("entry %d = %+v, want %+v", i, got[i], want[i])
		}
	}

	for _, tc := range []struct {
		args    []string
		wantErr string
	}{
		{[]string{"--dir", "x:0755", "--dir", "/x/:0700"}, "given twice"},
		{[]string{"--dir", "x:0755", "--file", f + ":/x:0644"}, "already a device or directory"},
		{[]string{"--dir", "dev/console:0755"}, "also given as a --dir"},
		{[]string{"--file", f + ":/x:0644", "--dir", "x/y:0755"}, "already a device or directory"},
	} {
		if err := run(append([]string{"-o", out}, tc.args...)); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("run %q: error %v, want it to mention %q", tc.args, err, tc.wantErr)
		}
	}
}
