package virtio

// Feature bits the transport and queues care about (virtio 1.2 §6).
const (
	FeatureIndirectDesc     = 1 << 28 // VIRTIO_F_INDIRECT_DESC
	FeatureEventIdx         = 1 << 29 // VIRTIO_F_EVENT_IDX
	FeatureVersion1         = 1 << 32 // VIRTIO_F_VERSION_1
	FeatureAccessPlatform   = 1 << 33 // VIRTIO_F_ACCESS_PLATFORM
	FeatureRingPacked       = 1 << 34 // VIRTIO_F_RING_PACKED
	FeatureNotificationData = 1 << 38 // VIRTIO_F_NOTIFICATION_DATA
	FeatureRingReset        = 1 << 40 // VIRTIO_F_RING_RESET
)

// Device status bits (virtio 1.2 §2.1).
const (
	StatusAcknowledge      = 0x01
	StatusDriver           = 0x02
	StatusDriverOK         = 0x04
	StatusFeaturesOK       = 0x08
	StatusDeviceNeedsReset = 0x40
	StatusFailed           = 0x80
)

// Device IDs (virtio 1.2 §5).
const (
	DeviceNet   = 1
	DeviceBlock = 2
	DeviceRNG   = 4
	DeviceVsock = 19
)

// MMIOQueueNotify is the offset of the QueueNotify register (virtio 1.2
// §4.2.2): the address a vmm binds a queue's ioeventfd to, with the queue
// index as datamatch.
const MMIOQueueNotify = 0x050

// Split virtqueue layout (virtio 1.2 §2.7).
const (
	MaxQueueSize = 32768

	descSize = 16 // struct virtq_desc: addr u64, len u32, flags u16, next u16

	descFNext     = 1 // VIRTQ_DESC_F_NEXT
	descFWrite    = 2 // VIRTQ_DESC_F_WRITE
	descFIndirect = 4 // VIRTQ_DESC_F_INDIRECT

	availFNoInterrupt = 1 // VIRTQ_AVAIL_F_NO_INTERRUPT
	usedFNoNotify     = 1 // VIRTQ_USED_F_NO_NOTIFY

	usedElemSize = 8 // struct virtq_used_elem: id u32, len u32
)

// Area sizes of a split virtqueue of the given size (virtio 1.2 §2.7, table
// "Virtqueue Part Alignment and Size"); the event fields are always counted.
func descTableSize(size uint16) uint64 { return descSize * uint64(size) }
func availRingSize(size uint16) uint64 { return 6 + 2*uint64(size) }
func usedRingSize(size uint16) uint64  { return 6 + usedElemSize*uint64(size) }
