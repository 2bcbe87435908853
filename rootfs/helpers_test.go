package rootfs

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// needTools skips when e2fsprogs is absent (CI installs it).
func needTools(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"mkfs.ext4", "debugfs", "e2fsck"} {
		if _, err := findTool(tool, "e2fsprogs"); err != nil {
			t.Skipf("needs e2fsprogs: %v", err)
		}
	}
}

func tool(t *testing.T, name string) string {
	t.Helper()
	p, err := findTool(name, "e2fsprogs")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// fsck fails the test unless e2fsck finds the image clean.
func fsck(t *testing.T, img string) {
	t.Helper()
	out, err := exec.Command(tool(t, "e2fsck"), "-fn", img).CombinedOutput()
	if err != nil {
		t.Fatalf("e2fsck -fn %s: %v\n%s", img, err, out)
	}
}

// debugfs runs one read-only request against the image.
func debugfs(t *testing.T, img, request string) string {
	t.Helper()
	out, err := exec.Command(tool(t, "debugfs"), "-R", request, img).Output()
	if err != nil {
		t.Fatalf("debugfs -R %q: %v", request, err)
	}
	return string(out)
}

// debugfsErr returns debugfs's complaint about request ("" if none).
func debugfsErr(t *testing.T, img, request string) string {
	t.Helper()
	cmd := exec.Command(tool(t, "debugfs"), "-R", request, img)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("debugfs -R %q: %v", request, err)
	}
	var lines []string
	for _, l := range strings.Split(stderr.String(), "\n") {
		if l != "" && !strings.HasPrefix(l, "debugfs ") {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}

// mustNotExist fails if any of the paths exists.
func mustNotExist(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s exists after a failed build", p)
		}
	}
}

// noLeftovers fails if dir holds anything but the named entries.
func noLeftovers(t *testing.T, dir string, keep ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !contains(keep, e.Name()) {
			t.Errorf("left behind: %s", filepath.Join(dir, e.Name()))
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func writeFile(t *testing.T, p, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // umask-proof
		t.Fatal(err)
	}
}
