package kvm

// Cap is a KVM capability number for KVM_CHECK_EXTENSION and KVM_ENABLE_CAP
// (include/uapi/linux/kvm.h, KVM_CAP_*).
type Cap int

// Capabilities the VMM asks about.
const (
	CapIRQChip                Cap = 0
	CapHLT                    Cap = 1
	CapUserMemory             Cap = 3
	CapSetTSSAddr             Cap = 4
	CapExtCPUID               Cap = 7
	CapNrVCPUs                Cap = 9
	CapNrMemslots             Cap = 10
	CapMPState                Cap = 14
	CapSyncMMU                Cap = 16
	CapIRQRouting             Cap = 25
	CapIRQFD                  Cap = 32
	CapPIT2                   Cap = 33
	CapPITState2              Cap = 35
	CapIOEventFD              Cap = 36
	CapSetIdentityMapAddr     Cap = 37
	CapAdjustClock            Cap = 39
	CapVCPUEvents             Cap = 41
	CapDebugRegs              Cap = 50
	CapXSave                  Cap = 55
	CapXCRS                   Cap = 56
	CapTSCControl             Cap = 60
	CapGetTSCKHz              Cap = 61
	CapMaxVCPUs               Cap = 66
	CapKVMClockCtrl           Cap = 76
	CapReadonlyMem            Cap = 81
	CapIRQFDResample          Cap = 82
	CapMaxVCPUID              Cap = 128
	CapImmediateExit          Cap = 136
	CapManualDirtyLogProtect2 Cap = 168
	CapXSave2                 Cap = 208
)

// Arguments of KVM_ENABLE_CAP(CapManualDirtyLogProtect2), Args[0].
const (
	DirtyLogManualProtectEnable = 1 << 0 // KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE
	DirtyLogInitiallySet        = 1 << 1 // KVM_DIRTY_LOG_INITIALLY_SET
)
