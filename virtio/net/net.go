// Package net is the virtio-net device backed by a Linux tap (virtio 1.2 §5.1).
package net

import (
	"encoding/binary"
	"errors"
	"fmt"
	stdnet "net"
	"os"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/sietch-vm/sietch/virtio"
	"github.com/sietch-vm/sietch/virtio/net/tap"
	"github.com/sietch-vm/sietch/virtio/vhostuser"
)

// Feature bits of virtio-net (virtio 1.2 §5.1.3).
const (
	FeatureCsum      uint64 = 1 << 0  // VIRTIO_NET_F_CSUM: device takes partial checksums
	FeatureGuestCsum uint64 = 1 << 1  // VIRTIO_NET_F_GUEST_CSUM
	FeatureMAC       uint64 = 1 << 5  // VIRTIO_NET_F_MAC
	FeatureGuestTSO4 uint64 = 1 << 7  // VIRTIO_NET_F_GUEST_TSO4
	FeatureGuestTSO6 uint64 = 1 << 8  // VIRTIO_NET_F_GUEST_TSO6
	FeatureGuestECN  uint64 = 1 << 9  // VIRTIO_NET_F_GUEST_ECN
	FeatureGuestUFO  uint64 = 1 << 10 // VIRTIO_NET_F_GUEST_UFO (never offered)
	FeatureHostTSO4  uint64 = 1 << 11 // VIRTIO_NET_F_HOST_TSO4
	FeatureHostTSO6  uint64 = 1 << 12 // VIRTIO_NET_F_HOST_TSO6
	FeatureHostECN   uint64 = 1 << 13 // VIRTIO_NET_F_HOST_ECN
	FeatureHostUFO   uint64 = 1 << 14 // VIRTIO_NET_F_HOST_UFO (never offered)
	FeatureMrgRxbuf  uint64 = 1 << 15 // VIRTIO_NET_F_MRG_RXBUF
	FeatureStatus    uint64 = 1 << 16 // VIRTIO_NET_F_STATUS
)

// Queue numbers (virtio 1.2 §5.1.2): one receive/transmit pair, no control
// queue.
const (
	RxQueue = 0
	TxQueue = 1
)

// maxQueueSize bounds each ring; a larger rx ring absorbs longer bursts.
const maxQueueSize = 1024

// Config space (virtio 1.2 §5.1.4): mac[6], status, max_virtqueue_pairs.
const (
	configLen    = 10
	statusLinkUp = 1 // VIRTIO_NET_S_LINK_UP
)

// Stats counts what the device did; all counters only grow.
type Stats struct {
	TxPackets, TxBytes, TxDropped uint64 // guest → tap; bytes without the header
	RxPackets, RxBytes, RxDropped uint64 // tap → guest
	BadChains                     uint64 // chains returned unused because they were malformed
}

// Device is a virtio-net device serving one tap. It implements
// vhostuser.DeviceModel, filling the receive queue from the tap itself;
// Close it after the back-end's Serve returns.
type Device struct {
	tap   *os.File        // our own non-blocking handle, in Go's poller
	rc    syscall.RawConn // tap's raw access for read/writev
	mac   stdnet.HardwareAddr
	offer uint64
	tapOf int // offloads the tap accepts (TUN_F_*)

	acked atomic.Uint64

	rx rxState // the receive queue's, used by its Vring's worker
	tx txState // the transmit queue's, likewise

	stats struct {
		txPackets, txBytes, txDropped atomic.Uint64
		rxPackets, rxBytes, rxDropped atomic.Uint64
		badChains                     atomic.Uint64
	}
}

var (
	_ vhostuser.DeviceModel      = (*Device)(nil)
	_ vhostuser.VringFiller      = (*Device)(nil)
	_ vhostuser.VringLifecycle   = (*Device)(nil)
	_ vhostuser.BadChainObserver = (*Device)(nil)
)

