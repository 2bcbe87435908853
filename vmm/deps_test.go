package vmm

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoDeviceModels holds the line between the vmm and its device
// processes: the vmm keeps the transports and the vhost-user front-end;
// the device models and the device process's main (devproc/devmain) are
// linked only into the process that serves them.
func TestNoDeviceModels(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	forbidden := []string{"virtio/blk", "virtio/net", "virtio/vsock", "virtio/rng", "devproc/devmain"}
	for _, pkg := range strings.Fields(string(out)) {
		rel, ours := strings.CutPrefix(pkg, "github.com/sietch-vm/sietch/")
		for _, f := range forbidden {
			if ours && rel == f {
				t.Errorf("package vmm links %s", pkg)
			}
		}
	}
}
