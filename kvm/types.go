package kvm

// FPU is struct kvm_fpu: the legacy x87/SSE state in FXSAVE layout.
// KVM_GET_FPU/KVM_SET_FPU do not transfer MXCSR (it reads back 0); save
// and restore it through XSave.
type FPU struct {
	FPR        [8][16]uint8
	FCW        uint16
	FSW        uint16
	FTWX       uint8 // abridged tag word, as in FXSAVE
	_          uint8
	LastOpcode uint16
	LastIP     uint64
	LastDP     uint64
	XMM        [16][16]uint8
	MXCSR      uint32
	_          uint32
}

// XSave is struct kvm_xsave without the flexible tail: the XSAVE area laid
// out as CPUID leaf 0xD on the host says.
type XSave struct {
	Region [1024]uint32
}

// XCR is struct kvm_xcr.
type XCR struct {
	XCR   uint32
	_     uint32
	Value uint64
}

// XCRS is struct kvm_xcrs (KVM_MAX_XCRS = 16).
type XCRS struct {
	NrXCRs uint32
	Flags  uint32
	XCRs   [16]XCR
	_      [16]uint64
}

// MSREntry is struct kvm_msr_entry.
type MSREntry struct {
	Index uint32
	_     uint32
	Data  uint64
}

// LAPICState is struct kvm_lapic_state: the local APIC register page.
type LAPICState struct {
	Regs [1024]byte
}

// VCPUEventException is the exception part of struct kvm_vcpu_events.
type VCPUEventException struct {
	Injected     uint8
	Nr           uint8
	HasErrorCode uint8
	Pending      uint8
	ErrorCode    uint32
}

// VCPUEventInterrupt is the interrupt part of struct kvm_vcpu_events.
type VCPUEventInterrupt struct {
	Injected uint8
	Nr       uint8
	Soft     uint8
	Shadow   uint8
}

// VCPUEventNMI is the NMI part of struct kvm_vcpu_events.
type VCPUEventNMI struct {
	Injected uint8
	Pending  uint8
	Masked   uint8
	_        uint8
}

// VCPUEventSMI is the SMI part of struct kvm_vcpu_events.
type VCPUEventSMI struct {
	SMM          uint8
	Pending      uint8
	SMMInsideNMI uint8
	LatchedInit  uint8
}

// VCPUEvents is struct kvm_vcpu_events: pending and injected events.
type VCPUEvents struct {
	Exception           VCPUEventException
	Interrupt           VCPUEventInterrupt
	NMI                 VCPUEventNMI
	SIPIVector          uint32
	Flags               uint32
	SMI                 VCPUEventSMI
	TripleFaultPending  uint8
	_                   [26]uint8
	ExceptionHasPayload uint8
	ExceptionPayload    uint64
}

// VCPUEvents.Flags: which optional fields KVM_SET_VCPU_EVENTS applies.
const (
	VCPUEventValidNMIPending  = 1 << 0
	VCPUEventValidSIPIVector  = 1 << 1
	VCPUEventValidShadow      = 1 << 2
	VCPUEventValidSMM         = 1 << 3
	VCPUEventValidPayload     = 1 << 4
	VCPUEventValidTripleFault = 1 << 5
)

// MPState is struct kvm_mp_state.
type MPState struct {
	State uint32
}

// MPState.State values (x86 subset of KVM_MP_STATE_*).
const (
	MPStateRunnable      = 0
	MPStateUninitialized = 1
	MPStateInitReceived  = 2
	MPStateHalted        = 3
	MPStateSIPIReceived  = 4
)

// DebugRegs is struct kvm_debugregs.
type DebugRegs struct {
	DB    [4]uint64
	DR6   uint64
	DR7   uint64
	Flags uint64
	_     [9]uint64
}

// PITChannelState is struct kvm_pit_channel_state.
type PITChannelState struct {
	Count         uint32 // can be 65536
	LatchedCount  uint16
	CountLatched  uint8
	StatusLatched uint8
	Status        uint8
	ReadState     uint8
	WriteState    uint8
	WriteLatch    uint8
	RWMode        uint8
	Mode          uint8
	BCD           uint8
	Gate          uint8
	CountLoadTime int64
}

// PITState2 is struct kvm_pit_state2.
type PITState2 struct {
	Channels [3]PITChannelState
	Flags    uint32
	_        [9]uint32
}

// PITState2.Flags.
const PITFlagsHPETLegacy = 1 << 0 // KVM_PIT_FLAGS_HPET_LEGACY

// ClockData is struct kvm_clock_data.
type ClockData struct {
	Clock    uint64 // kvmclock nanoseconds
	Flags    uint32
	_        uint32
	Realtime uint64 // CLOCK_REALTIME ns, valid with ClockRealtime
	HostTSC  uint64 // host TSC at the sample, valid with ClockHostTSC
	_        [4]uint32
}

// ClockData.Flags.
const (
	ClockTSCStable = 1 << 1 // KVM_CLOCK_TSC_STABLE
	ClockRealtime  = 1 << 2 // KVM_CLOCK_REALTIME
	ClockHostTSC   = 1 << 3 // KVM_CLOCK_HOST_TSC
)
