package virtio

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"sync"
)

// MMIOSize is the length of a virtio-mmio register block: registers at
// 0x000-0x0ff, device configuration space from 0x100.
const MMIOSize = 0x200

// MMIOVendorID is what the VendorID register reports ("SIET", little-endian).
const MMIOVendorID = 0x54454953

// virtio-mmio version 2 register offsets (virtio 1.2 §4.2.2).
const (
	regMagic            = 0x000
	regVersion          = 0x004
	regDeviceID         = 0x008
	regVendorID         = 0x00c
	regDeviceFeatures   = 0x010
	regDeviceFeatSel    = 0x014
	regDriverFeatures   = 0x020
	regDriverFeatSel    = 0x024
	regQueueSel         = 0x030
	regQueueNumMax      = 0x034
	regQueueNum         = 0x038
	regQueueReady       = 0x044
	regQueueNotify      = MMIOQueueNotify
	regInterruptStatus  = 0x060
	regInterruptACK     = 0x064
	regStatus           = 0x070
	regQueueDescLow     = 0x080
	regQueueDescHigh    = 0x084
	regQueueAvailLow    = 0x090 // QueueDriverLow
	regQueueAvailHigh   = 0x094
	regQueueUsedLow     = 0x0a0 // QueueDeviceLow
	regQueueUsedHigh    = 0x0a4
	regSHMSel           = 0x0ac
	regSHMLenLow        = 0x0b0
	regSHMLenHigh       = 0x0b4
	regSHMBaseLow       = 0x0b8
	regSHMBaseHigh      = 0x0bc
	regQueueReset       = 0x0c0
	regConfigGeneration = 0x0fc
	regConfig           = 0x100

	mmioMagic   = 0x74726976 // "virt"
	mmioVersion = 2
)

// InterruptStatus bits (virtio 1.2 §4.2.2).
const (
	InterruptUsedBuffer   = 1 << 0
	InterruptConfigChange = 1 << 1
)

// transportUnsupported are features this transport cannot carry whatever the
// device offers: no packed rings (Queue is split only), no notification
// data, no per-queue reset (QueueReset is not implemented), no IOMMU.
const transportUnsupported = FeatureRingPacked | FeatureNotificationData | FeatureRingReset | FeatureAccessPlatform

const statusDriverBits = StatusAcknowledge | StatusDriver | StatusFeaturesOK | StatusDriverOK | StatusFailed

// Device is what a virtio-mmio transport drives: the vmm's vhost-user
// front-end of a device process, or an in-process device in tests. The
// transport calls it with its lock held, so a Device must not call back into
// its MMIO from these methods.
type Device interface {
	DeviceID() uint32                       // DeviceBlock, DeviceNet, ...
	Features() uint64                       // device features; must include FeatureVersion1
	QueueMaxSizes() []uint16                // one per queue; 0 marks a queue that does not exist
	ReadConfig(offset uint64, data []byte)  // config space; data arrives zeroed
	WriteConfig(offset uint64, data []byte) // config space
	// Activate starts the device when the driver sets DRIVER_OK. queues has
	// one entry per queue; a queue the driver did not make ready has Size 0.
	// On error the transport sets DEVICE_NEEDS_RESET and raises a
	// configuration change interrupt.
	Activate(features uint64, queues []QueueConfig) error
	Reset() // the driver wrote 0 to Status
}

// Notifier is optionally implemented by a Device that wants QueueNotify
// writes, for when no ioeventfd is registered on the notify register. Notify
// runs on the vCPU thread without the transport's lock, so it may call
// SignalUsed.
type Notifier interface{ Notify(queue int) }

// ConfigRefresher is optionally implemented by a Device that keeps a copy
// of its config space (the vmm's vhost-user front-end): ConfigChanged has
// it read the space again before the driver is told, so that the driver
// reads what changed. It runs on the caller's goroutine without the
// transport's lock.
type ConfigRefresher interface{ RefreshConfig() }

// MMIOQueueState is one queue's registers.
type MMIOQueueState struct {
	Num   uint16
	Ready bool
	Desc  uint64
	Avail uint64
	Used  uint64
}

// MMIOState is every register of a transport, for snapshots.
type MMIOState struct {
	DeviceFeaturesSel uint32
	DriverFeaturesSel uint32
	DriverFeatures    uint64
	QueueSel          uint32
	SHMSel            uint32
	Status            uint32
	InterruptStatus   uint32
	ConfigGeneration  uint32
	Queues            []MMIOQueueState
}

