// Package testguest builds the freestanding C test guests that KVM-level tests boot.
package testguest

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
)

//go:embed src
var src embed.FS

// runtime is linked into every guest: entry, traps and services at CPL0,
// the CPL3 library, and the AP trampoline.
var runtime = []string{"crt0.S", "trampoline.S", "kernel.c", "user.c", "format.c", "cpus.c"}

// guests maps each guest to its own sources; see src/<name>.c for what it does.
var guests = map[string][]string{
	"hello":          {"hello.c"},
	"counter":        {"counter.c"},
	"pingpong":       {"pingpong.c"},
	"smp":            {"smp.c"},
	"poweroff":       {"poweroff.c"},
	"reset":          {"reset.c"},
	"fault":          {"fault.c"},
	"silent":         {"silent.c"},
	"virtio-blk":     {"virtio-blk.c", "virtio.c"},
	"virtio-rng":     {"virtio-rng.c", "virtio.c"},
	"virtio-vsock":   {"virtio-vsock.c", "virtio.c"},
	"virtio-net":     {"virtio-net.c", "virtio.c"},
	"virtio-hostile": {"virtio-hostile.c", "virtio.c"},
}

// cflags are the flags from the brief plus what keeps CPL0 code to
// instructions our emulated-CPL0 hosts implement (no endbr64, no SSE, no
// libc calls synthesised from loops).
var cflags = []string{
	"-ffreestanding", "-nostdlib", "-static", "-fno-pic", "-no-pie",
	"-mno-red-zone", "-mgeneral-regs-only", "-fno-stack-protector", "-O2",
	"-march=x86-64", "-mtune=generic", "-fcf-protection=none",
	"-fno-asynchronous-unwind-tables", "-fno-tree-loop-distribute-patterns",
	"-Wall", "-Wextra",
	"-Wl,-T,guest.ld", "-Wl,-z,max-page-size=4096", "-Wl,--build-id=none",
	"-Wl,-z,noexecstack",
}

// ErrNoCompiler is returned by Build when gcc is not installed.
var ErrNoCompiler = errors.New("gcc not found in PATH: install gcc (e.g. apt-get install gcc) to build test guests")

// Names lists the guests Build knows, sorted.
func Names() []string {
	names := make([]string, 0, len(guests))
	for n := range guests {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Build compiles guest name into outDir/name.elf and returns its path.
func Build(outDir, name string) (string, error) {
	own, ok := guests[name]
	if !ok {
		return "", fmt.Errorf("build test guest %q: unknown guest (known: %s)", name, strings.Join(Names(), ", "))
	}
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		return "", fmt.Errorf("build test guest %s: %w", name, ErrNoCompiler)
	}
	out, err := filepath.Abs(filepath.Join(outDir, name+".elf"))
	if err != nil {
		return "", fmt.Errorf("build test guest %s: %w", name, err)
	}
	dir, err := os.MkdirTemp(outDir, "src-"+name+"-")
	if err != nil {
		return "", fmt.Errorf("build test guest %s: %w", name, err)
	}
	defer os.RemoveAll(dir)
	if err := extract(dir); err != nil {
		return "", fmt.Errorf("build test guest %s: unpack sources: %w", name, err)
	}
	args := append(append([]string{}, cflags...), "-o", out)
	args = append(append(args, runtime...), own...)
	cmd := exec.Command(gcc, args...)
	cmd.Dir = dir
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build test guest %s: gcc %s: %v\n%s", name, strings.Join(args, " "), err, msg)
	}
	return out, nil
}

// extract writes the embedded sources into dir.
func extract(dir string) error {
	return fs.WalkDir(src, "src", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := src.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, filepath.Base(path)), data, 0o644)
	})
}

var cache struct {
	sync.Mutex
	dir   string
	built map[string]string
}

// Path returns guest name built for this test binary, building it on first
// use into a directory shared by the binary's tests. It skips tb when gcc is
// missing and fails it when the build fails.
func Path(tb testing.TB, name string) string {
	tb.Helper()
	cache.Lock()
	defer cache.Unlock()
	if p, ok := cache.built[name]; ok {
		return p
	}
	if cache.dir == "" {
		dir, err := os.MkdirTemp("", "sietch-testguest-")
		if err != nil {
			tb.Fatalf("test guest directory: %v", err)
		}
		cache.dir = dir
		cache.built = map[string]string{}
	}
	p, err := Build(cache.dir, name)
	if errors.Is(err, ErrNoCompiler) {
		tb.Skip(err)
	}
	if err != nil {
		tb.Fatal(err)
	}
	cache.built[name] = p
	return p
}
