package vhostuser

import (
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sietch-vm/sietch/virtio"
)

// TestDirtyLogRecordsDeviceWrites runs the echo device with VHOST_F_LOG_ALL
// and a shared log: after a request the log holds the page the device wrote
// and the used ring's page, and not the page it only read; with logging
// switched off again nothing more is recorded.
func TestDirtyLogRecordsDeviceWrites(t *testing.T) {
	d := newEchoDevice()
	f, _, _ := serve(t, d)
	ram := newGuestRAM(t, ramSize)
	feat, err := f.GetFeatures()
	if err != nil {
		t.Fatal(err)
	}
	pf, err := f.GetProtocolFeatures()
	if err != nil {
		t.Fatal(err)
	}
	if pf&ProtocolLogSHMFD == 0 {
		t.Fatalf("protocol features %#x lack LOG_SHMFD", pf)
	}
	base := feat &^ FeatureLogAll
	for _, err := range []error{f.SetFeatures(base), f.SetProtocolFeatures(ProtocolLogSHMFD | ProtocolReplyAck),
		f.SetMemTable([]MemoryRegion{ram.region()}, []int{ram.fd})} {
		if err != nil {
			t.Fatal(err)
		}
	}
	logBytes := uint64(ramSize / virtio.DirtyLogPage / 8)
	logFD, err := unix.MemfdCreate("dirty-log", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(logFD)
	if err := unix.Ftruncate(logFD, int64(logBytes)); err != nil {
		t.Fatal(err)
	}
	logMap, err := unix.Mmap(logFD, 0, int(logBytes), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(logMap)
	log := virtio.NewDirtyLog(logMap)
	if err := f.SetLogBase(dup(t, logFD), LogBase{Size: logBytes}); err != nil {
		t.Fatal(err)
	}
	if err := f.SetLogBase(dup(t, logFD), LogBase{Size: 1 << 40}); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("oversized log: err = %v, want a refusal", err)
	}
	if err := f.SetFeatures(base | FeatureLogAll); err != nil {
		t.Fatal(err)
	}
	kick, call := newEventFD(t), newEventFD(t)
	for _, err := range []error{f.SetVringNum(0, ringSize), f.SetVringBase(0, 0), f.SetVringAddr(0, ringAddr()),
		f.SetVringKick(0, kick.Fd()), f.SetVringCall(0, call.Fd()), f.SetVringEnable(0, true)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	request := func(head uint16, in, out uint64) {
		t.Helper()
		copy(ram.mem[in:], "hello")
		ram.post(head, buf{gpa: in, len: 5}, buf{gpa: out, len: 64, write: true})
		if err := kick.Signal(); err != nil {
			t.Fatal(err)
		}
		waitEvent(t, call, "call")
	}
	collect := func() virtioBitmap {
		b := make(virtioBitmap, ramSize/virtio.DirtyLogPage/64)
		log.Collect(b)
		return b
	}
	collect() // drop whatever set-up recorded
	const in, out = 0x10000, 0x83000
	request(0, in, out)
	got := collect()
	if !got.has(out / virtio.DirtyLogPage) {
		t.Errorf("the page the device wrote (%#x) is not in the log", out)
	}
	if !got.has(usedGPA / virtio.DirtyLogPage) {
		t.Errorf("the used ring's page (%#x) is not in the log", usedGPA)
	}
	if got.has(in / virtio.DirtyLogPage) {
		t.Errorf("the page the device only read (%#x) is in the log", in)
	}
	if err := f.SetFeatures(base); err != nil {
		t.Fatal(err)
	}
	request(2, in, out)
	if n := collect().count(); n != 0 {
		t.Errorf("with LOG_ALL off the log recorded %d pages", n)
	}
}

type virtioBitmap []uint64

func (b virtioBitmap) has(p uint64) bool { return b[p/64]&(1<<(p%64)) != 0 }
func (b virtioBitmap) count() int {
	n := 0
	for _, w := range b {
		for ; w != 0; w &= w - 1 {
			n++
		}
	}
	return n
}