// MMIOOption configures NewMMIO.
type MMIOOption func(*MMIO)

// WithExternalInterrupts marks a Device whose device process signals the
// guest itself (vhost-user: it writes the irqfd directly), so the transport
// never learns about used buffers. As Firecracker does for its vhost-user
// devices, InterruptStatus then always reports the used-buffer bit, so that
// Linux's vm_interrupt scans every queue on each interrupt; vring_interrupt
// finds nothing new on a spurious one and returns.
func WithExternalInterrupts() MMIOOption { return func(t *MMIO) { t.external = true } }

// MMIO is a virtio-mmio version 2 transport (virtio 1.2 §4.2.2): the register
// block the vmm puts on its MMIO bus for one device. It satisfies
// devices.Device and is safe for concurrent use.
type MMIO struct {
	dev       Device
	notifier  Notifier
	refresher ConfigRefresher
	irq       func()
	log       *slog.Logger
	external  bool
	deviceID  uint32
	features  uint64
	maxSizes  []uint16

	mu sync.Mutex
	st MMIOState
}

// NewMMIO returns a transport for dev in its reset state. irq pulses the
// device's interrupt line; log may be nil.
func NewMMIO(dev Device, irq func(), log *slog.Logger, opts ...MMIOOption) *MMIO {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if irq == nil {
		irq = func() {}
	}
	t := &MMIO{
		dev:      dev,
		irq:      irq,
		log:      log,
		deviceID: dev.DeviceID(),
		features: dev.Features() &^ transportUnsupported,
	}
	t.notifier, _ = dev.(Notifier)
	t.refresher, _ = dev.(ConfigRefresher)
	for _, o := range opts {
		o(t)
	}
	for _, m := range dev.QueueMaxSizes() {
		// A maximum that is not a power of two cannot be offered as is
		// (§2.7: sizes are powers of two); round down.
		for m&(m-1) != 0 {
			m &= m - 1
		}
		t.maxSizes = append(t.maxSizes, min(m, MaxQueueSize))
	}
	t.resetLocked()
	return t
}

// CmdlineArg is the Linux kernel parameter that declares a virtio-mmio device
// at base with interrupt irq (Linux drivers/virtio/virtio_mmio.c,
// "virtio_mmio.device=<size>@<baseaddr>:<irq>").
func CmdlineArg(base uint64, irq uint32) string {
	return fmt.Sprintf("virtio_mmio.device=%d@%#x:%d", MMIOSize, base, irq)
}

func (t *MMIO) resetLocked() {
	gen := t.st.ConfigGeneration
	t.st = MMIOState{ConfigGeneration: gen, Queues: make([]MMIOQueueState, len(t.maxSizes))}
	for i, m := range t.maxSizes {
		t.st.Queues[i].Num = m
	}
}

// Read handles a guest load from the register block.
func (t *MMIO) Read(offset uint64, data []byte) {
	clear(data)
	if offset >= regConfig {
		if !t.configRange(offset, data, "read") {
			return
		}
		t.mu.Lock()
		t.dev.ReadConfig(offset-regConfig, data)
		t.mu.Unlock()
		return
	}
	if !t.registerAccess(offset, data, "read") {
		return
	}
	t.mu.Lock()
	v := t.readReg(offset)
	t.mu.Unlock()
	binary.LittleEndian.PutUint32(data, v)
}

// Write handles a guest store to the register block.
func (t *MMIO) Write(offset uint64, data []byte) {
	if offset >= regConfig {
		if !t.configRange(offset, data, "write") {
			return
		}
		t.mu.Lock()
		t.dev.WriteConfig(offset-regConfig, data)
		t.mu.Unlock()
		return
	}
	if !t.registerAccess(offset, data, "write") {
		return
	}
	v := binary.LittleEndian.Uint32(data)
	t.mu.Lock()
	pulse, notify := t.writeReg(offset, v)
	t.mu.Unlock()
	// Outside the lock: an in-process device may answer a notify by
	// pushing buffers and calling SignalUsed.
	if notify >= 0 {
		t.notifier.Notify(notify)
	}
	if pulse {
		t.irq()
	}
}

// registerAccess admits only aligned 32-bit accesses to registers (§4.2.2:
// "The driver MUST only use 32 bit wide and aligned reads and writes").
func (t *MMIO) registerAccess(offset uint64, data []byte, op string) bool {
	if len(data) == 4 && offset%4 == 0 {
		return true
	}
	t.log.Debug("virtio-mmio: ignored register access that is not aligned 32-bit",
		"op", op, "offset", offset, "len", len(data), "device_id", t.deviceID)
	return false
}

