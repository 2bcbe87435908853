package kvm

import (
	"fmt"
	"unsafe"
)

// Run is struct kvm_run, the area shared with the kernel through the vCPU
// mmap. The exit union stays private; read it through the typed accessors,
// and only for the matching exit reason.
type Run struct {
	RequestInterruptWindow     uint8
	ImmediateExit              uint8
	_                          [6]uint8
	ExitReason                 uint32
	ReadyForInterruptInjection uint8
	IFFlag                     uint8
	Flags                      uint16
	CR8                        uint64
	APICBase                   uint64
	exit                       [256]byte // the anonymous exit union
	ValidRegs                  uint64    // kvm_valid_regs (KVM_CAP_SYNC_REGS)
	DirtyRegs                  uint64    // kvm_dirty_regs
	sync                       [2048]byte
}

// ExitReason is kvm_run.exit_reason (KVM_EXIT_*).
type ExitReason uint32

// Exit reasons from include/uapi/linux/kvm.h.
const (
	ExitUnknown       ExitReason = 0
	ExitException     ExitReason = 1
	ExitIO            ExitReason = 2
	ExitHypercall     ExitReason = 3
	ExitDebug         ExitReason = 4
	ExitHLT           ExitReason = 5
	ExitMMIO          ExitReason = 6
	ExitIRQWindowOpen ExitReason = 7
	ExitShutdown      ExitReason = 8
	ExitFailEntry     ExitReason = 9
	ExitIntr          ExitReason = 10
	ExitSetTPR        ExitReason = 11
	ExitTPRAccess     ExitReason = 12
	ExitNMI           ExitReason = 16
	ExitInternalError ExitReason = 17
	ExitWatchdog      ExitReason = 21
	ExitEPR           ExitReason = 23
	ExitSystemEvent   ExitReason = 24
	ExitIOAPICEOI     ExitReason = 26
	ExitHyperV        ExitReason = 27
	ExitX86RDMSR      ExitReason = 29
	ExitX86WRMSR      ExitReason = 30
	ExitDirtyRingFull ExitReason = 31
	ExitAPResetHold   ExitReason = 32
	ExitX86BusLock    ExitReason = 33
	ExitXen           ExitReason = 34
	ExitNotify        ExitReason = 37
	ExitMemoryFault   ExitReason = 39
)

var exitNames = map[ExitReason]string{
	ExitUnknown:       "UNKNOWN",
	ExitException:     "EXCEPTION",
	ExitIO:            "IO",
	ExitHypercall:     "HYPERCALL",
	ExitDebug:         "DEBUG",
	ExitHLT:           "HLT",
	ExitMMIO:          "MMIO",
	ExitIRQWindowOpen: "IRQ_WINDOW_OPEN",
	ExitShutdown:      "SHUTDOWN",
	ExitFailEntry:     "FAIL_ENTRY",
	ExitIntr:          "INTR",
	ExitSetTPR:        "SET_TPR",
	ExitTPRAccess:     "TPR_ACCESS",
	ExitNMI:           "NMI",
	ExitInternalError: "INTERNAL_ERROR",
	ExitWatchdog:      "WATCHDOG",
	ExitEPR:           "EPR",
	ExitSystemEvent:   "SYSTEM_EVENT",
	ExitIOAPICEOI:     "IOAPIC_EOI",
	ExitHyperV:        "HYPERV",
	ExitX86RDMSR:      "X86_RDMSR",
	ExitX86WRMSR:      "X86_WRMSR",
	ExitDirtyRingFull: "DIRTY_RING_FULL",
	ExitAPResetHold:   "AP_RESET_HOLD",
	ExitX86BusLock:    "X86_BUS_LOCK",
	ExitXen:           "XEN",
	ExitNotify:        "NOTIFY",
	ExitMemoryFault:   "MEMORY_FAULT",
}

// String returns the KVM_EXIT_ name without its prefix, e.g. "MMIO".
func (e ExitReason) String() string {
	if n, ok := exitNames[e]; ok {
		return n
	}
	return fmt.Sprintf("EXIT_%d", uint32(e))
}

// Directions of an ExitIO.
const (
	IODirIn  = 0
	IODirOut = 1
)

// System event types of an ExitSystemEvent.
const (
	SystemEventShutdown = 1
	SystemEventReset    = 2
	SystemEventCrash    = 3
)

// Internal error sub-reasons of an ExitInternalError.
const (
	InternalErrorEmulation            = 1
	InternalErrorSimulEx              = 2
	InternalErrorDeliveryEv           = 3
	InternalErrorUnexpectedExitReason = 4
)

// Members of the exit union (the C layouts, at union offset 0).
type (
	exitFailEntry struct {
		HardwareReason uint64
		CPU            uint32
	}
	exitException struct{ Exception, ErrorCode uint32 }
	exitIO        struct {
		Direction  uint8
		Size       uint8
		Port       uint16
		Count      uint32
		DataOffset uint64
	}
	exitMMIO struct {
		PhysAddr uint64
		Data     [8]uint8
		Len      uint32
		IsWrite  uint8
	}
	exitInternal struct {
		Suberror uint32
		NData    uint32
		Data     [16]uint64
	}
	exitSystemEvent struct {
		Type  uint32
		NData uint32
		Data  [16]uint64 // Data[0] doubles as the legacy flags field
	}
)

// union returns the exit union viewed as T; the union is 8-byte aligned
// (offset 32 of a page-aligned mapping) and larger than every T used.
func union[T any](r *Run) *T { return (*T)(unsafe.Pointer(&r.exit[0])) }

// Reason returns the exit reason of the last KVM_RUN.
func (r *Run) Reason() ExitReason { return ExitReason(r.ExitReason) }

// IO describes an ExitIO: count items of size bytes each at dataOffset
// from the start of the kvm_run mapping (see VCPU.IOData).
func (r *Run) IO() (dir uint8, size uint8, port uint16, count uint32, dataOffset uint64) {
	e := union[exitIO](r)
	return e.Direction, e.Size, e.Port, e.Count, e.DataOffset
}

// MMIO describes an ExitMMIO. data aliases kvm_run: for a read, fill it
// before the next Run.
func (r *Run) MMIO() (physAddr uint64, data []byte, isWrite bool) {
	e := union[exitMMIO](r)
	n := min(e.Len, uint32(len(e.Data)))
	return e.PhysAddr, e.Data[:n], e.IsWrite != 0
}

// Exception describes an ExitException.
func (r *Run) Exception() (vector, errorCode uint32) {
	e := union[exitException](r)
	return e.Exception, e.ErrorCode
}

// SystemEvent describes an ExitSystemEvent.
func (r *Run) SystemEvent() (typ uint32, flags uint64) {
	e := union[exitSystemEvent](r)
	return e.Type, e.Data[0]
}

// InternalError describes an ExitInternalError; data is a copy of the
// kernel's diagnostic words.
func (r *Run) InternalError() (suberror uint32, data []uint64) {
	e := union[exitInternal](r)
	n := min(e.NData, uint32(len(e.Data)))
	return e.Suberror, append([]uint64(nil), e.Data[:n]...)
}

// FailEntry describes an ExitFailEntry.
func (r *Run) FailEntry() (hardwareReason uint64, cpu uint32) {
	e := union[exitFailEntry](r)
	return e.HardwareReason, e.CPU
}
