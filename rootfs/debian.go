package rootfs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Inputs of the default image; a change here changes its cache key.
const (
	DefaultSuite  = "bookworm"
	DefaultMirror = "http://deb.debian.org/debian"
	// defaultRecipe versions how Default turns its inputs into an image;
	// bump it when that changes so cached images are rebuilt.
	defaultRecipe = "sietch-default-rootfs-v1"
)

// DefaultPackages are what agents expect on top of Debian minbase.
var DefaultPackages = []string{"python3", "git", "curl", "ca-certificates", "iproute2"}

// FromDebian writes an ext4 image of a minimal Debian (debootstrap
// --variant=minbase) with packages added. It needs root (debootstrap
// chroots and makes device nodes) and a reachable mirror.
func FromDebian(ctx context.Context, suite, mirror string, packages []string, out string, o Options) error {
	return fromDebian(ctx, suite, mirror, packages, nil, out, o)
}

// fromDebian is FromDebian with apt packages installed by apt-get in the
// tree after debootstrap: debootstrap's own dependency handling cannot
// configure large sets such as Chromium's.
func fromDebian(ctx context.Context, suite, mirror string, packages, apt []string, out string, o Options) error {
	if !validDebName(suite) {
		return fmt.Errorf("%w: debian suite %q (want a name such as bookworm)", ErrBadSource, suite)
	}
	for _, p := range slices.Concat(packages, apt) {
		if !validDebName(p) {
			return fmt.Errorf("%w: debian package name %q", ErrBadSource, p)
		}
	}
	if mirror == "" {
		mirror = DefaultMirror
	}
	debootstrap, err := findTool("debootstrap", "debootstrap")
	if err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return errors.New("debian image: debootstrap needs root (it chroots and creates device nodes): run as root, or build from a directory or OCI image instead")
	}
	stage, err := stagingDir(out)
	if err != nil {
		return err
	}
	defer os.RemoveAll(stage)
	args := []string{"--variant=minbase"}
	if len(packages) > 0 {
		args = append(args, "--include="+strings.Join(packages, ","))
	}
	args = append(args, suite, stage, mirror)
	progressf(o.Progress, "rootfs: %s %s\n", debootstrap, strings.Join(args, " "))
	start := time.Now()
	if tail, err := runPrivate(ctx, o, nil, debootstrap, args...); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("debootstrap: %w", ctx.Err())
		}
		return fmt.Errorf("debootstrap %s from %s: %w (check the suite, the package names and that the mirror is reachable; see %s/debootstrap/debootstrap.log):\n%s",
			suite, mirror, err, stage, tail)
	}
	progressf(o.Progress, "rootfs: debootstrap took %s\n", time.Since(start).Round(time.Second))
	if len(apt) > 0 {
		if err := aptInstall(ctx, stage, apt, o); err != nil {
			return err
		}
	}
	if err := trimDebian(stage); err != nil {
		return err
	}
	return build(ctx, stage, out, o)
}

// aptInstall installs packages (without recommends) into the Debian tree
// at root with apt-get in a chroot, in a private mount namespace holding
// its /proc, with services kept from starting (policy-rc.d).
func aptInstall(ctx context.Context, root string, packages []string, o Options) error {
	policy := filepath.Join(root, "usr/sbin/policy-rc.d")
	if err := os.WriteFile(policy, []byte("#!/bin/sh\nexit 101\n"), 0o755); err != nil {
		return fmt.Errorf("apt-get in the image: %w", err)
	}
	defer os.Remove(policy)
	if resolv, err := os.ReadFile("/etc/resolv.conf"); err == nil {
		os.WriteFile(filepath.Join(root, "etc/resolv.conf"), resolv, 0o644) // the mirror's name; trimDebian removes it
	}
	const script = `set -e
mount -t proc proc "$0/proc"
chroot "$0" apt-get -q update
chroot "$0" apt-get -q -y --no-install-recommends -o Dpkg::Use-Pty=0 install "$@"
chroot "$0" apt-get clean`
	progressf(o.Progress, "rootfs: apt-get install %s\n", strings.Join(packages, " "))
	start := time.Now()
	env := []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C"}
	if tail, err := runPrivate(ctx, o, env, "/bin/sh", append([]string{"-c", script, root}, packages...)...); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("apt-get install: %w", ctx.Err())
		}
		return fmt.Errorf("apt-get install %s in the image: %w (check the package names and that the mirror is reachable):\n%s", strings.Join(packages, " "), err, tail)
	}
	progressf(o.Progress, "rootfs: apt-get took %s\n", time.Since(start).Round(time.Second))
	return nil
}

// runPrivate runs name in a private mount namespace, so that what it
// mounts in the staging tree (/proc, /sys) vanishes with it even if it is
// killed and the tree can be removed safely; in a process group of its
// own, which a cancelled ctx stops. It returns the end of its output for
// error messages; the output also goes to o.Progress. env nil: sietch's.
func runPrivate(ctx context.Context, o Options, env []string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: unix.CLONE_NEWNS, Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	var tail tailBuffer
	cmd.Stdout, cmd.Stderr = &tail, &tail
	if o.Progress != nil {
		w := io.MultiWriter(&tail, o.Progress)
		cmd.Stdout, cmd.Stderr = w, w
	}
	err := cmd.Run()
	return tail.String(), err
}