func (t *MMIO) configRange(offset uint64, data []byte, op string) bool {
	if offset < MMIOSize && uint64(len(data)) <= MMIOSize-offset {
		return true
	}
	t.log.Debug("virtio-mmio: ignored access beyond the register block",
		"op", op, "offset", offset, "len", len(data), "device_id", t.deviceID)
	return false
}

func (t *MMIO) queue() *MMIOQueueState {
	if uint64(t.st.QueueSel) >= uint64(len(t.st.Queues)) {
		return nil
	}
	return &t.st.Queues[t.st.QueueSel]
}

func (t *MMIO) readReg(offset uint64) uint32 {
	switch offset {
	case regMagic:
		return mmioMagic
	case regVersion:
		return mmioVersion
	case regDeviceID:
		return t.deviceID
	case regVendorID:
		return MMIOVendorID
	case regDeviceFeatures:
		switch t.st.DeviceFeaturesSel {
		case 0:
			return uint32(t.features)
		case 1:
			return uint32(t.features >> 32)
		}
		return 0
	case regQueueNumMax:
		if uint64(t.st.QueueSel) < uint64(len(t.maxSizes)) {
			return uint32(t.maxSizes[t.st.QueueSel])
		}
		return 0
	case regQueueReady:
		if q := t.queue(); q != nil && q.Ready {
			return 1
		}
		return 0
	case regInterruptStatus:
		if t.external {
			return t.st.InterruptStatus | InterruptUsedBuffer
		}
		return t.st.InterruptStatus
	case regStatus:
		return t.st.Status
	case regSHMLenLow, regSHMLenHigh, regSHMBaseLow, regSHMBaseHigh:
		return 0xffffffff // no shared memory regions: length -1 (§4.2.2)
	case regConfigGeneration:
		return t.st.ConfigGeneration
	}
	// Write-only and reserved registers read as 0.
	return 0
}

// writeReg applies a register write. It returns whether to pulse the
// interrupt line and which queue to notify (-1: none).
func (t *MMIO) writeReg(offset uint64, v uint32) (pulse bool, notify int) {
	notify = -1
	switch offset {
	case regDeviceFeatSel:
		t.st.DeviceFeaturesSel = v
	case regDriverFeatSel:
		t.st.DriverFeaturesSel = v
	case regDriverFeatures:
		if t.st.Status&(StatusFeaturesOK|StatusFailed) != 0 || t.st.Status&StatusDriver == 0 {
			t.ignored("driver features outside the DRIVER step", v)
			return
		}
		switch t.st.DriverFeaturesSel {
		case 0:
			t.st.DriverFeatures = t.st.DriverFeatures&^0xffffffff | uint64(v)
		case 1:
			t.st.DriverFeatures = t.st.DriverFeatures&0xffffffff | uint64(v)<<32
		default:
			t.ignored("driver features with selector above 1", v)
		}
	case regQueueSel:
		t.st.QueueSel = v
	case regQueueNum, regQueueDescLow, regQueueDescHigh, regQueueAvailLow,
		regQueueAvailHigh, regQueueUsedLow, regQueueUsedHigh:
		t.writeQueueReg(offset, v)
	case regQueueReady:
		t.writeQueueReady(v)
	case regQueueNotify:
		if t.notifier != nil && t.st.Status&StatusDriverOK != 0 && uint64(v) < uint64(len(t.st.Queues)) {
			notify = int(v)
		}
	case regInterruptACK:
		t.st.InterruptStatus &^= v
	case regStatus:
		pulse = t.writeStatus(v)
	case regSHMSel:
		t.st.SHMSel = v
	default:
		t.ignored("write to a read-only or reserved register", v, "offset", offset)
	}
	return pulse, notify
}

func (t *MMIO) ignored(why string, v uint32, args ...any) {
	t.log.Debug("virtio-mmio: ignored "+why, append([]any{"value", v, "status", t.st.Status,
		"queue_sel", t.st.QueueSel, "device_id", t.deviceID}, args...)...)
}