// New returns a device for tapFile, a tap opened by tap.Open (possibly in
// another process), with MAC address mac in its config space. It duplicates tapFile;
// the caller may close its own handle. The guest is offered the checksum and
// TSO offloads the tap supports, and the tap gets those the guest acks.
func New(tapFile *os.File, mac stdnet.HardwareAddr) (*Device, error) {
	if len(mac) != 6 {
		return nil, fmt.Errorf("virtio-net: MAC %q is not a 6-byte Ethernet address", mac)
	}
	if mac[0]&1 != 0 {
		return nil, fmt.Errorf("virtio-net: MAC %s is a multicast address; use a unicast one such as 52:54:00:xx:xx:xx", mac)
	}
	if tapFile == nil {
		return nil, errors.New("virtio-net: no tap file")
	}
	fd, err := dupNonblock(tapFile)
	if err != nil {
		return nil, fmt.Errorf("virtio-net: %w", err)
	}
	d := &Device{mac: append(stdnet.HardwareAddr(nil), mac...)}
	if err := tap.Check(fd); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("virtio-net: %w", err)
	}
	if d.tapOf, err = probeOffloads(fd); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("virtio-net: %w", err)
	}
	d.tap = os.NewFile(uintptr(fd), "tap")
	if d.rc, err = d.tap.SyscallConn(); err != nil {
		d.tap.Close()
		return nil, fmt.Errorf("virtio-net: tap: %w", err)
	}
	d.offer = offered(d.tapOf)
	d.rx.buf = make([]byte, hdrLen+maxFrameLen)
	d.rx.read, d.tx.write = d.readOnce, d.writeOnce
	return d, nil
}

// dupNonblock returns a close-on-exec, non-blocking duplicate of f's
// descriptor, so that Go's poller can wait on it (and deadlines can wake a
// goroutine waiting on it) whatever mode the sender left it in.
func dupNonblock(f *os.File) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return -1, fmt.Errorf("tap: %w", err)
	}
	fd := -1
	var derr error
	if err := rc.Control(func(s uintptr) {
		fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return -1, fmt.Errorf("tap: %w", err)
	}
	if derr != nil {
		return -1, fmt.Errorf("duplicate tap descriptor: %w", derr)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("make tap non-blocking: %w", err)
	}
	return fd, nil
}

// offered is the feature set for a tap that accepts tapOf offloads. The
// transmit offloads need nothing from the tap (it always takes partial
// checksums and GSO frames with IFF_VNET_HDR); the receive ones need the
// tap to be allowed to produce them.
func offered(tapOf int) uint64 {
	f := virtio.FeatureVersion1 | virtio.FeatureEventIdx | virtio.FeatureIndirectDesc |
		FeatureMAC | FeatureStatus | FeatureMrgRxbuf |
		FeatureCsum | FeatureHostTSO4 | FeatureHostTSO6 | FeatureHostECN
	if tapOf&tunFCSUM != 0 {
		f |= FeatureGuestCsum
	}
	if tapOf&(tunFCSUM|tunFTSO4|tunFTSO6) == tunFCSUM|tunFTSO4|tunFTSO6 {
		f |= FeatureGuestTSO4 | FeatureGuestTSO6
	}
	if tapOf&tunFTSOECN != 0 && f&FeatureGuestTSO4 != 0 {
		f |= FeatureGuestECN
	}
	return f
}

// Close releases the tap. Call it once no queue runs (after Serve returns).
func (d *Device) Close() error { return d.tap.Close() }

// Stats returns the device's counters.
func (d *Device) Stats() Stats {
	s := &d.stats
	return Stats{
		TxPackets: s.txPackets.Load(), TxBytes: s.txBytes.Load(), TxDropped: s.txDropped.Load(),
		RxPackets: s.rxPackets.Load(), RxBytes: s.rxBytes.Load(), RxDropped: s.rxDropped.Load(),
		BadChains: s.badChains.Load(),
	}
}

// Features implements vhostuser.DeviceModel.
func (d *Device) Features() uint64 { return d.offer }