// validDebName accepts Debian package and suite names (Debian Policy
// §5.6.1: lower case letters, digits, + - . ; we also allow upper case for
// suites and :arch qualifiers), so nothing reaches debootstrap as an option.
func validDebName(s string) bool {
	if s == "" || s[0] == '-' || s[0] == '.' || strings.Contains(s, "..") {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("+-.:_", c)) {
			return false
		}
	}
	return true
}

// trimDebian drops what debootstrap copies from the build host or leaves
// behind: downloaded packages and lists (size), and the host's resolv.conf
// and hostname (guest-init writes both from the kernel command line).
func trimDebian(root string) error {
	for _, glob := range []string{"var/cache/apt/archives/*.deb", "var/lib/apt/lists/*_*", "var/log/*.log"} {
		matches, err := filepath.Glob(filepath.Join(root, glob))
		if err != nil {
			return err
		}
		for _, m := range matches {
			if err := os.Remove(m); err != nil {
				return fmt.Errorf("trim debian tree: %w", err)
			}
		}
	}
	for _, f := range []string{"etc/resolv.conf", "etc/hostname"} {
		if err := os.Remove(filepath.Join(root, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("trim debian tree: %w", err)
		}
	}
	return nil
}

// DesktopPackages are the desktop image's packages on top of
// DefaultPackages: an X server (Xvfb), the small X utilities (xsetroot,
// xrandr; xwd and xlogo from x11-apps), xdotool for scripts that expect
// it, and a font. The agent does screenshots, input and VNC itself, over
// one X connection (docs/AGENT.md); xwd and xdotool are also the
// process-per-action peer of `make bench`.
var DesktopPackages = []string{"xvfb", "x11-xserver-utils", "x11-apps", "xdotool", "fonts-dejavu-core"}

// BrowserPackages are what the desktop image adds unless built without a
// browser: Chromium, a window manager (Openbox, whose --startup hook tells
// the template its desktop is up) and noVNC's page, which the agent
// serves with its VNC (the package's websockify and Node.js dependencies
// are not used).
var BrowserPackages = []string{"chromium", "openbox", "novnc"}

// Default returns the path of the default image (Debian bookworm minbase
// with DefaultPackages), building it into cacheDir first unless an image
// built from the same inputs is already there.
func Default(ctx context.Context, cacheDir string, o Options) (string, error) {
	return cached(ctx, cacheDir, "default", DefaultPackages, nil, o)
}

// Desktop is Default with DesktopPackages too, and BrowserPackages
// unless browser is false: the image of desktop sandboxes.
func Desktop(ctx context.Context, cacheDir string, o Options, browser bool) (string, error) {
	packages := append(slices.Clone(DefaultPackages), DesktopPackages...)
	var apt []string
	if browser {
		apt = BrowserPackages
	}
	return cached(ctx, cacheDir, "desktop", packages, apt, o)
}

// cached returns the image of packages on Debian DefaultSuite in
// cacheDir, building it first unless one of the same inputs is there.
func cached(ctx context.Context, cacheDir, what string, packages, apt []string, o Options) (string, error) {
	if cacheDir == "" {
		return "", fmt.Errorf("%s image: no cache directory given", what)
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", fmt.Errorf("%s image: create cache directory: %w", what, err)
	}
	out := filepath.Join(cacheDir, imageKey(packages, apt, o)+".ext4")
	if _, err := os.Stat(out); err == nil {
		progressf(o.Progress, "rootfs: using cached %s\n", out)
		return out, nil
	}
	// One builder per image: a second caller waits, then finds it built.
	lock, err := os.OpenFile(out+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", fmt.Errorf("%s image: lock: %w", what, err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return "", fmt.Errorf("%s image: lock: %w", what, err)
	}
	defer unix.Flock(int(lock.Fd()), unix.LOCK_UN)
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	if err := fromDebian(ctx, DefaultSuite, DefaultMirror, packages, apt, out, o); err != nil {
		return "", fmt.Errorf("%s image: %w", what, err)
	}
	return out, nil
}

// imageKey hashes every input of a cached image. The default image's key
// is what it was before the desktop image existed, so caches stay good.
func imageKey(packages, apt []string, o Options) string {
	pkgs := slices.Clone(packages)
	slices.Sort(pkgs)
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%s\n%s\n%d\n%q\n", defaultRecipe, DefaultSuite, DefaultMirror, strings.Join(pkgs, ","), o.SizeBytes, o.Label)
	if len(apt) > 0 {
		fmt.Fprintf(h, "apt-get: %s\n", strings.Join(apt, ","))
	}
	return fmt.Sprintf("debian-%s-%x", DefaultSuite, h.Sum(nil)[:8])
}

// tailBuffer keeps the last 4 KiB written, for error messages.
type tailBuffer struct{ b bytes.Buffer }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b.Write(p)
	if n := t.b.Len(); n > 4096 {
		t.b.Next(n - 4096)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return t.b.String() }