// writeQueueReg sets up the selected queue, which is only allowed while it is
// not ready and the device is not live (§4.2.3.2).
func (t *MMIO) writeQueueReg(offset uint64, v uint32) {
	q := t.queue()
	switch {
	case q == nil:
		t.ignored("queue register write for a queue that does not exist", v, "offset", offset)
		return
	case q.Ready || t.st.Status&StatusDriverOK != 0:
		t.ignored("queue register write while the queue is ready or the device live", v, "offset", offset)
		return
	}
	lo := func(r uint64) uint64 { return r&^0xffffffff | uint64(v) }
	hi := func(r uint64) uint64 { return r&0xffffffff | uint64(v)<<32 }
	switch offset {
	case regQueueNum:
		if v == 0 || v > uint32(t.maxSizes[t.st.QueueSel]) || v&(v-1) != 0 {
			t.ignored("queue size that is not a power of two up to QueueNumMax", v,
				"max", t.maxSizes[t.st.QueueSel])
			return
		}
		q.Num = uint16(v)
	case regQueueDescLow:
		q.Desc = lo(q.Desc)
	case regQueueDescHigh:
		q.Desc = hi(q.Desc)
	case regQueueAvailLow:
		q.Avail = lo(q.Avail)
	case regQueueAvailHigh:
		q.Avail = hi(q.Avail)
	case regQueueUsedLow:
		q.Used = lo(q.Used)
	case regQueueUsedHigh:
		q.Used = hi(q.Used)
	}
}

func (t *MMIO) writeQueueReady(v uint32) {
	q := t.queue()
	switch {
	case q == nil:
		t.ignored("QueueReady for a queue that does not exist", v)
	case t.st.Status&StatusDriverOK != 0:
		// Changing readiness of a live queue is a queue reset, which
		// needs VIRTIO_F_RING_RESET; we do not offer it.
		t.ignored("QueueReady while the device is live", v)
	case v == 0:
		q.Ready = false
	case v == 1 && q.Num != 0:
		q.Ready = true
	default:
		t.ignored("QueueReady value", v)
	}
}

// writeStatus runs the device status state machine (§2.1, §3.1.1). It
// returns whether an interrupt must be raised.
func (t *MMIO) writeStatus(v uint32) bool {
	if v == 0 {
		t.resetLocked()
		t.dev.Reset()
		return false
	}
	// DEVICE_NEEDS_RESET belongs to the device; a driver's read-modify-
	// write hands it back to us.
	cur := t.st.Status &^ StatusDeviceNeedsReset
	drv := v &^ StatusDeviceNeedsReset
	added := drv &^ cur
	switch {
	case drv == cur:
		return false
	case drv&^statusDriverBits != 0:
		t.ignored("status with unknown bits", v)
		return false
	case cur&StatusFailed != 0:
		t.ignored("status after FAILED (only a reset is accepted)", v)
		return false
	case drv&cur != cur:
		t.ignored("status that clears bits (only 0 resets)", v)
		return false
	case added == StatusFailed:
		t.st.Status |= StatusFailed
		t.log.Debug("virtio-mmio: driver set FAILED", "device_id", t.deviceID, "status", t.st.Status)
		return false
	case added != nextStatusStep(cur):
		t.ignored("status that skips a step", v)
		return false
	}
	switch added {
	case StatusFeaturesOK:
		if why := t.featuresProblem(); why != "" {
			// FEATURES_OK does not stick; the driver reads Status
			// back and gives up (§3.1.1 step 6).
			t.log.Debug("virtio-mmio: refused FEATURES_OK: "+why, "device_id", t.deviceID,
				"driver_features", t.st.DriverFeatures, "device_features", t.features)
			return false
		}
	case StatusDriverOK:
		t.st.Status |= StatusDriverOK
		if err := t.dev.Activate(t.st.DriverFeatures, t.queueConfigs()); err != nil {
			t.log.Warn("virtio-mmio: device failed to start; it needs a reset", "device_id", t.deviceID, "err", err)
			t.st.Status |= StatusDeviceNeedsReset
			t.st.InterruptStatus |= InterruptConfigChange
			return true
		}
		return false
	}
	t.st.Status |= added
	return false
}

// nextStatusStep is the bit the driver sets next in the initialization
// sequence (§3.1.1) from status cur, or 0 when it is complete.
func nextStatusStep(cur uint32) uint32 {
	switch cur {
	case 0:
		return StatusAcknowledge
	case StatusAcknowledge:
		return StatusDriver
	case StatusAcknowledge | StatusDriver:
		return StatusFeaturesOK
	case StatusAcknowledge | StatusDriver | StatusFeaturesOK:
		return StatusDriverOK
	}
	return 0
}

