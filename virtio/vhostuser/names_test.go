package vhostuser

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// exportedTypes lists the exported types declared in dir's non-test files.
func exportedTypes(t *testing.T, dir string) map[string]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]string{}
	fset := token.NewFileSet()
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		src, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, path, src, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.TYPE {
				continue
			}
			for _, s := range g.Specs {
				if name := s.(*ast.TypeSpec).Name.Name; ast.IsExported(name) {
					types[name] = path
				}
			}
		}
	}
	return types
}

// Package virtio's types and this package's are used side by side (the
// vmm's front-end is a virtio.Device; a device process's model is a
// DeviceModel): no name may stand for two things.
func TestNoTypeNameSharedWithVirtio(t *testing.T) {
	ours, theirs := exportedTypes(t, "."), exportedTypes(t, "..")
	if len(ours) == 0 || len(theirs) == 0 {
		t.Fatalf("found %d types here and %d in package virtio", len(ours), len(theirs))
	}
	for name, path := range ours {
		if other, ok := theirs[name]; ok {
			t.Errorf("type %s is declared in %s and in %s", name, path, other)
		}
	}
}
