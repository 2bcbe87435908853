package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/sietch-vm/sietch/sandbox"
)

// parseImage parses NAME:key=value,... for --image. cmdline= comes last
// and takes the rest of the string, commas included (clearcpuid=a,b).
func parseImage(s string) (sandbox.ImageSpec, error) {
	name, rest, ok := strings.Cut(s, ":")
	if !ok || name == "" {
		return sandbox.ImageSpec{}, fmt.Errorf("%q: want NAME:kind=...,kernel=...", s)
	}
	spec := sandbox.ImageSpec{Name: name}
	if before, cmdline, ok := strings.Cut(rest, "cmdline="); ok {
		if before != "" && !strings.HasSuffix(before, ",") {
			return spec, fmt.Errorf("%q: cmdline= must be its own option, the last one", s)
		}
		spec.Cmdline = cmdline
		rest = strings.TrimSuffix(before, ",")
	}
	seen := map[string]bool{}
	for _, kv := range strings.Split(rest, ",") {
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || v == "" {
			return spec, fmt.Errorf("%q: option %q: want key=value", s, kv)
		}
		if seen[k] {
			return spec, fmt.Errorf("%q: %s is given twice", s, k)
		}
		seen[k] = true
		switch k {
		case "kind":
			spec.Kind = v
		case "kernel":
			spec.Kernel = v
		case "initrd":
			spec.Initrd = v
		case "rootfs":
			spec.RootFS = v
		case "mem":
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSuffix(v, "M"), "Mi"))
			if err != nil || n <= 0 {
				return spec, fmt.Errorf("%q: mem=%s: want MiB, such as 256", s, v)
			}
			spec.MemMiB = n
		default:
			return spec, fmt.Errorf("%q: unknown option %q (kind, kernel, initrd, rootfs, mem, cmdline)", s, k)
		}
	}
	switch {
	case spec.Kind != sandbox.KindLinux && spec.Kind != sandbox.KindTestguest:
		return spec, fmt.Errorf("%q: kind=%q: want kind=linux or kind=testguest", s, spec.Kind)
	case spec.Kernel == "":
		return spec, fmt.Errorf("%q: kernel= is required", s)
	}
	return spec, nil
}

// imagesFile is the image configuration sietchd reads from its state
// directory when no --image is given.
const imagesFile = "images.json"

// defaultCmdline is the kernel command line of the default image; the vmm
// adds the compatibility profile on hosts that need it.
const defaultCmdline = "console=ttyS0 reboot=k panic=-1 quiet"

// defaultMemMiB is the default image's memory: python3 and the agent need
// more than the 128 MiB a test guest gets.
const defaultMemMiB = 256

// imageFile is one image in images.json. Relative paths are relative to
// the file's directory.
type imageFile struct {
	Name      string `json:"name"`
	Kind      string `json:"kind"`
	Kernel    string `json:"kernel"`
	Initrd    string `json:"initrd,omitempty"`
	RootFS    string `json:"rootfs,omitempty"`
	Cmdline   string `json:"cmdline,omitempty"`
	MemoryMiB int    `json:"memory_mib,omitempty"`
}

// loadImagesFile reads the images of an images.json; ok is false when the
// file does not exist.
func loadImagesFile(path string) (specs []sandbox.ImageSpec, ok bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, true, err
	}
	var doc struct {
		Images []imageFile `json:"images"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		return nil, true, fmt.Errorf("%s: %w (want {\"images\": [{\"name\", \"kind\", \"kernel\", \"initrd\", \"rootfs\", \"cmdline\", \"memory_mib\"}]})", path, err)
	}
	if len(doc.Images) == 0 {
		return nil, true, fmt.Errorf("%s lists no images; add one or remove the file", path)
	}
	dir := filepath.Dir(path)
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	for i, im := range doc.Images {
		if im.Kind != sandbox.KindLinux && im.Kind != sandbox.KindTestguest {
			return nil, true, fmt.Errorf("%s: image %d (%q): kind %q: want %q or %q", path, i, im.Name, im.Kind, sandbox.KindLinux, sandbox.KindTestguest)
		}
		if im.MemoryMiB < 0 {
			return nil, true, fmt.Errorf("%s: image %q: memory_mib %d is negative", path, im.Name, im.MemoryMiB)
		}
		specs = append(specs, sandbox.ImageSpec{Name: im.Name, Kind: im.Kind, Kernel: abs(im.Kernel), Initrd: abs(im.Initrd),
			RootFS: abs(im.RootFS), Cmdline: im.Cmdline, MemMiB: im.MemoryMiB})
	}
	return specs, true, nil
}

// buildOutput is one file of the default image and the make target that
// builds it.
type buildOutput struct {
	rel, target string
}

// defaultImageFiles are the standard build outputs the default image is
// made of, under the build directory.
var defaultImageFiles = [3]buildOutput{
	{"kernel/vmlinux", "kernel"},
	{"initramfs/initramfs.cpio", "initramfs"},
	{"rootfs.ext4", "image"},
}

// defaultImage is the image "default" made of the standard build outputs
// under buildDir. When some are missing it says which, and which make
// targets build them.
func defaultImage(buildDir string) (sandbox.ImageSpec, error) {
	var paths [3]string
	var missing, targets []string
	for i, f := range defaultImageFiles {
		paths[i] = filepath.Join(buildDir, f.rel)
		if _, err := os.Stat(paths[i]); err != nil {
			missing = append(missing, paths[i])
			targets = append(targets, f.target)
		}
	}
	if len(missing) > 0 {
		return sandbox.ImageSpec{}, fmt.Errorf("the default image is not built: %s missing; build it with `make %s` (or `make quickstart`), or give --image, or describe images in %s in the state directory",
			strings.Join(missing, ", "), strings.Join(targets, " "), imagesFile)
	}
	return sandbox.ImageSpec{Name: "default", Kind: sandbox.KindLinux, Kernel: paths[0], Initrd: paths[1], RootFS: paths[2],
		Cmdline: defaultCmdline, MemMiB: defaultMemMiB}, nil
}

// desktopMemMiB is the desktop image's memory: an X server and its
// clients on top of what the default image needs.
const desktopMemMiB = 512

// desktopImage is the image "desktop" when the build directory has
// desktop.ext4 (`make image-desktop`): the default image's kernel and
// initramfs with that root, and the desktop's start command and ready
// check for a template built from it.
func desktopImage(buildDir string, def sandbox.ImageSpec) (sandbox.ImageSpec, bool) {
	root := filepath.Join(buildDir, "desktop.ext4")
	if _, err := os.Stat(root); err != nil {
		return sandbox.ImageSpec{}, false
	}
	d := def
	d.Name, d.RootFS, d.MemMiB, d.Config = "desktop", root, desktopMemMiB, sandbox.DesktopConfig()
	return d, true
}

// defaultBuildDir is build/ in the source tree sietchd was built in: the
// directory beside the bin/ that holds it.
func defaultBuildDir() string {
	self, err := os.Executable()
	if err != nil {
		return "build"
	}
	if r, err := filepath.EvalSymlinks(self); err == nil {
		self = r
	}
	return filepath.Join(filepath.Dir(filepath.Dir(self)), "build")
}
