package kvm

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Ioctl request encoding for x86 (include/uapi/asm-generic/ioctl.h):
// dir<<30 | size<<16 | type<<8 | nr.
const (
	iocNone  = 0
	iocWrite = 1
	iocRead  = 2

	iocNRShift   = 0
	iocTypeShift = 8
	iocSizeShift = 16
	iocDirShift  = 30

	kvmIO = 0xAE // KVMIO, the ioctl type of every KVM request
)

func ioc(dir, nr, size uintptr) uintptr {
	return dir<<iocDirShift | kvmIO<<iocTypeShift | nr<<iocNRShift | size<<iocSizeShift
}

func io(nr uintptr) uintptr         { return ioc(iocNone, nr, 0) }
func ior(nr, size uintptr) uintptr  { return ioc(iocRead, nr, size) }
func iow(nr, size uintptr) uintptr  { return ioc(iocWrite, nr, size) }
func iowr(nr, size uintptr) uintptr { return ioc(iocRead|iocWrite, nr, size) }

// iorT and friends take the argument size from the argument type.
func iorT[T any](nr uintptr) uintptr  { return ior(nr, sizeOf[T]()) }
func iowT[T any](nr uintptr) uintptr  { return iow(nr, sizeOf[T]()) }
func iowrT[T any](nr uintptr) uintptr { return iowr(nr, sizeOf[T]()) }

// Headers of the variable-length ioctl arguments; only their size enters the
// request number.
type (
	msrList  struct{ NMSRs uint32 }      // struct kvm_msr_list
	cpuid2   struct{ Nent, _ uint32 }    // struct kvm_cpuid2
	msrs     struct{ NMSRs, _ uint32 }   // struct kvm_msrs
	irqLevel struct{ IRQ, Level uint32 } // struct kvm_irq_level

	// pitConfig is struct kvm_pit_config.
	pitConfig struct {
		Flags uint32
		_     [15]uint32
	}

	// dirtyLog is struct kvm_dirty_log.
	dirtyLog struct {
		Slot, _ uint32
		Bitmap  uint64
	}

	// clearDirty is struct kvm_clear_dirty_log.
	clearDirty struct {
		Slot, NumPages uint32
		FirstPage      uint64
		Bitmap         uint64
	}
)

func sizeOf[T any]() uintptr {
	var v T
	return unsafe.Sizeof(v)
}

// Request numbers from include/uapi/linux/kvm.h; the ABI test checks each
// against the C header.
var (
	// System ioctls (/dev/kvm).
	reqGetAPIVersion     = io(0x00)
	reqCreateVM          = io(0x01)
	reqGetMSRIndexList   = iowrT[msrList](0x02)
	reqCheckExtension    = io(0x03)
	reqGetVCPUMmapSize   = io(0x04)
	reqGetSupportedCPUID = iowrT[cpuid2](0x05)

	// VM ioctls.
	reqCreateVCPU          = io(0x41)
	reqGetDirtyLog         = iowT[dirtyLog](0x42)
	reqSetUserMemoryRegion = iowT[UserspaceMemoryRegion](0x46)
	reqSetTSSAddr          = io(0x47)
	reqSetIdentityMapAddr  = iowT[uint64](0x48)
	reqCreateIRQChip       = io(0x60)
	reqIRQLine             = iowT[irqLevel](0x61)
	reqGetIRQChip          = iowrT[IRQChip](0x62)
	reqSetIRQChip          = iorT[IRQChip](0x63) // sic: _IOR in the header
	reqIRQFD               = iowT[IRQFD](0x76)
	reqCreatePIT2          = iowT[pitConfig](0x77)
	reqIOEventFD           = iowT[IOEventFD](0x79)
	reqSetClock            = iowT[ClockData](0x7b)
	reqGetClock            = iorT[ClockData](0x7c)
	reqGetPIT2             = iorT[PITState2](0x9f)
	reqSetPIT2             = iowT[PITState2](0xa0)
	reqEnableCap           = iowT[EnableCap](0xa3)
	reqClearDirtyLog       = iowrT[clearDirty](0xc0)

	// vCPU ioctls.
	reqRun           = io(0x80)
	reqGetRegs       = iorT[Regs](0x81)
	reqSetRegs       = iowT[Regs](0x82)
	reqGetSregs      = iorT[Sregs](0x83)
	reqSetSregs      = iowT[Sregs](0x84)
	reqInterrupt     = iowT[uint32](0x86)
	reqGetMSRs       = iowrT[msrs](0x88)
	reqSetMSRs       = iowT[msrs](0x89)
	reqGetFPU        = iorT[FPU](0x8c)
	reqSetFPU        = iowT[FPU](0x8d)
	reqGetLAPIC      = iorT[LAPICState](0x8e)
	reqSetLAPIC      = iowT[LAPICState](0x8f)
	reqSetCPUID2     = iowT[cpuid2](0x90)
	reqGetCPUID2     = iowrT[cpuid2](0x91)
	reqGetMPState    = iorT[MPState](0x98)
	reqSetMPState    = iowT[MPState](0x99)
	reqGetVCPUEvents = iorT[VCPUEvents](0x9f)
	reqSetVCPUEvents = iowT[VCPUEvents](0xa0)
	reqGetDebugRegs  = iorT[DebugRegs](0xa1)
	reqSetDebugRegs  = iowT[DebugRegs](0xa2)
	reqSetTSCKHz     = io(0xa2)
	reqGetTSCKHz     = io(0xa3)
	reqGetXSave      = iorT[XSave](0xa4)
	reqSetXSave      = iowT[XSave](0xa5)
	reqGetXCRS       = iorT[XCRS](0xa6)
	reqSetXCRS       = iowT[XCRS](0xa7)
	reqKVMClockCtrl  = io(0xad)
)

// ioctl issues a request whose argument is a plain integer and returns the
// kernel's non-negative result.
func ioctl(fd int, req, arg uintptr) (int, error) {
	for tries := 0; ; tries++ {
		r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, arg)
		if retryable(req, errno, tries) {
			continue
		}
		if errno != 0 {
			return int(r), errno
		}
		return int(r), nil
	}
}

// retryable says whether a request that failed with errno should be issued
// again: EINTR means a signal (the Go runtime's preemption SIGURG among
// them) interrupted the kernel's work, not that the request was refused.
// Seen here: KVM_CREATE_VM under load on a nested host. KVM_RUN is never
// retried: its EINTR is how immediate_exit and kicks stop a vCPU.
func retryable(req uintptr, errno unix.Errno, tries int) bool {
	return errno == unix.EINTR && req != uintptr(reqRun) && tries < 100
}

// ioctlPtr issues a request whose argument is a pointer. Taking an
// unsafe.Pointer (not a uintptr) keeps the pointee alive for the call.
func ioctlPtr(fd int, req uintptr, arg unsafe.Pointer) (int, error) {
	for tries := 0; ; tries++ {
		r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg))
		if retryable(req, errno, tries) {
			continue
		}
		if errno != 0 {
			return int(r), errno
		}
		return int(r), nil
	}
}
