package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sietch-vm/sietch/sandbox"
)

func TestParseImage(t *testing.T) {
	tests := []struct {
		in      string
		want    sandbox.ImageSpec
		wantErr string
	}{
		{in: "tg:kind=testguest,kernel=/g/counter.elf,mem=64",
			want: sandbox.ImageSpec{Name: "tg", Kind: "testguest", Kernel: "/g/counter.elf", MemMiB: 64}},
		{in: "default:kind=linux,kernel=/k,initrd=/i,rootfs=/r.ext4,cmdline=console=ttyS0 clearcpuid=smap,popcnt quiet",
			want: sandbox.ImageSpec{Name: "default", Kind: "linux", Kernel: "/k", Initrd: "/i", RootFS: "/r.ext4", Cmdline: "console=ttyS0 clearcpuid=smap,popcnt quiet"}},
		{in: "c:cmdline=n=5,kind=testguest,kernel=/x", wantErr: "want kind=linux"},
		{in: "nokind:kernel=/k", wantErr: "kind="},
		{in: "x:kind=linux", wantErr: "kernel= is required"},
		{in: "kind=linux,kernel=/k", wantErr: "want NAME:"},
		{in: ":kind=linux,kernel=/k", wantErr: "want NAME:"},
		{in: "x:kind=linux,kernel=/k,color=red", wantErr: "unknown option"},
		{in: "x:kind=linux,kernel=/k,kernel=/j", wantErr: "twice"},
		{in: "x:kind=linux,kernel=/k,mem=lots", wantErr: "mem=lots"},
		{in: "x:kind=linux,kernel", wantErr: "want key=value"},
		{in: "x:kind=linux,kernel=/k,xcmdline=a", wantErr: "own option"},
	}
	for _, tt := range tests {
		got, err := parseImage(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseImage(%q) = %+v, %v; want an error with %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parseImage(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestRunUsage(t *testing.T) {
	var b strings.Builder
	if code := run([]string{"--bogus"}, &b); code != exitUsage {
		t.Errorf("sietchd --bogus exited %d, want %d", code, exitUsage)
	}
	b.Reset()
	if code := run([]string{"--image", "x"}, &b); code != exitUsage || !strings.Contains(b.String(), "--image") {
		t.Errorf("sietchd --image x exited %d (%s), want %d naming --image", code, b.String(), exitUsage)
	}
	for _, args := range [][]string{
		{"--net-default", "maybe"}, {"--net-pool", "10.99.0.0"}, {"--net-pool", "fd00::/64x"},
		{"--net-resolver", "dns.example"}, {"--net-resolver", "1.2.3.4:53:53"},
	} {
		b.Reset()
		if code := run(args, &b); code != exitUsage || !strings.Contains(b.String(), args[0]) {
			t.Errorf("sietchd %s exited %d (%s), want %d naming %s", strings.Join(args, " "), code, b.String(), exitUsage, args[0])
		}
	}
	b.Reset()
	if code := run([]string{"--help"}, &b); code != exitOK || !strings.Contains(b.String(), "--state-dir") {
		t.Errorf("sietchd --help exited %d:\n%s", code, b.String())
	}
}

func TestImagesFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, imagesFile)
	if _, ok, err := loadImagesFile(path); ok || err != nil {
		t.Fatalf("no file: ok %v err %v; want neither", ok, err)
	}
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(`{"images": [{"name": "py", "kind": "linux", "kernel": "k/vmlinux", "initrd": "/abs/i.cpio", "rootfs": "py.ext4", "cmdline": "console=ttyS0", "memory_mib": 512}]}`)
	specs, ok, err := loadImagesFile(path)
	want := sandbox.ImageSpec{Name: "py", Kind: "linux", Kernel: filepath.Join(dir, "k/vmlinux"), Initrd: "/abs/i.cpio",
		RootFS: filepath.Join(dir, "py.ext4"), Cmdline: "console=ttyS0", MemMiB: 512}
	if !ok || err != nil || len(specs) != 1 || specs[0] != want {
		t.Fatalf("got %+v %v %v, want [%+v]", specs, ok, err, want)
	}
	for _, bad := range []struct{ doc, want string }{
		{`{"images": [{"name": "x", "kind": "linux", "kernel": "k", "colour": "red"}]}`, "colour"},
		{`{"images": []}`, "lists no images"},
		{`{"images": [{"name": "x", "kind": "vm", "kernel": "k"}]}`, `kind "vm"`},
		{`{"images": [{"name": "x", "kind": "linux", "kernel": "k", "memory_mib": -1}]}`, "negative"},
		{`{"images": `, "want {"},
	} {
		write(bad.doc)
		if _, _, err := loadImagesFile(path); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: got %v, want an error saying %q", bad.doc, err, bad.want)
		}
	}
}

func TestDefaultImage(t *testing.T) {
	build := t.TempDir()
	_, err := defaultImage(build)
	if err == nil || !strings.Contains(err.Error(), "make kernel initramfs image") || !strings.Contains(err.Error(), filepath.Join(build, "rootfs.ext4")) {
		t.Fatalf("nothing built: got %v, want the missing files and `make kernel initramfs image`", err)
	}
	for _, f := range defaultImageFiles[:2] {
		os.MkdirAll(filepath.Join(build, filepath.Dir(f.rel)), 0o755)
		os.WriteFile(filepath.Join(build, f.rel), []byte("x"), 0o644)
	}
	if _, err := defaultImage(build); err == nil || !strings.Contains(err.Error(), "`make image`") || strings.Contains(err.Error(), "vmlinux") {
		t.Fatalf("root image missing: got %v, want only `make image` named", err)
	}
	os.WriteFile(filepath.Join(build, "rootfs.ext4"), []byte("x"), 0o644)
	spec, err := defaultImage(build)
	if err != nil || spec.Name != "default" || spec.Kind != sandbox.KindLinux || spec.RootFS != filepath.Join(build, "rootfs.ext4") || spec.MemMiB != defaultMemMiB {
		t.Fatalf("all built: got %+v %v", spec, err)
	}
	// The state directory's images.json comes before the build directory.
	state := t.TempDir()
	os.WriteFile(filepath.Join(state, imagesFile), []byte(`{"images": [{"name": "tg", "kind": "testguest", "kernel": "/g.elf"}]}`), 0o600)
	specs, err := configuredImages(state, build, slog.New(slog.DiscardHandler))
	if err != nil || len(specs) != 1 || specs[0].Name != "tg" {
		t.Fatalf("with images.json: %+v %v", specs, err)
	}
	specs, err = configuredImages(t.TempDir(), build, slog.New(slog.DiscardHandler))
	if err != nil || len(specs) != 1 || specs[0].Name != "default" {
		t.Fatalf("without images.json: %+v %v", specs, err)
	}
	// With desktop.ext4 built too: the image desktop, on the default
	// image's kernel and initramfs, with the desktop's template config.
	os.WriteFile(filepath.Join(build, "desktop.ext4"), []byte("x"), 0o644)
	specs, err = configuredImages(t.TempDir(), build, slog.New(slog.DiscardHandler))
	if err != nil || len(specs) != 2 || specs[1].Name != "desktop" {
		t.Fatalf("with desktop.ext4: %+v %v", specs, err)
	}
	d := specs[1]
	if d.Kernel != spec.Kernel || d.Initrd != spec.Initrd || d.RootFS != filepath.Join(build, "desktop.ext4") || d.Config == nil || d.Config.Display != ":1" || d.Config.ReadyCmd == "" {
		t.Errorf("desktop image %+v (config %+v)", d, d.Config)
	}
}
