package dockerfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse: any Dockerfile text parses and plans (without a context)
// without a panic, and every error names a line of the text.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		multiStage,
		"FROM scratch\nRUN echo hi\n",
		"# escape=`\nFROM scratch\nRUN echo `\n  hi\n",
		"ARG A=1\nFROM alpine:$A AS x\nENV B=${A:-2} C=\"${A:+3}\"\nCOPY --from=x /a /b\n",
		"FROM scratch\nEXPOSE 1-3/udp\nLABEL a=b\nUSER u:g\nWORKDIR ../x\nSTOPSIGNAL 9\n",
		"FROM scratch\nRUN <<EOF\nx\nEOF\n",
		"FROM scratch\nHEALTHCHECK CMD true\nVOLUME [\"/v\"]\nMAINTAINER m\n",
		"FROM scratch\nSHELL [\"a\"]\nCMD [\"x\"]\nENTRYPOINT y\nARG\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		lines := strings.Count(text, "\n") + 1
		check := func(err error) {
			var le *LineError
			if !errors.As(err, &le) {
				if strings.Contains(err.Error(), "bytes, more than") {
					return // the size limit, before there are lines
				}
				t.Fatalf("error without a line: %v", err)
			}
			if le.Line < 1 || le.Line > lines {
				t.Fatalf("error at line %d of %d: %v", le.Line, lines, err)
			}
		}
		df, err := Parse([]byte(text))
		if err != nil {
			check(err)
			return
		}
		if _, err := df.Plan(nil, Options{BuildArgs: map[string]string{"A": "x"}}); err != nil {
			check(err)
		}
	})
}

// FuzzContextPaths: any .dockerignore and COPY source resolve without a
// panic to entries inside the context that the ignore file leaves in, in a
// tree with links out, links in, loops and an ignored directory.
func FuzzContextPaths(f *testing.F) {
	dir := f.TempDir()
	outside := f.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o644); err != nil {
		f.Fatal(err)
	}
	for name, target := range map[string]string{
		"out": filepath.Join(outside, "secret"), "outdir": outside, "up": "../..", "in": "a/b", "loop": "loop", "a/self": ".",
	} {
		os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o755)
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			f.Fatal(err)
		}
	}
	for _, name := range []string{"a/b/c.txt", "a/d.log", "e", "node_modules/m/i.js"} {
		os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(name), 0o644); err != nil {
			f.Fatal(err)
		}
	}
	for _, s := range [][2]string{
		{"*.log\n!a/d.log\n", "."},
		{"node_modules\n", "a/*"},
		{"a\n!a/b/c.txt", "in/c.txt"},
		{"**/*.txt", "a/self/self/b"},
		{"[", "../x"},
		{"", "up/etc/passwd"},
		{"!", "outdir/secret"},
		{"/e\n#c\n", "/a/../e"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, ignore, src string) {
		if err := os.WriteFile(filepath.Join(dir, ".dockerignore"), []byte(ignore), 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := OpenContext(dir, "", Limits{MaxFiles: 100, MaxBytes: 1 << 20})
		if err != nil {
			return // a bad pattern
		}
		defer c.Close()
		ms, err := c.resolve(src)
		if err != nil {
			return
		}
		for _, m := range ms {
			es := m.under
			if m.top != nil {
				es = append(es, m.top)
			}
			for _, e := range es {
				if !filepath.IsLocal(e.path) {
					t.Fatalf("source %q gave %q, which is not inside the context", src, e.path)
				}
				if c.ignored(e.path) {
					t.Fatalf("source %q gave %q, which %q ignores", src, e.path, ignore)
				}
				if e.typ == TypeFile {
					if err := c.hash(e); err != nil {
						t.Fatalf("hash %s: %v", e.path, err)
					}
				}
			}
		}
	})
}
