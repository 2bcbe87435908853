package vhostuser

// Feature bits of GET_FEATURES/SET_FEATURES that this package interprets.
const (
	// FeatureProtocolFeatures (bit 30, reserved by virtio) says the back-end
	// speaks GET/SET_PROTOCOL_FEATURES; once acked, rings start disabled
	// until SET_VRING_ENABLE (vhost-user.rst "Ring states").
	FeatureProtocolFeatures uint64 = 1 << 30
)

// Protocol feature bits (vhost-user.rst "Protocol features").
const (
	ProtocolMQ                uint64 = 1 << 0
	ProtocolLogSHMFD          uint64 = 1 << 1
	ProtocolReplyAck          uint64 = 1 << 3
	ProtocolConfig            uint64 = 1 << 9
	ProtocolInflightSHMFD     uint64 = 1 << 12
	ProtocolConfigureMemSlots uint64 = 1 << 15

	// backendProtocolFeatures are the ones Backend implements.
	backendProtocolFeatures = ProtocolMQ | ProtocolReplyAck | ProtocolConfig
)
