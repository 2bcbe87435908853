package virtio

import (
	"encoding/binary"
	"errors"
	"reflect"
	"testing"
)

// fakeBackend is an in-process device that records what the transport asks.
type fakeBackend struct {
	id          uint32
	features    uint64
	maxSizes    []uint16
	config      [16]byte
	activateErr error

	activations []activation
	resets      int
	notified    []int
	configOps   []string
}

type activation struct {
	features uint64
	queues   []QueueConfig
}

func (b *fakeBackend) DeviceID() uint32        { return b.id }
func (b *fakeBackend) Features() uint64        { return b.features }
func (b *fakeBackend) QueueMaxSizes() []uint16 { return b.maxSizes }
func (b *fakeBackend) Reset()                  { b.resets++ }
func (b *fakeBackend) Notify(q int)            { b.notified = append(b.notified, q) }

func (b *fakeBackend) ReadConfig(off uint64, data []byte) {
	if off < uint64(len(b.config)) {
		copy(data, b.config[off:])
	}
}

func (b *fakeBackend) WriteConfig(off uint64, data []byte) {
	b.configOps = append(b.configOps, "write")
	if off < uint64(len(b.config)) {
		copy(b.config[off:], data)
	}
}

func (b *fakeBackend) Activate(features uint64, queues []QueueConfig) error {
	b.activations = append(b.activations, activation{features, queues})
	return b.activateErr
}

const blkFeatures = FeatureVersion1 | FeatureEventIdx | FeatureIndirectDesc | 1<<9 /* VIRTIO_BLK_F_FLUSH */

func newTestMMIO(t testing.TB, opts ...MMIOOption) (*MMIO, *fakeBackend, *int) {
	b := &fakeBackend{id: DeviceBlock, features: blkFeatures | FeatureRingReset | FeatureRingPacked, maxSizes: []uint16{256, 128}}
	copy(b.config[:], "\x00\x10\x00\x00\x00\x00\x00\x00") // capacity 4096 sectors
	irqs := new(int)
	return NewMMIO(b, func() { *irqs++ }, nil, opts...), b, irqs
}

func r32(t *MMIO, off uint64) uint32 {
	var b [4]byte
	t.Read(off, b[:])
	return binary.LittleEndian.Uint32(b[:])
}

func w32(t *MMIO, off uint64, v uint32) {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	t.Write(off, b[:])
}

// addStatus is Linux virtio_add_status: read-modify-write.
func addStatus(m *MMIO, bit uint32) { w32(m, regStatus, r32(m, regStatus)|bit) }

func features(m *MMIO) uint64 {
	w32(m, regDeviceFeatSel, 1)
	f := uint64(r32(m, regDeviceFeatures)) << 32
	w32(m, regDeviceFeatSel, 0)
	return f | uint64(r32(m, regDeviceFeatures))
}

func setDriverFeatures(m *MMIO, f uint64) {
	w32(m, regDriverFeatSel, 1)
	w32(m, regDriverFeatures, uint32(f>>32))
	w32(m, regDriverFeatSel, 0)
	w32(m, regDriverFeatures, uint32(f))
}

func setupQueue(t *testing.T, m *MMIO, sel uint32, num uint32, desc, avail, used uint64) {
	t.Helper()
	w32(m, regQueueSel, sel)
	if r32(m, regQueueReady) != 0 {
		t.Fatalf("queue %d ready before setup", sel)
	}
	if max := r32(m, regQueueNumMax); max < num {
		t.Fatalf("QueueNumMax = %d < %d", max, num)
	}
	w32(m, regQueueNum, num)
	w32(m, regQueueDescLow, uint32(desc))
	w32(m, regQueueDescHigh, uint32(desc>>32))
	w32(m, regQueueAvailLow, uint32(avail))
	w32(m, regQueueAvailHigh, uint32(avail>>32))
	w32(m, regQueueUsedLow, uint32(used))
	w32(m, regQueueUsedHigh, uint32(used>>32))
	w32(m, regQueueReady, 1)
	if r32(m, regQueueReady) != 1 {
		t.Fatalf("queue %d not ready after setup", sel)
	}
}

