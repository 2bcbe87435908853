package vmm

import (
	"bufio"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A vsock guest restored from a snapshot gets a transport reset event from
// the device (as Firecracker sends), re-reads its CID, and serves a host
// connection made through the restored VM's socket.
func TestRestoreResetsVsockTransport(t *testing.T) {
	kernel := guestKernel(t, "virtio-vsock")
	root := t.TempDir()
	dir := filepath.Join(root, "snap")
	before := snapshotGuestAt(t, Config{Kernel: kernel, MemSize: 64 << 20, CPUs: 1,
		Cmdline: "listen=1234 streams=1 connect=0",
		Vsock:   &VsockConfig{CID: 3, UDS: filepath.Join(root, "v.sock")}},
		"virtio-vsock: slot 0, cid 3", dir)
	if strings.Contains(before, "transport reset") {
		t.Fatalf("the guest saw a transport reset before any restore:\n%s", before)
	}

	after := &syncBuffer{}
	uds := filepath.Join(root, "restored.sock")
	r, err := Restore(dir, RestoreConfig{Console: after, VsockUDS: uds})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	wait := runAsync(t, r)
	waitFor(t, after, "virtio-vsock: transport reset, cid 3\n")

	c, err := net.Dial("unix", uds)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	br := bufio.NewReader(c)
	if _, err := io.WriteString(c, "CONNECT 1234\n"); err != nil {
		t.Fatal(err)
	}
	if ok, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(ok, "OK ") {
		t.Fatalf("CONNECT 1234 after restore: %q, %v", ok, err)
	}
	if _, err := io.WriteString(c, "back again\n"); err != nil {
		t.Fatal(err)
	}
	if echo, err := br.ReadString('\n'); err != nil || echo != "BACK AGAIN\n" {
		t.Fatalf("echo after restore: %q, %v", echo, err)
	}
	c.(*net.UnixConn).CloseWrite()
	if e := wait(); e.Kind != ExitPowerOff {
		t.Fatalf("restored guest ended with %v:\n%s", e, after)
	}
	if !strings.Contains(after.String(), "virtio-vsock: ok") {
		t.Errorf("restored guest did not finish:\n%s", after)
	}
}
