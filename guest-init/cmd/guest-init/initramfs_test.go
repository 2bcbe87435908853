package main

import (
	"bytes"
	"debug/elf"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/u-root/u-root/pkg/cpio"
)

// buildInitramfs does what `make initramfs` does, into dir: a static
// guest-init and an archive with it as /init.
func buildInitramfs(t *testing.T, dir string) []byte {
	t.Helper()
	bin := filepath.Join(dir, "guest-init")
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build guest-init: %v\n%s", err, out)
	}
	out := filepath.Join(dir, "initramfs.cpio")
	if b, err := exec.Command("go", "run", "../mkinitramfs", "-o", out, "--init", bin).CombinedOutput(); err != nil {
		t.Fatalf("mkinitramfs: %v\n%s", err, b)
	}
	a, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestInitramfsReproducibleAndContents(t *testing.T) {
	if testing.Short() {
		t.Skip("builds guest-init twice")
	}
	a := buildInitramfs(t, t.TempDir())
	b := buildInitramfs(t, t.TempDir())
	if !bytes.Equal(a, b) {
		t.Fatalf("two builds from the same tree differ (%d and %d bytes)", len(a), len(b))
	}
	t.Logf("initramfs: %d bytes", len(a))

	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(a)))
	if err != nil {
		t.Fatalf("read the archive back: %v", err)
	}
	got := map[string]cpio.Record{}
	var names []string
	for _, r := range recs {
		got[r.Name] = r
		names = append(names, r.Name)
	}
	t.Logf("contents: %q", names)
	want := map[string]uint64{
		".sietch": cpio.S_IFDIR | 0o700, ".sietch/lower": cpio.S_IFDIR | 0o755, ".sietch/rw": cpio.S_IFDIR | 0o755,
		"dev": cpio.S_IFDIR | 0o755, "dev/console": cpio.S_IFCHR | 0o600, "etc": cpio.S_IFDIR | 0o755,
		"init": cpio.S_IFREG | 0o755, "newroot": cpio.S_IFDIR | 0o755, "proc": cpio.S_IFDIR | 0o555,
		"run": cpio.S_IFDIR | 0o755, "sys": cpio.S_IFDIR | 0o555, "tmp": cpio.S_IFDIR | 0o1777,
	}
	if len(got) != len(want) {
		t.Errorf("archive holds %q, want exactly %d entries", names, len(want))
	}
	for name, mode := range want {
		if r, ok := got[name]; !ok || r.Mode != mode {
			t.Errorf("/%s: mode %#o (present %v), want %#o", name, r.Mode, ok, mode)
		}
	}

	// The kernel runs /init without a dynamic loader: it must be static.
	init := got["init"]
	f, err := elf.NewFile(io.NewSectionReader(init.ReaderAt, 0, int64(init.FileSize)))
	if err != nil {
		t.Fatalf("/init is not an ELF file: %v", err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("/init asks for a program interpreter: build it with CGO_ENABLED=0")
		}
	}
	if f.Machine != elf.EM_X86_64 {
		t.Errorf("/init is for %v, want x86-64", f.Machine)
	}
}