// TestLinuxProbe replays drivers/virtio/virtio_mmio.c vm_probe and the virtio
// core's virtio_dev_probe for a virtio-blk device with one queue.
func TestLinuxProbe(t *testing.T) {
	m, b, irqs := newTestMMIO(t)
	if got := r32(m, regMagic); got != 0x74726976 {
		t.Fatalf("magic = %#x", got)
	}
	if got := r32(m, regVersion); got != 2 {
		t.Fatalf("version = %d", got)
	}
	if got := r32(m, regDeviceID); got != DeviceBlock {
		t.Fatalf("device id = %d", got)
	}
	if got := r32(m, regVendorID); got != MMIOVendorID {
		t.Fatalf("vendor id = %#x", got)
	}
	w32(m, regStatus, 0) // virtio_reset_device
	if r32(m, regStatus) != 0 {
		t.Fatal("status not 0 after reset")
	}
	addStatus(m, StatusAcknowledge)
	addStatus(m, StatusDriver)
	f := features(m)
	if f != blkFeatures {
		t.Fatalf("device features = %#x, want %#x (packed ring and ring reset masked)", f, uint64(blkFeatures))
	}
	setDriverFeatures(m, f&^FeatureIndirectDesc)
	addStatus(m, StatusFeaturesOK)
	if r32(m, regStatus)&StatusFeaturesOK == 0 {
		t.Fatal("FEATURES_OK did not stick")
	}
	// virtio_blk reads its config (capacity) with 32-bit accesses; config
	// space also takes other widths.
	if got := r32(m, regConfig); got != 4096 {
		t.Fatalf("config capacity = %d", got)
	}
	var c1 [1]byte
	m.Read(regConfig+1, c1[:])
	if c1[0] != 0x10 {
		t.Fatalf("config byte 1 = %#x", c1[0])
	}
	w32(m, regQueueSel, 5) // a queue that does not exist
	if r32(m, regQueueNumMax) != 0 {
		t.Fatal("QueueNumMax of a missing queue is not 0")
	}
	setupQueue(t, m, 0, 128, 0x1_0000_4000, 0x5000, 0x6000)
	addStatus(m, StatusDriverOK)

	if len(b.activations) != 1 {
		t.Fatalf("Activate called %d times", len(b.activations))
	}
	want := activation{
		features: blkFeatures &^ FeatureIndirectDesc,
		queues: []QueueConfig{
			{Index: 0, Size: 128, Desc: 0x1_0000_4000, Avail: 0x5000, Used: 0x6000, EventIdx: true},
			{Index: 1}, // never made ready
		},
	}
	if !reflect.DeepEqual(b.activations[0], want) {
		t.Fatalf("Activate(%#x, %+v), want (%#x, %+v)", b.activations[0].features, b.activations[0].queues, want.features, want.queues)
	}
	if got := r32(m, regStatus); got != 0x0f {
		t.Fatalf("status = %#x, want 0xf", got)
	}

	// Queue registers are frozen while live.
	w32(m, regQueueSel, 0)
	w32(m, regQueueNum, 64)
	w32(m, regQueueReady, 0)
	if s := m.State().Queues[0]; s.Num != 128 || !s.Ready {
		t.Fatalf("live queue changed: %+v", s)
	}

	// Used buffers from an in-process backend; vm_interrupt reads and acks.
	m.SignalUsed()
	if *irqs != 1 || r32(m, regInterruptStatus) != InterruptUsedBuffer {
		t.Fatalf("after SignalUsed: irqs %d, InterruptStatus %#x", *irqs, r32(m, regInterruptStatus))
	}
	w32(m, regInterruptACK, InterruptUsedBuffer)
	if r32(m, regInterruptStatus) != 0 {
		t.Fatal("InterruptACK did not clear the bit")
	}
	w32(m, regQueueNotify, 0)
	w32(m, regQueueNotify, 7) // no such queue
	if !reflect.DeepEqual(b.notified, []int{0}) {
		t.Fatalf("notified %v, want [0]", b.notified)
	}

	// Driver removal: reset, then vm_del_vq reads QueueReady back as 0.
	w32(m, regStatus, 0)
	if b.resets != 2 || r32(m, regStatus) != 0 || r32(m, regInterruptStatus) != 0 {
		t.Fatalf("after reset: resets %d status %#x", b.resets, r32(m, regStatus))
	}
	w32(m, regQueueSel, 0)
	w32(m, regQueueReady, 0)
	if r32(m, regQueueReady) != 0 || r32(m, regQueueNumMax) != 256 {
		t.Fatal("queue not reset")
	}
	if s := m.State(); s.DriverFeatures != 0 || s.Queues[0] != (MMIOQueueState{Num: 256}) {
		t.Fatalf("state after reset: %+v", s)
	}
}

