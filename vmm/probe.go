package vmm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/sietch-vm/sietch/boot"
	"github.com/sietch-vm/sietch/kvm"
)

// requiredCaps are the KVM capabilities the vmm cannot run without.
var requiredCaps = []struct {
	cap  kvm.Cap
	name string
}{
	{kvm.CapIRQChip, "KVM_CAP_IRQCHIP"},
	{kvm.CapUserMemory, "KVM_CAP_USER_MEMORY"},
	{kvm.CapSetTSSAddr, "KVM_CAP_SET_TSS_ADDR"},
	{kvm.CapPIT2, "KVM_CAP_PIT2"},
	{kvm.CapIRQFD, "KVM_CAP_IRQFD"},
	{kvm.CapIOEventFD, "KVM_CAP_IOEVENTFD"},
	{kvm.CapImmediateExit, "KVM_CAP_IMMEDIATE_EXIT"},
	{kvm.CapExtCPUID, "KVM_CAP_EXT_CPUID"},
	{kvm.CapMPState, "KVM_CAP_MP_STATE"},
	{kvm.CapVCPUEvents, "KVM_CAP_VCPU_EVENTS"},
}

// optionalCaps matter for later features (snapshots) but not to boot.
var optionalCaps = []struct {
	cap  kvm.Cap
	name string
}{
	{kvm.CapXSave, "KVM_CAP_XSAVE"},
	{kvm.CapXCRS, "KVM_CAP_XCRS"},
	{kvm.CapDebugRegs, "KVM_CAP_DEBUGREGS"},
	{kvm.CapAdjustClock, "KVM_CAP_ADJUST_CLOCK"},
	{kvm.CapManualDirtyLogProtect2, "KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2"},
	{kvm.CapTSCControl, "KVM_CAP_TSC_CONTROL"},
}

// CapStatus is one capability and whether KVM has it.
type CapStatus struct {
	Name     string
	Present  bool
	Required bool
}

