package vmm

import (
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/sietch-vm/sietch/boot"
	"github.com/sietch-vm/sietch/jail"
	"github.com/sietch-vm/sietch/kvm"
)

// vcpu is one virtual CPU and the locked OS thread that runs it.
type vcpu struct {
	m   *Machine
	id  int
	kvm *kvm.VCPU
	tid atomic.Int32 // OS thread running KVM_RUN, 0 when none
}

// LAPIC register offsets and LVT delivery modes (Intel SDM vol. 3, 11.5.1).
const (
	apicLVT0        = 0x350
	apicLVT1        = 0x360
	apicModeNMI     = 0x4 << 8
	apicModeExtINT  = 0x7 << 8
	apicModeMask    = 0x7 << 8
	fpuControlWord  = 0x37f  // FNINIT default
	sseControlState = 0x1f80 // MXCSR reset value
)

// configure sets CPUID and the local APIC's LINT pins (LINT0 ExtINT for the
// PIC, LINT1 NMI, as a PC BIOS leaves them). Application processors stay in
// wait-for-SIPI, as on a PC; the bootstrap processor gets its entry
// registers from setBootRegisters once the kernel is loaded.
func (v *vcpu) configure(supported []kvm.CPUIDEntry2) error {
	opts := boot.CPUIDOptions{CPUs: v.m.cfg.CPUs, Compat: v.m.compat}
	if err := v.kvm.SetCPUID2(boot.CPUID(supported, v.id, opts)); err != nil {
		return err
	}
	lapic, err := v.kvm.GetLAPIC()
	if err != nil {
		return err
	}
	setLVT(lapic, apicLVT0, apicModeExtINT)
	setLVT(lapic, apicLVT1, apicModeNMI)
	return v.kvm.SetLAPIC(lapic)
}

// setBootRegisters puts the bootstrap processor at the kernel's entry.
func (v *vcpu) setBootRegisters() error {
	fpu := &kvm.FPU{FCW: fpuControlWord, MXCSR: sseControlState}
	if err := v.kvm.SetFPU(fpu); err != nil {
		return err
	}
	sregs, err := v.kvm.GetSregs()
	if err != nil {
		return err
	}
	s := v.m.loaded.Sregs(*sregs)
	if err := v.kvm.SetSregs(&s); err != nil {
		return err
	}
	r := v.m.loaded.Regs()
	return v.kvm.SetRegs(&r)
}

func setLVT(l *kvm.LAPICState, off int, mode uint32) {
	b := l.Regs[off : off+4]
	x := uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
	x = x&^apicModeMask | mode
	b[0], b[1], b[2], b[3] = byte(x), byte(x>>8), byte(x>>16), byte(x>>24)
}

// kick makes the vCPU leave KVM_RUN soon: immediate_exit covers the window
// before it enters, the signal interrupts it while inside. The caller sets
// the flag the vCPU should act on before kicking.
func (v *vcpu) kick() {
	v.kvm.SetImmediateExit(true)
	if tid := v.tid.Load(); tid != 0 {
		// SIGURG is the Go runtime's own preemption signal: it has a handler
		// in every thread and the runtime tolerates spurious ones.
		_ = unix.Tgkill(unix.Getpid(), int(tid), unix.SIGURG)
	}
}

// crashPoint, replaced only in test builds (drill.go, tag sietchdrill),
// ends the vmm abruptly at the named point of an operation, so that tests
// can check what a crash there leaves behind.
var crashPoint = func(point string) {}

// vcpuDrill, set only in test builds (drill.go, tag sietchdrill), makes a
// system call on a confined vCPU thread before its first KVM_RUN.
var vcpuDrill func(vcpu int)

// loop runs the vCPU on a locked OS thread until the machine stops.
func (v *vcpu) loop() {
	m := v.m
	defer m.wg.Done()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	v.tid.Store(int32(unix.Gettid()))
	defer func() {
		v.tid.Store(0)
		m.mu.Lock()
		m.parked++ // a finished vCPU counts as parked for Pause
		m.cond.Broadcast()
		m.mu.Unlock()
	}()
	if m.cfg.SeccompVCPU {
		// LoadThread keeps this goroutine on its thread for good: the
		// filtered thread exits with it instead of returning to the pool.
		if err := jail.VCPUThreadPolicy.LoadThread(); err != nil {
			m.finish(Exit{Kind: ExitCrash, VCPU: v.id, Reason: fmt.Sprintf("vmm: confine vCPU thread: %v", err)})
			return
		}
	}
	if vcpuDrill != nil {
		vcpuDrill(v.id)
	}
	run := v.kvm.RunData()
	// pending: the last exit's instruction (port I/O, MMIO) completes only
	// on the next KVM_RUN (Linux Documentation/virt/kvm/api.rst, "kvm_run":
	// complete before migrating). So the vCPU never parks with one pending:
	// a snapshot taken then would lose or repeat that access.
	pending := false
	for {
		if !pending {
			if !v.waitRunnable() {
				return
			}
		} else if m.haltRequested() {
			v.kvm.SetImmediateExit(true) // complete it, run nothing more
		}
		err := v.kvm.Run()
		if err != nil {
			if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
				// Clear first, then re-check the flags (see kick).
				v.kvm.SetImmediateExit(false)
				pending = false
				continue
			}
			m.finish(Exit{Kind: ExitCrash, VCPU: v.id, Reason: fmt.Sprintf("KVM_RUN failed: %v", err)})
			return
		}
		e, ok := v.handleExit(run)
		if !ok {
			m.finish(e)
			return
		}
		pending = true
	}
}

