package vhostuser

// Feature bits of GET_FEATURES/SET_FEATURES that this package interprets.
const (
	// FeatureProtocolFeatures (bit 30, reserved by virtio) says the back-end
	// speaks GET/SET_PROTOCOL_FEATURES; once acked, rings start disabled
	// until SET_VRING_ENABLE (vhost-user.rst "Ring states").
	FeatureProtocolFeatures uint64 = 1 << 30
	// FeatureLogAll (VHOST_F_LOG_ALL, bit 26): while acked, the back-end
	// records every guest page it writes in the log SET_LOG_BASE shared.
	FeatureLogAll uint64 = 1 << 26
)

// Protocol feature bits (vhost-user.rst "Protocol features").
const (
	ProtocolMQ                uint64 = 1 << 0
	ProtocolLogSHMFD          uint64 = 1 << 1
	ProtocolReplyAck          uint64 = 1 << 3
	ProtocolPagefault         uint64 = 1 << 8
	ProtocolConfig            uint64 = 1 << 9
	ProtocolInflightSHMFD     uint64 = 1 << 12
	ProtocolConfigureMemSlots uint64 = 1 << 15

	// backendProtocolFeatures are the ones Backend implements.
	backendProtocolFeatures = ProtocolMQ | ProtocolReplyAck | ProtocolConfig | ProtocolLogSHMFD | ProtocolPagefault

	// alwaysOffered are implemented by Backend for every device.
	alwaysOffered = ProtocolLogSHMFD | ProtocolPagefault

	// MaxLogSize bounds the dirty log a front-end may share: one bit per
	// 4 KiB page, so 64 MiB covers 2 TiB of guest-physical space.
	MaxLogSize = 64 << 20
)
