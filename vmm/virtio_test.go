package vmm

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/sietch-vm/sietch/devproc"
	"github.com/sietch-vm/sietch/virtio"
	"github.com/sietch-vm/sietch/virtio/vhostuser"
)

// configDevice is a device process's model with a 12-byte config space
// whose last four bytes the driver may write. It counts its config reads:
// one per GET_CONFIG message the back-end serves.
type configDevice struct {
	mu     sync.Mutex
	config [12]byte
	reads  int
}

func (d *configDevice) Features() uint64 { return virtio.FeatureVersion1 }
func (d *configDevice) ProtocolFeatures() uint64 {
	return vhostuser.ProtocolReplyAck | vhostuser.ProtocolConfig
}
func (d *configDevice) NumQueues() int           { return 1 }
func (d *configDevice) MaxQueueSize() uint16     { return 8 }
func (d *configDevice) SetFeatures(uint64) error { return nil }
func (d *configDevice) HandleChain(int, *virtio.Chain, virtio.GuestMemory) (uint32, error) {
	return 0, nil
}

func (d *configDevice) ReadConfig(off uint32, data []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.reads++
	clear(data)
	if uint64(off) < uint64(len(d.config)) {
		copy(data, d.config[off:])
	}
}

func (d *configDevice) WriteConfig(off uint32, data []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if off < 8 || uint64(off)+uint64(len(data)) > uint64(len(d.config)) {
		return errors.New("read-only")
	}
	copy(d.config[off:], data)
	return nil
}

// set changes the config space as the device itself would.
func (d *configDevice) set(off int, b []byte) {
	d.mu.Lock()
	copy(d.config[off:], b)
	d.mu.Unlock()
}

func (d *configDevice) getConfigs() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.reads
}

// A guest's config reads (vCPU exits) are answered from the front-end's
// copy: no GET_CONFIG reaches the device process after set-up. Writes go
// through, and a config change interrupt reads the space again.
func TestGuestConfigReadsStayInVMM(t *testing.T) {
	dev := &configDevice{}
	copy(dev.config[:], "sietch-cfg\x00\x00")
	ours, theirs, err := devproc.SocketPair("config-test")
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.FileConn(theirs)
	theirs.Close()
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- vhostuser.NewBackend(dev, nil).Serve(c.(*net.UnixConn)) }()
	d := &vhostDevice{name: "cfg0", id: virtio.DeviceBlock, numQueues: 1, maxQueue: 8,
		m: &Machine{}, log: slog.New(slog.DiscardHandler), fe: vhostuser.NewFrontend(ours)}
	t.Cleanup(func() {
		d.fe.Close()
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("back-end: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("back-end still serving 30s after the front-end closed")
		}
	})
	if err := d.negotiate(); err != nil {
		t.Fatal(err)
	}
	setUp := dev.getConfigs()
	if setUp == 0 {
		t.Fatal("the config space was not read at set-up")
	}
	transport := virtio.NewMMIO(d, nil, nil)
	read := func() []byte {
		t.Helper()
		got := make([]byte, 12)
		for off := 0; off < len(got); off += 4 {
			transport.Read(0x100+uint64(off), got[off:off+4])
		}
		return got
	}

	for range 3 {
		if got := read(); string(got) != "sietch-cfg\x00\x00" {
			t.Fatalf("guest read config %q", got)
		}
	}
	if n := dev.getConfigs(); n != setUp {
		t.Fatalf("guest config reads sent %d GET_CONFIG messages to the device process, want none", n-setUp)
	}

	// Written through: the device has the bytes, the guest reads them back
	// without a GET_CONFIG.
	transport.Write(0x100+8, []byte("WXYZ"))
	if got := read(); !bytes.Equal(got[8:], []byte("WXYZ")) {
		t.Errorf("after a config write the guest reads %q", got)
	}
	dev.mu.Lock()
	devHas := string(dev.config[8:])
	dev.mu.Unlock()
	if devHas != "WXYZ" {
		t.Errorf("the device has %q after the guest's write, want WXYZ", devHas)
	}
	// A write the device refuses leaves the copy as it was.
	transport.Write(0x100, []byte("zz"))
	if got := read(); string(got[:2]) != "si" {
		t.Errorf("after a refused write the guest reads %q", got)
	}
	if n := dev.getConfigs(); n != setUp {
		t.Errorf("writes sent %d GET_CONFIG messages, want none", n-setUp)
	}

	// The device changed its config space: the transport's config change
	// interrupt has the front-end read it again, once.
	dev.set(0, []byte("SIETCH"))
	transport.ConfigChanged()
	if got := read(); string(got[:6]) != "SIETCH" {
		t.Errorf("after a config change the guest reads %q", got)
	}
	if n := dev.getConfigs(); n != 2*setUp {
		t.Errorf("a config change sent %d GET_CONFIG messages, want %d (a set-up's worth)", n-setUp, setUp)
	}
}
