package kvm

import (
	"fmt"
	"runtime"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// VM is a KVM virtual machine file descriptor.
type VM struct {
	fd       int
	mmapSize int

	mu sync.Mutex
	// slots maps each registered memory slot to its size in bytes, so that
	// GetDirtyLog can refuse a bitmap the kernel would overrun.
	slots map[uint32]uint64
}

// FD returns the VM file descriptor.
func (vm *VM) FD() int { return vm.fd }

// Close closes the VM; the VM lives on in the kernel until its vCPUs and
// any other references to it are closed too.
func (vm *VM) Close() error { return closeFD(&vm.fd, "VM") }

// UserspaceMemoryRegion is struct kvm_userspace_memory_region.
type UserspaceMemoryRegion struct {
	Slot          uint32
	Flags         uint32
	GuestPhysAddr uint64
	MemorySize    uint64
	UserspaceAddr uint64
}

// Flags of UserspaceMemoryRegion.
const (
	MemLogDirtyPages = 1 << 0 // KVM_MEM_LOG_DIRTY_PAGES
	MemReadonly      = 1 << 1 // KVM_MEM_READONLY: guest writes exit as MMIO
)

// SetUserMemoryRegion creates, moves or (with MemorySize 0) deletes a slot.
func (vm *VM) SetUserMemoryRegion(r *UserspaceMemoryRegion) error {
	if _, err := ioctlPtr(vm.fd, reqSetUserMemoryRegion, unsafe.Pointer(r)); err != nil {
		return fmt.Errorf("KVM_SET_USER_MEMORY_REGION slot %d gpa %#x size %#x: %w (overlapping slot, or unaligned address?)",
			r.Slot, r.GuestPhysAddr, r.MemorySize, err)
	}
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if r.MemorySize == 0 {
		delete(vm.slots, r.Slot)
	} else {
		vm.slots[r.Slot] = r.MemorySize
	}
	return nil
}

// SetTSSAddr places the three-page TSS region Intel VMX needs for real mode
// (KVM_SET_TSS_ADDR); it must not overlap guest memory.
func (vm *VM) SetTSSAddr(addr uint64) error {
	if _, err := ioctl(vm.fd, reqSetTSSAddr, uintptr(addr)); err != nil {
		return fmt.Errorf("KVM_SET_TSS_ADDR %#x: %w", addr, err)
	}
	return nil
}

// SetIdentityMapAddr places the one-page identity map VMX uses for real
// mode (KVM_SET_IDENTITY_MAP_ADDR); call before creating vCPUs.
func (vm *VM) SetIdentityMapAddr(addr uint64) error {
	if _, err := ioctlPtr(vm.fd, reqSetIdentityMapAddr, unsafe.Pointer(&addr)); err != nil {
		return fmt.Errorf("KVM_SET_IDENTITY_MAP_ADDR %#x: %w", addr, err)
	}
	return nil
}

// CreateIRQChip creates the in-kernel PICs, IOAPIC and local APICs; call
// before creating vCPUs.
func (vm *VM) CreateIRQChip() error {
	if _, err := ioctl(vm.fd, reqCreateIRQChip, 0); err != nil {
		return fmt.Errorf("KVM_CREATE_IRQCHIP: %w", err)
	}
	return nil
}

// IRQChip is struct kvm_irqchip; Chip holds struct kvm_pic_state or struct
// kvm_ioapic_state depending on ChipID.
type IRQChip struct {
	ChipID uint32
	_      uint32
	Chip   [512]byte
}

// IRQChip.ChipID values.
const (
	IRQChipPICMaster = 0
	IRQChipPICSlave  = 1
	IRQChipIOAPIC    = 2
)

// GetIRQChip reads the state of the chip named by chip.ChipID.
func (vm *VM) GetIRQChip(chip *IRQChip) error {
	if _, err := ioctlPtr(vm.fd, reqGetIRQChip, unsafe.Pointer(chip)); err != nil {
		return fmt.Errorf("KVM_GET_IRQCHIP chip %d: %w (was CreateIRQChip called?)", chip.ChipID, err)
	}
	return nil
}

// SetIRQChip writes the state of the chip named by chip.ChipID.
func (vm *VM) SetIRQChip(chip *IRQChip) error {
	if _, err := ioctlPtr(vm.fd, reqSetIRQChip, unsafe.Pointer(chip)); err != nil {
		return fmt.Errorf("KVM_SET_IRQCHIP chip %d: %w (was CreateIRQChip called?)", chip.ChipID, err)
	}
	return nil
}

// pitSpeakerDummy makes port 0x61 reads/writes harmless (KVM_PIT_SPEAKER_DUMMY).
const pitSpeakerDummy = 1

// CreatePIT2 creates the in-kernel i8254 PIT with a dummy speaker port; call
// after CreateIRQChip.
func (vm *VM) CreatePIT2() error {
	cfg := pitConfig{Flags: pitSpeakerDummy}
	if _, err := ioctlPtr(vm.fd, reqCreatePIT2, unsafe.Pointer(&cfg)); err != nil {
		return fmt.Errorf("KVM_CREATE_PIT2: %w (was CreateIRQChip called first?)", err)
	}
	return nil
}

// GetPIT2 reads the in-kernel PIT state.
func (vm *VM) GetPIT2() (*PITState2, error) {
	var s PITState2
	if _, err := ioctlPtr(vm.fd, reqGetPIT2, unsafe.Pointer(&s)); err != nil {
		return nil, fmt.Errorf("KVM_GET_PIT2: %w (was CreatePIT2 called?)", err)
	}
	return &s, nil
}

// SetPIT2 writes the in-kernel PIT state.
func (vm *VM) SetPIT2(s *PITState2) error {
	if _, err := ioctlPtr(vm.fd, reqSetPIT2, unsafe.Pointer(s)); err != nil {
		return fmt.Errorf("KVM_SET_PIT2: %w (was CreatePIT2 called?)", err)
	}
	return nil
}

// GetClock reads the VM's kvmclock.
func (vm *VM) GetClock() (*ClockData, error) {
	var c ClockData
	if _, err := ioctlPtr(vm.fd, reqGetClock, unsafe.Pointer(&c)); err != nil {
		return nil, fmt.Errorf("KVM_GET_CLOCK: %w", err)
	}
	return &c, nil
}

// SetClock sets the VM's kvmclock.
func (vm *VM) SetClock(c *ClockData) error {
	if _, err := ioctlPtr(vm.fd, reqSetClock, unsafe.Pointer(c)); err != nil {
		return fmt.Errorf("KVM_SET_CLOCK: %w", err)
	}
	return nil
}

// IRQLine sets the level of an in-kernel irqchip input (KVM_IRQ_LINE).
func (vm *VM) IRQLine(irq, level uint32) error {
	l := irqLevel{IRQ: irq, Level: level}
	if _, err := ioctlPtr(vm.fd, reqIRQLine, unsafe.Pointer(&l)); err != nil {
		return fmt.Errorf("KVM_IRQ_LINE irq %d level %d: %w", irq, level, err)
	}
	return nil
}

// IOEventFD is struct kvm_ioeventfd.
type IOEventFD struct {
	Datamatch uint64
	Addr      uint64
	Len       uint32
	FD        int32
	Flags     uint32
	_         [36]byte
}

// Flags of IOEventFD.
const (
	IOEventFDFlagDatamatch = 1 << 0
	IOEventFDFlagPIO       = 1 << 1
	IOEventFDFlagDeassign  = 1 << 2
)

// IOEventFD assigns (or with IOEventFDFlagDeassign removes) an eventfd that
// KVM signals on a guest write to e.Addr instead of exiting.
func (vm *VM) IOEventFD(e *IOEventFD) error {
	if _, err := ioctlPtr(vm.fd, reqIOEventFD, unsafe.Pointer(e)); err != nil {
		return fmt.Errorf("KVM_IOEVENTFD addr %#x len %d flags %#x: %w", e.Addr, e.Len, e.Flags, err)
	}
	return nil
}

// IRQFD is struct kvm_irqfd.
type IRQFD struct {
	FD         uint32
	GSI        uint32
	Flags      uint32
	ResampleFD uint32
	_          [16]byte
}

// Flags of IRQFD.
const (
	IRQFDFlagDeassign = 1 << 0
	IRQFDFlagResample = 1 << 1
)

// IRQFD binds (or with IRQFDFlagDeassign unbinds) an eventfd whose signal
// raises GSI f.GSI; needs the in-kernel irqchip.
func (vm *VM) IRQFD(f *IRQFD) error {
	if _, err := ioctlPtr(vm.fd, reqIRQFD, unsafe.Pointer(f)); err != nil {
		return fmt.Errorf("KVM_IRQFD fd %d gsi %d flags %#x: %w", f.FD, f.GSI, f.Flags, err)
	}
	return nil
}

const pageSize = 4096

// GetDirtyLog copies the dirty-page bitmap of slot into bitmap (bit i of
// word i/64 is page i of the slot). bitmap must cover the whole slot.
func (vm *VM) GetDirtyLog(slot uint32, bitmap []uint64) error {
	vm.mu.Lock()
	size, ok := vm.slots[slot]
	vm.mu.Unlock()
	if !ok {
		return fmt.Errorf("KVM_GET_DIRTY_LOG slot %d: slot not registered through SetUserMemoryRegion", slot)
	}
	pages := (size + pageSize - 1) / pageSize
	if need := (pages + 63) / 64; uint64(len(bitmap)) < need {
		return fmt.Errorf("KVM_GET_DIRTY_LOG slot %d: bitmap has %d words, the slot's %d pages need %d", slot, len(bitmap), pages, need)
	}
	d := dirtyLog{Slot: slot, Bitmap: uint64(uintptr(unsafe.Pointer(&bitmap[0])))}
	_, err := ioctlPtr(vm.fd, reqGetDirtyLog, unsafe.Pointer(&d))
	runtime.KeepAlive(bitmap) // d holds its address as an integer
	if err != nil {
		return fmt.Errorf("KVM_GET_DIRTY_LOG slot %d: %w (is MemLogDirtyPages set on the slot?)", slot, err)
	}
	return nil
}

// ClearDirtyLog re-protects numPages pages of slot from firstPage on, for
// each bit set in bitmap (KVM_CLEAR_DIRTY_LOG, needs
// CapManualDirtyLogProtect2 enabled). firstPage must be a multiple of 64.
func (vm *VM) ClearDirtyLog(slot uint32, firstPage uint64, numPages uint32, bitmap []uint64) error {
	if need := (uint64(numPages) + 63) / 64; uint64(len(bitmap)) < need {
		return fmt.Errorf("KVM_CLEAR_DIRTY_LOG slot %d: bitmap has %d words, %d pages need %d", slot, len(bitmap), numPages, need)
	}
	if numPages == 0 {
		return nil
	}
	d := clearDirty{Slot: slot, NumPages: numPages, FirstPage: firstPage, Bitmap: uint64(uintptr(unsafe.Pointer(&bitmap[0])))}
	_, err := ioctlPtr(vm.fd, reqClearDirtyLog, unsafe.Pointer(&d))
	runtime.KeepAlive(bitmap)
	if err != nil {
		return fmt.Errorf("KVM_CLEAR_DIRTY_LOG slot %d pages [%d,+%d): %w (is CapManualDirtyLogProtect2 enabled?)", slot, firstPage, numPages, err)
	}
	return nil
}

// EnableCap is struct kvm_enable_cap.
type EnableCap struct {
	Cap   uint32
	Flags uint32
	Args  [4]uint64
	_     [64]byte
}

// EnableCap turns on a VM capability (KVM_ENABLE_CAP on the VM fd).
func (vm *VM) EnableCap(c *EnableCap) error {
	if _, err := ioctlPtr(vm.fd, reqEnableCap, unsafe.Pointer(c)); err != nil {
		return fmt.Errorf("KVM_ENABLE_CAP %d: %w", c.Cap, err)
	}
	return nil
}

// CheckExtension asks the VM (KVM_CHECK_EXTENSION on the VM fd), whose
// answer can differ from the system's for per-VM capabilities.
func (vm *VM) CheckExtension(c Cap) (int, error) {
	v, err := ioctl(vm.fd, reqCheckExtension, uintptr(c))
	if err != nil {
		return 0, fmt.Errorf("KVM_CHECK_EXTENSION %d on VM: %w", c, err)
	}
	return v, nil
}

// CreateVCPU creates vCPU id and maps its kvm_run area.
func (vm *VM) CreateVCPU(id int) (*VCPU, error) {
	fd, err := ioctl(vm.fd, reqCreateVCPU, uintptr(id))
	if err != nil {
		return nil, fmt.Errorf("KVM_CREATE_VCPU %d: %w (duplicate id, or above the CapMaxVCPUID limit?)", id, err)
	}
	mem, err := unix.Mmap(fd, 0, vm.mmapSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("mmap kvm_run of vCPU %d (%d bytes): %w", id, vm.mmapSize, err)
	}
	return &VCPU{fd: fd, id: id, mem: mem, run: (*Run)(unsafe.Pointer(&mem[0]))}, nil
}