func TestFeaturesNotAccepted(t *testing.T) {
	tests := []struct {
		name string
		f    uint64
	}{
		{"feature not offered", FeatureVersion1 | 1<<5},
		{"ring reset (masked)", FeatureVersion1 | FeatureRingReset},
		{"legacy driver without VERSION_1", FeatureEventIdx},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, b, _ := newTestMMIO(t)
			addStatus(m, StatusAcknowledge)
			addStatus(m, StatusDriver)
			setDriverFeatures(m, tt.f)
			addStatus(m, StatusFeaturesOK)
			if got := r32(m, regStatus); got != StatusAcknowledge|StatusDriver {
				t.Fatalf("status = %#x, want FEATURES_OK refused", got)
			}
			addStatus(m, StatusDriverOK) // skips FEATURES_OK: ignored
			if len(b.activations) != 0 || r32(m, regStatus)&StatusDriverOK != 0 {
				t.Fatal("device went live without FEATURES_OK")
			}
			addStatus(m, StatusFailed) // what Linux does next
			if r32(m, regStatus)&StatusFailed == 0 {
				t.Fatal("FAILED not recorded")
			}
		})
	}
}

func TestStatusStateMachine(t *testing.T) {
	tests := []struct {
		name   string
		writes []uint32
		want   uint32
	}{
		{"in order", []uint32{1, 3, 0xb, 0xf}, 0xf},
		{"skip DRIVER", []uint32{1, 9}, 1},
		{"skip ACKNOWLEDGE", []uint32{3}, 0},
		{"all at once", []uint32{0xf}, 0},
		{"backwards", []uint32{1, 3, 1}, 3},
		{"clears a bit while adding", []uint32{1, 3, 0x9}, 3},
		{"rewrite same value", []uint32{1, 3, 3}, 3},
		{"failed any time", []uint32{1, 0x81}, 0x81},
		{"nothing after failed", []uint32{1, 0x81, 0x83}, 0x81},
		{"unknown bit", []uint32{1, 0x11}, 1},
		{"driver cannot set NEEDS_RESET", []uint32{1, 0x41}, 1},
		{"reset", []uint32{1, 3, 0xb, 0}, 0},
		{"reset after failed", []uint32{1, 0x81, 0, 1}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, b, _ := newTestMMIO(t)
			for _, v := range tt.writes {
				w32(m, regStatus, v)
				if v == StatusAcknowledge|StatusDriver {
					setDriverFeatures(m, FeatureVersion1)
				}
			}
			if got := r32(m, regStatus); got != tt.want {
				t.Fatalf("status after %#x = %#x, want %#x", tt.writes, got, tt.want)
			}
			if live := tt.want&StatusDriverOK != 0; live != (len(b.activations) == 1) {
				t.Fatalf("%d activations with status %#x", len(b.activations), tt.want)
			}
		})
	}
}

func TestQueueRegisters(t *testing.T) {
	m, _, _ := newTestMMIO(t)
	addStatus(m, StatusAcknowledge)
	addStatus(m, StatusDriver)
	w32(m, regQueueSel, 1) // max 128
	for _, bad := range []uint32{0, 3, 100, 256, 1 << 31} {
		w32(m, regQueueNum, bad)
		if got := m.State().Queues[1].Num; got != 128 {
			t.Fatalf("QueueNum %d accepted (now %d)", bad, got)
		}
	}
	w32(m, regQueueNum, 32)
	w32(m, regQueueDescLow, 0x1000)
	w32(m, regQueueDescHigh, 0x2)
	w32(m, regQueueDescLow, 0x3000) // low half replaced, high kept
	w32(m, regQueueReady, 1)
	w32(m, regQueueNum, 64)         // frozen while ready
	w32(m, regQueueDescLow, 0x5000) // frozen while ready
	w32(m, regQueueReady, 2)        // not a valid value
	if q := m.State().Queues[1]; q != (MMIOQueueState{Num: 32, Ready: true, Desc: 0x2_0000_3000}) {
		t.Fatalf("queue 1 = %+v", q)
	}
	w32(m, regQueueReady, 0)
	w32(m, regQueueNum, 64)
	if q := m.State().Queues[1]; q.Num != 64 || q.Ready {
		t.Fatalf("queue 1 after un-ready = %+v", q)
	}
}