// haltRequested reports whether vCPUs are asked to pause or stop: a
// lock-free read, as it runs after every exit.
func (m *Machine) haltRequested() bool { return m.halt.Load() }

// waitRunnable parks while the machine is paused; false means return.
func (v *vcpu) waitRunnable() bool {
	m := v.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.state.parks() {
		m.parked++
		m.cond.Broadcast()
		for m.state.parks() {
			m.cond.Wait()
		}
		m.parked--
	}
	return !m.state.ended()
}

// handleExit dispatches one VM exit; ok=false ends the VM with e.
func (v *vcpu) handleExit(run *kvm.Run) (e Exit, ok bool) {
	switch r := run.Reason(); r {
	case kvm.ExitIO:
		dir, size, port, count, _ := run.IO()
		data, err := v.kvm.IOData()
		if err != nil || len(data) != int(size)*int(count) || size == 0 {
			return v.crash("malformed port I/O exit (port %#x size %d count %d): %v", port, size, count, err), false
		}
		for i := 0; i < int(count); i++ {
			chunk := data[i*int(size) : (i+1)*int(size)]
			if dir == kvm.IODirOut {
				v.m.pio.Write(uint64(port), chunk)
			} else if !v.m.pio.Read(uint64(port), chunk) {
				fill(chunk, 0xff)
			}
		}
	case kvm.ExitMMIO:
		addr, data, isWrite := run.MMIO()
		if isWrite {
			v.m.mmio.Write(addr, data)
		} else if !v.m.mmio.Read(addr, data) {
			fill(data, 0xff)
		}
	case kvm.ExitIntr, kvm.ExitHLT, kvm.ExitIRQWindowOpen:
		// Nothing to do: with the in-kernel irqchip HLT is handled by KVM.
	case kvm.ExitShutdown:
		return v.crash("triple fault (KVM_EXIT_SHUTDOWN): the guest hit an exception it could not handle"), false
	case kvm.ExitSystemEvent:
		typ, _ := run.SystemEvent()
		switch typ {
		case kvm.SystemEventShutdown:
			return Exit{Kind: ExitPowerOff, VCPU: v.id, Reason: "KVM system event: shutdown"}, false
		case kvm.SystemEventReset:
			return Exit{Kind: ExitReset, VCPU: v.id, Reason: "KVM system event: reset"}, false
		default:
			return v.crash("KVM system event %d (crash)", typ), false
		}
	case kvm.ExitInternalError:
		sub, data := run.InternalError()
		return v.crash("KVM internal error %d (%s) data %#x: an instruction this host's KVM cannot emulate? (host dmesg may say more)", sub, internalErrorName(sub), data), false
	case kvm.ExitFailEntry:
		reason, cpu := run.FailEntry()
		return v.crash("VM entry failed: hardware reason %#x on host CPU %d", reason, cpu), false
	default:
		return v.crash("unexpected KVM exit %v", r), false
	}
	return Exit{}, true
}

// crash builds a crash Exit that says where the vCPU was.
func (v *vcpu) crash(format string, args ...any) Exit {
	msg := fmt.Sprintf(format, args...)
	if regs, err := v.kvm.GetRegs(); err == nil {
		msg += fmt.Sprintf(" (RIP %#x RSP %#x RFLAGS %#x)", regs.RIP, regs.RSP, regs.RFLAGS)
	}
	return Exit{Kind: ExitCrash, VCPU: v.id, Reason: msg}
}

func internalErrorName(sub uint32) string {
	switch sub {
	case 1:
		return "emulation failure"
	case 2:
		return "simultaneous exception"
	case 3:
		return "delivery event"
	case 4:
		return "unexpected exit reason"
	}
	return "unknown"
}

func fill(b []byte, v byte) {
	for i := range b {
		b[i] = v
	}
}
