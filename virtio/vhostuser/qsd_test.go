package vhostuser

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/sietch-vm/sietch/virtio"
)

// TestQEMUStorageDaemon drives qemu-storage-daemon's vhost-user-blk export
// (libvhost-user) with our Frontend, playing the guest driver in the test:
// one virtio-blk read (virtio 1.2 §5.2.6) of sector 1.
func TestQEMUStorageDaemon(t *testing.T) {
	qsd, err := exec.LookPath("qemu-storage-daemon")
	if err != nil {
		t.Skip("qemu-storage-daemon not installed (Debian package qemu-system-common, pulled in by qemu-system-x86)")
	}
	dir := t.TempDir()
	img, sock := filepath.Join(dir, "disk.img"), filepath.Join(dir, "blk.sock")
	const imgSize = 64 << 10
	content := make([]byte, imgSize)
	for i := range content {
		content[i] = byte(i*7 + i/512)
	}
	if err := os.WriteFile(img, content, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(qsd,
		"--blockdev", "driver=file,node-name=f,filename="+img,
		"--export", "type=vhost-user-blk,id=e,node-name=f,addr.type=unix,addr.path="+sock+",writable=on")
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start qemu-storage-daemon: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("qemu-storage-daemon output:\n%s", stderr.String())
		}
	})

	var f *Frontend
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if f, err = Dial(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("qemu-storage-daemon socket never accepted: %v", err)
		}
	}
	defer f.Close()

	feat, err := f.GetFeatures()
	if err != nil {
		t.Fatal(err)
	}
	if feat&virtio.FeatureVersion1 == 0 || feat&FeatureProtocolFeatures == 0 {
		t.Fatalf("features %#x lack VERSION_1 or PROTOCOL_FEATURES", feat)
	}
	pf, err := f.GetProtocolFeatures()
	if err != nil {
		t.Fatal(err)
	}
	if pf&ProtocolConfig == 0 || pf&ProtocolReplyAck == 0 {
		t.Fatalf("protocol features %#x lack CONFIG or REPLY_ACK", pf)
	}
	if err := f.SetProtocolFeatures(pf & (ProtocolMQ | ProtocolReplyAck | ProtocolConfig)); err != nil {
		t.Fatal(err)
	}
	if err := f.SetOwner(); err != nil {
		t.Fatal(err)
	}
	// No EVENT_IDX or INDIRECT_DESC: the driver below is minimal.
	if err := f.SetFeatures(virtio.FeatureVersion1 | FeatureProtocolFeatures); err != nil {
		t.Fatal(err)
	}
	cfg, err := f.GetConfig(0, 8) // virtio_blk_config.capacity, in 512-byte sectors
	if err != nil {
		t.Fatal(err)
	}
	if got := binary.LittleEndian.Uint64(cfg); got != imgSize/512 {
		t.Fatalf("capacity %d sectors, want %d", got, imgSize/512)
	}

	ram := newGuestRAM(t, ramSize)
	if err := f.SetMemTable([]MemoryRegion{ram.region()}, []int{ram.fd}); err != nil {
		t.Fatal(err)
	}
	kick, call := newEventFD(t), newEventFD(t)
	for _, err := range []error{
		f.SetVringNum(0, ringSize),
		f.SetVringBase(0, 0),
		f.SetVringAddr(0, ringAddr()),
		f.SetVringKick(0, kick.Fd()),
		f.SetVringCall(0, call.Fd()),
		f.SetVringEnable(0, true),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}

	const hdr, data, status = 0x10000, 0x11000, 0x12000
	binary.LittleEndian.PutUint32(ram.mem[hdr:], 0)   // VIRTIO_BLK_T_IN
	binary.LittleEndian.PutUint64(ram.mem[hdr+8:], 1) // sector
	ram.mem[status] = 0xff
	ram.post(0, buf{gpa: hdr, len: 16}, buf{gpa: data, len: 512, write: true}, buf{gpa: status, len: 1, write: true})
	if err := kick.Signal(); err != nil {
		t.Fatal(err)
	}
	// libvhost-user signals call once when it is set (for reconnects), so
	// like a driver, look at the used ring after each interrupt.
	for ram.usedIdx() == 0 {
		waitEvent(t, call, "call")
	}
	if got := ram.usedIdx(); got != 1 {
		t.Fatalf("used idx %d, want 1", got)
	}
	if id, n := ram.usedElem(0); id != 0 || n != 513 {
		t.Fatalf("used element (id %d, len %d), want (0, 513)", id, n)
	}
	if ram.mem[status] != 0 {
		t.Fatalf("status %d, want 0 (VIRTIO_BLK_S_OK)", ram.mem[status])
	}
	if !bytes.Equal(ram.mem[data:data+512], content[512:1024]) {
		t.Fatal("data read does not match sector 1 of the image")
	}
	base, err := f.GetVringBase(0)
	if err != nil {
		t.Fatal(err)
	}
	if base != 1 {
		t.Fatalf("GetVringBase = %d, want 1", base)
	}
}
