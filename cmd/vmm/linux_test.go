package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// guestArtifact finds a build output for the Linux boot test: from the
// environment (set by `make test`), else from the repository's build/ tree.
func guestArtifact(t testing.TB, env, rel, makeTarget string) string {
	t.Helper()
	p := os.Getenv(env)
	if p == "" {
		p = filepath.Join("..", "..", rel)
	}
	if _, err := os.Stat(p); err != nil {
		t.Skipf("%s not built (%v): run `make %s` (or `make test`, which builds it)", rel, err, makeTarget)
	}
	return p
}

// TestLinuxBootsToInit boots the project kernel with the smoke initramfs:
// its /init prints a marker and powers off through the sietch power port, so
// the run must end with exit status 0 after the marker.
func TestLinuxBootsToInit(t *testing.T) {
	requireKVM(t)
	kernel := guestArtifact(t, "SIETCH_KERNEL", "build/kernel/vmlinux", "kernel")
	initrd := guestArtifact(t, "SIETCH_SMOKE_INITRAMFS", "build/smoke/smoke.cpio", "smoke-initramfs")
	r := runVMM(t, "run", "--kernel", kernel, "--initrd", initrd, "--mem", "128M", "--cpus", "2",
		"--cmdline", "console=ttyS0 reboot=k panic=-1 quiet")
	if r.code != exitPowerOff {
		t.Fatalf("Linux did not power off cleanly:\n%s", r.dump())
	}
	if !strings.Contains(r.stdout, "sietch-smoke: init reached") {
		t.Fatalf("the smoke /init's marker is missing:\n%s", r.dump())
	}
	t.Logf("serial console:\n%s", r.stdout)
}