func TestNeedsResetAndActivateFailure(t *testing.T) {
	m, b, irqs := newTestMMIO(t)
	addStatus(m, StatusAcknowledge)
	addStatus(m, StatusDriver)
	setDriverFeatures(m, FeatureVersion1)
	addStatus(m, StatusFeaturesOK)
	b.activateErr = errors.New("backend gone")
	addStatus(m, StatusDriverOK)
	if got := r32(m, regStatus); got != 0x4f {
		t.Fatalf("status after failed Activate = %#x, want 0x4f", got)
	}
	if *irqs != 1 || r32(m, regInterruptStatus) != InterruptConfigChange {
		t.Fatalf("irqs %d InterruptStatus %#x, want a config interrupt", *irqs, r32(m, regInterruptStatus))
	}
	if _, _, ok := m.Active(); ok {
		t.Fatal("Active reports a device that needs a reset")
	}
	w32(m, regStatus, 0)
	if r32(m, regStatus) != 0 || r32(m, regInterruptStatus) != 0 {
		t.Fatal("reset did not clear NEEDS_RESET and interrupts")
	}

	// A live device whose process dies.
	b.activateErr = nil
	addStatus(m, StatusAcknowledge)
	addStatus(m, StatusDriver)
	setDriverFeatures(m, FeatureVersion1)
	addStatus(m, StatusFeaturesOK)
	addStatus(m, StatusDriverOK)
	if _, _, ok := m.Active(); !ok {
		t.Fatal("Active = false for a live device")
	}
	m.NeedsReset("device process exited")
	if got := r32(m, regStatus); got != 0x4f || *irqs != 2 || r32(m, regInterruptStatus)&InterruptConfigChange == 0 {
		t.Fatalf("after NeedsReset: status %#x irqs %d", got, *irqs)
	}
	addStatus(m, StatusFailed) // read-modify-write carries 0x40 back
	if got := r32(m, regStatus); got != 0xcf {
		t.Fatalf("status = %#x, want 0xcf", got)
	}
}

func TestExternalInterrupts(t *testing.T) {
	m, _, _ := newTestMMIO(t, WithExternalInterrupts())
	if r32(m, regInterruptStatus) != InterruptUsedBuffer {
		t.Fatal("external backend: used-buffer bit not always reported")
	}
	w32(m, regInterruptACK, InterruptUsedBuffer)
	if r32(m, regInterruptStatus) != InterruptUsedBuffer {
		t.Fatal("external backend: used-buffer bit cleared by ACK")
	}
	m.ConfigChanged()
	if r32(m, regInterruptStatus) != InterruptUsedBuffer|InterruptConfigChange || r32(m, regConfigGeneration) != 1 {
		t.Fatal("ConfigChanged did not raise the config bit and bump the generation")
	}
}

func TestBadAccesses(t *testing.T) {
	m, b, _ := newTestMMIO(t)
	for _, acc := range []struct {
		off uint64
		n   int
	}{{regMagic, 2}, {regMagic + 1, 4}, {regMagic, 8}, {regMagic, 1}, {MMIOSize, 4}, {MMIOSize - 2, 4}, {^uint64(0), 4}} {
		data := []byte{0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa}[:acc.n]
		m.Read(acc.off, data)
		for _, x := range data {
			if x != 0 {
				t.Fatalf("Read(%#x, %d bytes) = % x, want zeros", acc.off, acc.n, data)
			}
		}
	}
	w32(m, regStatus, StatusAcknowledge)
	m.Write(regStatus, []byte{3, 0}) // 16-bit write: ignored
	m.Write(regStatus+1, []byte{0, 0, 0, 0})
	if r32(m, regStatus) != StatusAcknowledge {
		t.Fatal("a bad-width status write took effect")
	}
	w32(m, regMagic, 0)     // read-only
	w32(m, regSHMLenLow, 0) // read-only
	if r32(m, regMagic) != 0x74726976 || r32(m, regSHMLenLow) != 0xffffffff {
		t.Fatal("read-only registers changed")
	}
	m.Write(regConfig+2, []byte{0x55, 0x66})
	if b.config[2] != 0x55 || b.config[3] != 0x66 {
		t.Fatalf("16-bit config write did not reach the backend: % x", b.config[:4])
	}
	m.Write(MMIOSize-1, []byte{1, 2}) // crosses the end
	if len(b.configOps) != 1 {
		t.Fatal("config access beyond the block reached the backend")
	}
}