func (t *MMIO) featuresProblem() string {
	switch {
	case t.st.DriverFeatures&^t.features != 0:
		return fmt.Sprintf("driver accepted features %#x the device does not offer", t.st.DriverFeatures&^t.features)
	case t.st.DriverFeatures&FeatureVersion1 == 0:
		return "driver did not accept VIRTIO_F_VERSION_1 (legacy drivers are not supported)"
	}
	return ""
}

func (t *MMIO) queueConfigs() []QueueConfig {
	qs := make([]QueueConfig, len(t.st.Queues))
	for i, q := range t.st.Queues {
		qs[i].Index = i
		if q.Ready {
			qs[i].Size, qs[i].Desc, qs[i].Avail, qs[i].Used = q.Num, q.Desc, q.Avail, q.Used
			qs[i].EventIdx = t.st.DriverFeatures&FeatureEventIdx != 0
		}
	}
	return qs
}

// NeedsReset reports that the device failed (its process died, say): it sets
// DEVICE_NEEDS_RESET and raises a configuration change interrupt (§2.1.2).
// The guest keeps running; its driver may reset the device.
func (t *MMIO) NeedsReset(reason string) {
	t.mu.Lock()
	t.st.Status |= StatusDeviceNeedsReset
	t.st.InterruptStatus |= InterruptConfigChange
	t.mu.Unlock()
	t.log.Warn("virtio-mmio: device needs reset", "device_id", t.deviceID, "reason", reason)
	t.irq()
}

// SignalUsed tells the driver that a queue has used buffers (for in-process
// devices; vhost-user devices signal their irqfd instead).
func (t *MMIO) SignalUsed() {
	t.mu.Lock()
	t.st.InterruptStatus |= InterruptUsedBuffer
	t.mu.Unlock()
	t.irq()
}

// ConfigChanged tells the driver that the device changed its configuration
// space: a ConfigRefresher reads it again, ConfigGeneration moves on and a
// configuration change interrupt is raised (§2.5.1, §4.2.2).
func (t *MMIO) ConfigChanged() {
	if t.refresher != nil {
		t.refresher.RefreshConfig()
	}
	t.mu.Lock()
	t.st.ConfigGeneration++
	t.st.InterruptStatus |= InterruptConfigChange
	t.mu.Unlock()
	t.irq()
}

// Active returns what Activate was (or would be) given if the driver has set
// DRIVER_OK and the device does not need a reset: for restoring a snapshot,
// where the device is started again from the restored registers.
func (t *MMIO) Active() (features uint64, queues []QueueConfig, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.st.Status&StatusDriverOK == 0 || t.st.Status&(StatusDeviceNeedsReset|StatusFailed) != 0 {
		return 0, nil, false
	}
	return t.st.DriverFeatures, t.queueConfigs(), true
}

// State returns every register.
func (t *MMIO) State() MMIOState {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.st
	s.Queues = append([]MMIOQueueState(nil), t.st.Queues...)
	return s
}

// SetState restores registers saved by State. It does not call the device;
// see Active. The state is checked against this device, since it comes from
// a file.
func (t *MMIO) SetState(s MMIOState) error {
	if len(s.Queues) != len(t.maxSizes) {
		return fmt.Errorf("restore virtio-mmio device %d: state has %d queues, the device has %d; was the snapshot taken with another device?",
			t.deviceID, len(s.Queues), len(t.maxSizes))
	}
	for i, q := range s.Queues {
		if q.Num > t.maxSizes[i] || q.Num&(q.Num-1) != 0 || (q.Ready && q.Num == 0) {
			return fmt.Errorf("restore virtio-mmio device %d: queue %d size %d is not a power of two up to %d",
				t.deviceID, i, q.Num, t.maxSizes[i])
		}
	}
	if s.Status&^(statusDriverBits|StatusDeviceNeedsReset) != 0 {
		return fmt.Errorf("restore virtio-mmio device %d: status %#x has unknown bits", t.deviceID, s.Status)
	}
	if s.Status&StatusFeaturesOK != 0 && s.DriverFeatures&^t.features != 0 {
		return fmt.Errorf("restore virtio-mmio device %d: driver features %#x are not offered by this device (%#x)",
			t.deviceID, s.DriverFeatures, t.features)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.st = s
	t.st.Queues = append([]MMIOQueueState(nil), s.Queues...)
	return nil
}
