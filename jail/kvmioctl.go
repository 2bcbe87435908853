package jail

// KVM ioctl request numbers for VCPUThreadPolicy, as data
// (include/uapi/linux/kvm.h, x86-64). Package kvm keeps its own numbers
// unexported; these are checked against the C header by hand and pinned by
// testdata/vcpu.golden.
const (
	kvmIRQLine       = 0x4008ae61
	kvmRun           = 0xae80
	kvmGetRegs       = 0x8090ae81
	kvmSetRegs       = 0x4090ae82
	kvmGetSregs      = 0x8138ae83
	kvmSetSregs      = 0x4138ae84
	kvmInterrupt     = 0x4004ae86
	kvmGetMSRs       = 0xc008ae88
	kvmSetMSRs       = 0x4008ae89
	kvmGetFPU        = 0x81a0ae8c
	kvmSetFPU        = 0x41a0ae8d
	kvmGetLAPIC      = 0x8400ae8e
	kvmSetLAPIC      = 0x4400ae8f
	kvmGetMPState    = 0x8004ae98
	kvmSetMPState    = 0x4004ae99
	kvmGetVCPUEvents = 0x8040ae9f
	kvmSetVCPUEvents = 0x4040aea0
	kvmGetDebugRegs  = 0x8080aea1
	kvmSetDebugRegs  = 0x4080aea2
	kvmGetTSCKHz     = 0xaea3
	kvmGetXSave      = 0x9000aea4
	kvmSetXSave      = 0x5000aea5
	kvmGetXCRs       = 0x8188aea6
	kvmSetXCRs       = 0x4188aea7
	kvmKVMClockCtrl  = 0xaead
)