func TestMMIOStateRoundTrip(t *testing.T) {
	m, b, _ := newTestMMIO(t)
	addStatus(m, StatusAcknowledge)
	addStatus(m, StatusDriver)
	setDriverFeatures(m, FeatureVersion1|FeatureEventIdx)
	addStatus(m, StatusFeaturesOK)
	setupQueue(t, m, 1, 64, 0x4000, 0x5000, 0x6000)
	addStatus(m, StatusDriverOK)
	m.SignalUsed()
	s := m.State()

	m2, _, _ := newTestMMIO(t)
	if err := m2.SetState(s); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(m2.State(), s) {
		t.Fatalf("State after SetState = %+v, want %+v", m2.State(), s)
	}
	f, qs, ok := m2.Active()
	if !ok || f != b.activations[0].features || !reflect.DeepEqual(qs, b.activations[0].queues) {
		t.Fatalf("Active after restore = %#x %+v %v, want what Activate got", f, qs, ok)
	}
	s.Queues[1].Num = 0 // State returned a copy
	if m.State().Queues[1].Num != 64 {
		t.Fatal("State shares its queue slice")
	}

	bad := []func(s *MMIOState){
		func(s *MMIOState) { s.Queues = s.Queues[:1] },
		func(s *MMIOState) { s.Queues[0].Num = 512 },
		func(s *MMIOState) { s.Queues[0].Num = 24 },
		func(s *MMIOState) { s.Queues[0] = MMIOQueueState{Ready: true} },
		func(s *MMIOState) { s.Status |= 0x10 },
		func(s *MMIOState) { s.DriverFeatures |= FeatureRingPacked },
	}
	for i, edit := range bad {
		s := m.State()
		edit(&s)
		if err := m2.SetState(s); err == nil {
			t.Errorf("SetState accepted bad state %d: %+v", i, s)
		}
	}
}

func TestCmdlineArg(t *testing.T) {
	if got := CmdlineArg(0xd0000000, 5); got != "virtio_mmio.device=512@0xd0000000:5" {
		t.Fatalf("CmdlineArg = %q", got)
	}
}

// refreshingDevice keeps a copy of its config space, as the vmm's
// vhost-user front-end does; refresh runs when the transport asks.
type refreshingDevice struct {
	*fakeBackend
	refresh func()
}

func (d refreshingDevice) RefreshConfig() { d.refresh() }

// A config change has a device that keeps a copy of its config space read
// it again before the driver is told, so the driver reads the new one.
func TestConfigChangedRefreshesFirst(t *testing.T) {
	b := &fakeBackend{id: DeviceBlock, features: blkFeatures, maxSizes: []uint16{256}}
	irqs, refreshes := 0, 0
	var m *MMIO
	m = NewMMIO(refreshingDevice{b, func() {
		refreshes++
		if irqs != 0 || m.State().ConfigGeneration != 0 {
			t.Error("the driver was told of the change before the device read its config space again")
		}
		copy(b.config[:], "new")
	}}, func() { irqs++ }, nil)
	m.ConfigChanged()
	if refreshes != 1 || irqs != 1 || r32(m, regConfigGeneration) != 1 {
		t.Fatalf("ConfigChanged: %d refreshes, %d interrupts, generation %d; want 1, 1, 1", refreshes, irqs, r32(m, regConfigGeneration))
	}
	var got [3]byte
	m.Read(regConfig, got[:])
	if string(got[:]) != "new" {
		t.Errorf("config after the change reads %q", got)
	}
}