// ProtocolFeatures implements vhostuser.DeviceModel.
func (d *Device) ProtocolFeatures() uint64 {
	return vhostuser.ProtocolConfig | vhostuser.ProtocolReplyAck | vhostuser.ProtocolMQ
}

// NumQueues implements vhostuser.DeviceModel: receive and transmit.
func (d *Device) NumQueues() int { return 2 }

// MaxQueueSize implements vhostuser.DeviceModel.
func (d *Device) MaxQueueSize() uint16 { return maxQueueSize }

// ReadConfig implements vhostuser.DeviceModel.
func (d *Device) ReadConfig(off uint32, data []byte) {
	var c [configLen]byte
	copy(c[0:6], d.mac)
	binary.LittleEndian.PutUint16(c[6:], statusLinkUp)
	binary.LittleEndian.PutUint16(c[8:], 1) // max_virtqueue_pairs
	for i := range data {
		data[i] = 0
		if o := uint64(off) + uint64(i); o < configLen {
			data[i] = c[o]
		}
	}
}

// WriteConfig implements vhostuser.DeviceModel. Every field is read-only to a
// VERSION_1 driver (virtio 1.2 §5.1.4.2: the MAC is set with the control
// queue, which this device does not have).
func (d *Device) WriteConfig(off uint32, data []byte) error {
	return fmt.Errorf("virtio-net: config space is read-only (write of %d bytes at %d)", len(data), off)
}

// SetFeatures implements vhostuser.DeviceModel: it checks the dependencies of
// virtio 1.2 §5.1.3.1 and sets the tap's offloads to what the guest can
// receive, so the tap never hands over a frame the guest did not ask for.
func (d *Device) SetFeatures(acked uint64) error {
	if extra := acked &^ d.offer; extra != 0 {
		return fmt.Errorf("virtio-net: features %#x were not offered", extra)
	}
	if acked&virtio.FeatureVersion1 == 0 {
		return errors.New("virtio-net: the driver did not ack VIRTIO_F_VERSION_1; legacy drivers are not supported")
	}
	for _, dep := range []struct {
		bit, needs uint64
		name       string
	}{
		{FeatureGuestTSO4, FeatureGuestCsum, "GUEST_TSO4 needs GUEST_CSUM"},
		{FeatureGuestTSO6, FeatureGuestCsum, "GUEST_TSO6 needs GUEST_CSUM"},
		{FeatureGuestECN, FeatureGuestTSO4 | FeatureGuestTSO6, "GUEST_ECN needs GUEST_TSO4 or GUEST_TSO6"},
		{FeatureHostTSO4, FeatureCsum, "HOST_TSO4 needs CSUM"},
		{FeatureHostTSO6, FeatureCsum, "HOST_TSO6 needs CSUM"},
		{FeatureHostECN, FeatureHostTSO4 | FeatureHostTSO6, "HOST_ECN needs HOST_TSO4 or HOST_TSO6"},
	} {
		if acked&dep.bit != 0 && acked&dep.needs == 0 {
			return fmt.Errorf("virtio-net: features %#x: %s (virtio 1.2 §5.1.3.1)", acked, dep.name)
		}
	}
	tf := 0
	for _, m := range []struct {
		feature uint64
		flag    int
	}{
		{FeatureGuestCsum, tunFCSUM}, {FeatureGuestTSO4, tunFTSO4},
		{FeatureGuestTSO6, tunFTSO6}, {FeatureGuestECN, tunFTSOECN},
	} {
		if acked&m.feature != 0 {
			tf |= m.flag
		}
	}
	var err error
	if cerr := d.rc.Control(func(fd uintptr) { err = setOffloads(int(fd), tf) }); cerr != nil {
		return fmt.Errorf("virtio-net: tap: %w", cerr)
	}
	if err != nil {
		return fmt.Errorf("virtio-net: %w", err)
	}
	d.acked.Store(acked)
	return nil
}
