package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sietch-vm/sietch/testguest"
)

// hostileAttacks is how many attacks virtio-hostile makes on each device
// (the table in testguest/src/virtio-hostile.c).
const hostileAttacks = 12

// TestHostileGuest boots virtio-hostile with every device kind, each in its
// own jailed process: it breaks the rules of the transport and of each
// device in turn (see the guest's source), resets the device and then does
// one legitimate operation on every device. Every attack must be
// survived: the vmm and its devices keep running and keep working, and
// nothing on the host changes (the disk image, the TAP, the vsock
// directory).
func TestHostileGuest(t *testing.T) {
	t.Parallel()
	requireKVM(t)
	tp := newTap(t)
	dir := shortTempDir(t)
	img := filepath.Join(dir, "disk.raw")
	orig := testguest.Pattern(5, 1<<20)
	if err := os.WriteFile(img, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	uds := filepath.Join(dir, "v.sock")
	r := startGuestIn(t, tp.ns, "virtio-hostile", "--rng", "--disk", img, "--vsock", "3,"+uds, "--net", tp.name).wait(t)
	const devices = 4
	r.expectOK(t, "virtio-hostile", fmt.Sprintf("virtio-hostile: survived %d/%d", devices*hostileAttacks, devices*hostileAttacks))
	for _, kind := range []string{"rng", "blk", "vsock", "net"} {
		if !strings.Contains(r.stdout, "attack "+kind+" device-requests: survived") {
			t.Errorf("no %s attacks ran\n%s", kind, r.dump())
		}
	}
	if strings.Contains(r.stderr, "device process failed") {
		t.Errorf("a device process died during the attacks:\n%s", r.stderr)
	}
	if got, err := os.ReadFile(img); err != nil || !bytes.Equal(got, orig) {
		t.Errorf("the disk image changed (%v): only reads and refused writes were sent", err)
	}
	if out, err := exec.Command("ip", "-n", tp.ns, "link", "show", tp.name).CombinedOutput(); err != nil {
		t.Errorf("the TAP is gone after the attacks: %v\n%s", err, out)
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.Name() != "disk.raw" && !strings.HasPrefix(e.Name(), "v.sock") {
			t.Errorf("the attacks left %s in the vmm's directory", e.Name())
		}
	}
}