func checkCaps(sys *kvm.System) error {
	var missing []string
	for _, c := range requiredCaps {
		if n, err := sys.CheckExtension(c.cap); err != nil || n <= 0 {
			missing = append(missing, c.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("this host's KVM lacks %v: run `vmm check` for details", missing)
	}
	return nil
}

// ModeTiming is the cost of one iteration of a two-instruction loop
// (dec; jnz) in guest kernel mode and in guest user mode.
type ModeTiming struct {
	CPL0 time.Duration
	CPL3 time.Duration
}

// Emulated reports whether guest kernel mode runs far slower than user mode:
// with VT-x/AMD-V both take about a nanosecond per iteration; on a
// page-table-based nested KVM kernel mode is emulated at ~1 µs/instruction.
func (t ModeTiming) Emulated() bool {
	cpl3 := max(t.CPL3, time.Nanosecond)
	return t.CPL0 > 50*time.Nanosecond && t.CPL0 > 20*cpl3
}

// KernelModeEmulated reports whether the host emulates guest kernel mode:
// from the verdict recorded earlier in this boot, else by running the
// mode probe (and recording its verdict).
func KernelModeEmulated(sys *kvm.System) (bool, error) {
	if emulated, ok := cachedProfile(); ok {
		return emulated, nil
	}
	t, err := MeasureModes(sys, quickProbeLoops)
	if err != nil {
		return false, err
	}
	recordProfile(t.Emulated())
	return t.Emulated(), nil
}

// Iteration counts of the timed loops. `vmm check` measures long enough for
// stable figures (~5 ms when emulated); `vmm run` only needs the verdict,
// whose margin (about 300x here, 50 ns threshold) survives a short loop
// (~0.5 ms when emulated).
const (
	CheckProbeLoops = 2000
	quickProbeLoops = 200
	probeTries      = 3
)

// probeCode is `1: dec ecx; jnz 1b; mov [0xd0000000], eax; jmp .`: a loop
// whose count is in RCX, then an MMIO write that exits to the vmm.
var probeCode = []byte{
	0xff, 0xc9, // dec ecx
	0x75, 0xfc, // jnz -4
	0xa3, 0x00, 0x00, 0x00, 0xd0, 0x00, 0x00, 0x00, 0x00, // mov [moffs64 0xd0000000], eax
	0xeb, 0xfe, // jmp .
}

const probeDoneAddr = 0xd0000000

// MeasureModes times the probe loop at CPL0 and at CPL3 in a throwaway VM
// booted through the normal boot path.
func MeasureModes(sys *kvm.System, loops int) (ModeTiming, error) {
	if loops < 1 {
		return ModeTiming{}, fmt.Errorf("probe loop count %d must be positive", loops)
	}
	vm, err := sys.CreateVM()
	if err != nil {
		return ModeTiming{}, err
	}
	defer vm.Close()
	if err := vm.SetTSSAddr(boot.TSSAddr); err != nil {
		return ModeTiming{}, err
	}
	mem, err := NewMemory(4 << 20)
	if err != nil {
		return ModeTiming{}, err
	}
	defer mem.Close()
	if err := vm.SetUserMemoryRegion(&kvm.UserspaceMemoryRegion{
		MemorySize: mem.Size(), UserspaceAddr: hostAddr(mem.Mapping()),
	}); err != nil {
		return ModeTiming{}, err
	}
	image := probeELF()
	img, err := boot.ParseImage(image)
	if err != nil {
		return ModeTiming{}, fmt.Errorf("probe image: %w", err)
	}
	loaded, err := boot.Load(mem.Low(), image, img, boot.Params{MemSize: mem.Size(), CPUs: 1})
	if err != nil {
		return ModeTiming{}, fmt.Errorf("probe image: %w", err)
	}
	cpu, err := vm.CreateVCPU(0)
	if err != nil {
		return ModeTiming{}, err
	}
	defer cpu.Close()
	base, err := cpu.GetSregs()
	if err != nil {
		return ModeTiming{}, err
	}
	kernel := loaded.Sregs(*base)
	user := kernel
	for _, s := range []*kvm.Segment{&user.CS, &user.SS, &user.DS, &user.ES} {
		s.DPL = 3
		s.Selector |= 3
	}
	timeLoop := func(s *kvm.Sregs, n uint64) (time.Duration, error) {
		if err := cpu.SetSregs(s); err != nil {
			return 0, err
		}
		regs := loaded.Regs()
		regs.RCX = n
		if err := cpu.SetRegs(&regs); err != nil {
			return 0, err
		}
		start := time.Now()
		for i := 0; i < 16; i++ {
			err := cpu.Run()
			if err != nil {
				continue // EINTR: a signal; go back in
			}
			run := cpu.RunData()
			if run.Reason() == kvm.ExitMMIO {
				if addr, _, _ := run.MMIO(); addr == probeDoneAddr {
					return time.Since(start), nil
				}
			}
			if r := run.Reason(); r != kvm.ExitIntr && r != kvm.ExitMMIO {
				return 0, fmt.Errorf("probe guest stopped with exit %v", r)
			}
		}
		return 0, errors.New("probe guest did not finish its loop")
	}
	// The minimum of a few tries: preemption on a busy host only ever
	// makes a run slower, and the verdict must not flip under load.
	fastest := func(s *kvm.Sregs, n uint64) (time.Duration, error) {
		best := time.Duration(1<<63 - 1)
		for i := 0; i < probeTries; i++ {
			d, err := timeLoop(s, n)
			if err != nil {
				return 0, err
			}
			best = min(best, d)
		}
		return best, nil
	}
	perIter := func(s *kvm.Sregs) (time.Duration, error) {
		if _, err := timeLoop(s, 1); err != nil { // warm up: fault in pages
			return 0, err
		}
		short, err := fastest(s, 1)
		if err != nil {
			return 0, err
		}
		long, err := fastest(s, uint64(loops)+1)
		if err != nil {
			return 0, err
		}
		return max(long-short, 0) / time.Duration(loops), nil
	}
	var t ModeTiming
	if t.CPL3, err = perIter(&user); err != nil {
		return t, fmt.Errorf("user-mode loop: %w", err)
	}
	if t.CPL0, err = perIter(&kernel); err != nil {
		return t, fmt.Errorf("kernel-mode loop: %w", err)
	}
	return t, nil
}

// probeELF is a minimal ELF64 executable holding probeCode at 1 MiB.
func probeELF() []byte {
	const ehsize, phsize, load = 64, 56, boot.HighMemStart
	b := make([]byte, ehsize+phsize+len(probeCode))
	le := binary.LittleEndian
	copy(b, "\x7fELF")
	b[4], b[5], b[6] = 2, 1, 1 // ELFCLASS64, little-endian, version 1
	le.PutUint16(b[16:], 2)    // ET_EXEC
	le.PutUint16(b[18:], 62)   // EM_X86_64
	le.PutUint32(b[20:], 1)
	le.PutUint64(b[24:], load+ehsize+phsize) // e_entry
	le.PutUint64(b[32:], ehsize)             // e_phoff
	le.PutUint16(b[52:], ehsize)
	le.PutUint16(b[54:], phsize)
	le.PutUint16(b[56:], 1) // e_phnum
	ph := b[ehsize:]
	le.PutUint32(ph[0:], 1) // PT_LOAD
	le.PutUint32(ph[4:], 5) // R+X
	le.PutUint64(ph[8:], 0) // p_offset
	le.PutUint64(ph[16:], load)
	le.PutUint64(ph[24:], load)
	le.PutUint64(ph[32:], uint64(len(b)))
	le.PutUint64(ph[40:], uint64(len(b)))
	le.PutUint64(ph[48:], 0x1000)
	copy(b[ehsize+phsize:], probeCode)
	return b
}
