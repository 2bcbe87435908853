package sandbox

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A built image's ENTRYPOINT and CMD become a template's start command,
// quoted so that sh -c runs exactly those words.
func TestImageStartCmd(t *testing.T) {
	for _, tc := range []struct {
		c    *ImageConfig
		want string
	}{
		{nil, ""},
		{&ImageConfig{}, ""},
		{&ImageConfig{Cmd: []string{"python", "-m", "http.server", "8000"}}, "exec 'python' '-m' 'http.server' '8000'"},
		{&ImageConfig{Entrypoint: []string{"/bin/sh", "-c"}, Cmd: []string{"echo 'it''s' $HOME"}}, `exec '/bin/sh' '-c' 'echo '\''it'\'''\''s'\'' $HOME'`},
	} {
		if got := imageStartCmd(tc.c); got != tc.want {
			t.Errorf("imageStartCmd(%+v) = %q; want %q", tc.c, got, tc.want)
		}
	}
	// The quoting survives a real shell: printf sees each word whole.
	cmd := imageStartCmd(&ImageConfig{Entrypoint: []string{"printf", "[%s]"}, Cmd: []string{"a b", "it's", "$HOME", "`x`"}})
	out, err := exec.Command("sh", "-c", cmd).Output()
	if err != nil || string(out) != "[a b][it's][$HOME][`x`]" {
		t.Errorf("sh -c %q printed %q (%v)", cmd, out, err)
	}
}

// A built image left in the state directory is offered again after a
// restart, on its base image's kernel and initramfs and with its config;
// what an unfinished build left is removed; one whose base is gone is
// skipped.
func TestBuiltImagesSurviveRestart(t *testing.T) {
	state := t.TempDir()
	files := t.TempDir()
	for _, f := range []string{"vmlinux", "initramfs.cpio", "rootfs.ext4"} {
		if err := os.WriteFile(filepath.Join(files, f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	base := ImageSpec{Name: "default", Kind: KindLinux, Kernel: filepath.Join(files, "vmlinux"), Initrd: filepath.Join(files, "initramfs.cpio"), RootFS: filepath.Join(files, "rootfs.ext4")}
	write := func(name, baseName string) {
		dir := filepath.Join(state, dirBuiltImages, name)
		os.MkdirAll(dir, 0o700)
		os.WriteFile(filepath.Join(dir, fileBuiltRoot), []byte("x"), 0o644)
		data, _ := json.Marshal(builtImage{Base: baseName, Image: Image{Name: name, Kind: KindLinux, Source: "dockerfile", Config: &ImageConfig{Workdir: "/app", Cmd: []string{"serve"}}}})
		os.WriteFile(filepath.Join(dir, fileBuiltImage), data, 0o600)
	}
	write("app", "default")
	write("orphan", "gone")
	os.MkdirAll(filepath.Join(state, dirBuiltImages, ".app-123"), 0o700) // an unfinished build
	m, err := Open(Config{StateDir: state, VMMPath: fakeVMM, Images: []ImageSpec{base}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	spec, ok := m.spec("app")
	if !ok || spec.Kernel != base.Kernel || spec.Initrd != base.Initrd || spec.RootFS != filepath.Join(state, dirBuiltImages, "app", fileBuiltRoot) || spec.Config == nil || spec.Config.Workdir != "/app" {
		t.Errorf("built image app after a restart: %+v (%v)", spec, ok)
	}
	if _, ok := m.spec("orphan"); ok {
		t.Errorf("a built image whose base image is gone is offered")
	}
	if _, err := os.Stat(filepath.Join(state, dirBuiltImages, ".app-123")); err == nil {
		t.Errorf("an unfinished build's directory was left")
	}
	names := []string{}
	for _, im := range m.Images() {
		names = append(names, im.Name)
	}
	if strings.Join(names, ",") != "app,default" {
		t.Errorf("images %v; want app and default", names)
	}
}
