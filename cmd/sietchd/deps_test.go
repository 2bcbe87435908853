package main

import (
	"os/exec"
	"strings"
	"testing"
)

// sietchd talks to vmm processes and guest agents through the wire
// packages only: it links no machine code (kvm, device models, jail,
// userfaultfd, the guest agent's server) and no cgo. It does link rootfs
// (flattening layers, mkfs.ext4 through e2fsprogs), since it builds images
// from Dockerfiles (imagebuild), whose RUN steps run in its sandboxes.
func TestNoMachineCode(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}} {{len .CgoFiles}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	forbidden := []string{"kvm", "jail", "uffd", "virtio", "vmm", "boot", "devices", "snapshot", "guest-init"}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, cgo, _ := strings.Cut(line, " ")
		rel, ours := strings.CutPrefix(pkg, "github.com/sietch-vm/sietch/")
		for _, f := range forbidden {
			if ours && (rel == f || strings.HasPrefix(rel, f+"/")) {
				t.Errorf("sietchd links %s", pkg)
			}
		}
		if cgo != "0" && strings.Contains(pkg, ".") {
			t.Errorf("sietchd links %s, which uses cgo", pkg)
		}
	}
}
