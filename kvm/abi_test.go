package kvm

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unsafe"
)

// abiFact is one C expression and the value our Go definitions give it.
// Macro facts are skipped when an older <linux/kvm.h> lacks the macro.
type abiFact struct {
	c     string
	goVal uint64
	macro bool
}

func size[T any]() uint64 { var v T; return uint64(unsafe.Sizeof(v)) }

func sizes() []abiFact {
	return []abiFact{
		{c: "sizeof(struct kvm_regs)", goVal: size[Regs]()},
		{c: "sizeof(struct kvm_sregs)", goVal: size[Sregs]()},
		{c: "sizeof(struct kvm_segment)", goVal: size[Segment]()},
		{c: "sizeof(struct kvm_dtable)", goVal: size[DTable]()},
		{c: "sizeof(struct kvm_cpuid_entry2)", goVal: size[CPUIDEntry2]()},
		{c: "sizeof(struct kvm_cpuid2)", goVal: size[cpuid2]()},
		{c: "sizeof(struct kvm_fpu)", goVal: size[FPU]()},
		{c: "sizeof(struct kvm_xsave)", goVal: size[XSave]()},
		{c: "sizeof(struct kvm_xcr)", goVal: size[XCR]()},
		{c: "sizeof(struct kvm_xcrs)", goVal: size[XCRS]()},
		{c: "sizeof(struct kvm_msr_entry)", goVal: size[MSREntry]()},
		{c: "sizeof(struct kvm_msrs)", goVal: size[msrs]()},
		{c: "sizeof(struct kvm_msr_list)", goVal: size[msrList]()},
		{c: "sizeof(struct kvm_lapic_state)", goVal: size[LAPICState]()},
		{c: "sizeof(struct kvm_vcpu_events)", goVal: size[VCPUEvents]()},
		{c: "sizeof(struct kvm_mp_state)", goVal: size[MPState]()},
		{c: "sizeof(struct kvm_debugregs)", goVal: size[DebugRegs]()},
		{c: "sizeof(struct kvm_pit_channel_state)", goVal: size[PITChannelState]()},
		{c: "sizeof(struct kvm_pit_state2)", goVal: size[PITState2]()},
		{c: "sizeof(struct kvm_pit_config)", goVal: size[pitConfig]()},
		{c: "sizeof(struct kvm_clock_data)", goVal: size[ClockData]()},
		{c: "sizeof(struct kvm_irqchip)", goVal: size[IRQChip]()},
		{c: "sizeof(struct kvm_irq_level)", goVal: size[irqLevel]()},
		{c: "sizeof(struct kvm_ioeventfd)", goVal: size[IOEventFD]()},
		{c: "sizeof(struct kvm_irqfd)", goVal: size[IRQFD]()},
		{c: "sizeof(struct kvm_userspace_memory_region)", goVal: size[UserspaceMemoryRegion]()},
		{c: "sizeof(struct kvm_enable_cap)", goVal: size[EnableCap]()},
		{c: "sizeof(struct kvm_dirty_log)", goVal: size[dirtyLog]()},
		{c: "sizeof(struct kvm_clear_dirty_log)", goVal: size[clearDirty]()},
		{c: "sizeof(struct kvm_run)", goVal: size[Run]()},
	}
}

func offsets() []abiFact {
	var run Run
	u := uint64(unsafe.Offsetof(run.exit))
	off := func(c string, v uintptr) abiFact { return abiFact{c: "offsetof(" + c + ")", goVal: uint64(v)} }
	uoff := func(c string, v uintptr) abiFact { return abiFact{c: "offsetof(" + c + ")", goVal: u + uint64(v)} }
	return []abiFact{
		off("struct kvm_run, immediate_exit", unsafe.Offsetof(run.ImmediateExit)),
		off("struct kvm_run, exit_reason", unsafe.Offsetof(run.ExitReason)),
		off("struct kvm_run, if_flag", unsafe.Offsetof(run.IFFlag)),
		off("struct kvm_run, flags", unsafe.Offsetof(run.Flags)),
		off("struct kvm_run, cr8", unsafe.Offsetof(run.CR8)),
		off("struct kvm_run, apic_base", unsafe.Offsetof(run.APICBase)),
		off("struct kvm_run, io", unsafe.Offsetof(run.exit)),
		off("struct kvm_run, kvm_valid_regs", unsafe.Offsetof(run.ValidRegs)),
		off("struct kvm_run, kvm_dirty_regs", unsafe.Offsetof(run.DirtyRegs)),
		off("struct kvm_run, s", unsafe.Offsetof(run.sync)),
		uoff("struct kvm_run, io.size", unsafe.Offsetof(exitIO{}.Size)),
		uoff("struct kvm_run, io.port", unsafe.Offsetof(exitIO{}.Port)),
		uoff("struct kvm_run, io.count", unsafe.Offsetof(exitIO{}.Count)),
		uoff("struct kvm_run, io.data_offset", unsafe.Offsetof(exitIO{}.DataOffset)),
		uoff("struct kvm_run, mmio.data", unsafe.Offsetof(exitMMIO{}.Data)),
		uoff("struct kvm_run, mmio.len", unsafe.Offsetof(exitMMIO{}.Len)),
		uoff("struct kvm_run, mmio.is_write", unsafe.Offsetof(exitMMIO{}.IsWrite)),
		uoff("struct kvm_run, ex.error_code", unsafe.Offsetof(exitException{}.ErrorCode)),
		uoff("struct kvm_run, fail_entry.cpu", unsafe.Offsetof(exitFailEntry{}.CPU)),
		uoff("struct kvm_run, internal.ndata", unsafe.Offsetof(exitInternal{}.NData)),
		uoff("struct kvm_run, internal.data", unsafe.Offsetof(exitInternal{}.Data)),
		uoff("struct kvm_run, system_event.flags", unsafe.Offsetof(exitSystemEvent{}.Data)),
		off("struct kvm_sregs, gdt", unsafe.Offsetof(Sregs{}.GDT)),
		off("struct kvm_sregs, cr0", unsafe.Offsetof(Sregs{}.CR0)),
		off("struct kvm_sregs, efer", unsafe.Offsetof(Sregs{}.EFER)),
		off("struct kvm_sregs, interrupt_bitmap", unsafe.Offsetof(Sregs{}.InterruptBitmap)),
		off("struct kvm_segment, unusable", unsafe.Offsetof(Segment{}.Unusable)),
		off("struct kvm_cpuid_entry2, edx", unsafe.Offsetof(CPUIDEntry2{}.EDX)),
		off("struct kvm_fpu, last_ip", unsafe.Offsetof(FPU{}.LastIP)),
		off("struct kvm_fpu, xmm", unsafe.Offsetof(FPU{}.XMM)),
		off("struct kvm_fpu, mxcsr", unsafe.Offsetof(FPU{}.MXCSR)),
		off("struct kvm_xcrs, xcrs", unsafe.Offsetof(XCRS{}.XCRs)),
		off("struct kvm_xcr, value", unsafe.Offsetof(XCR{}.Value)),
		off("struct kvm_msr_entry, data", unsafe.Offsetof(MSREntry{}.Data)),
		off("struct kvm_vcpu_events, interrupt", unsafe.Offsetof(VCPUEvents{}.Interrupt)),
		off("struct kvm_vcpu_events, nmi", unsafe.Offsetof(VCPUEvents{}.NMI)),
		off("struct kvm_vcpu_events, sipi_vector", unsafe.Offsetof(VCPUEvents{}.SIPIVector)),
		off("struct kvm_vcpu_events, flags", unsafe.Offsetof(VCPUEvents{}.Flags)),
		off("struct kvm_vcpu_events, smi", unsafe.Offsetof(VCPUEvents{}.SMI)),
		off("struct kvm_vcpu_events, triple_fault", unsafe.Offsetof(VCPUEvents{}.TripleFaultPending)),
		off("struct kvm_vcpu_events, exception_has_payload", unsafe.Offsetof(VCPUEvents{}.ExceptionHasPayload)),
		off("struct kvm_vcpu_events, exception_payload", unsafe.Offsetof(VCPUEvents{}.ExceptionPayload)),
		off("struct kvm_vcpu_events, exception.error_code", unsafe.Offsetof(VCPUEventException{}.ErrorCode)),
		off("struct kvm_debugregs, dr7", unsafe.Offsetof(DebugRegs{}.DR7)),
		off("struct kvm_debugregs, flags", unsafe.Offsetof(DebugRegs{}.Flags)),
		off("struct kvm_pit_channel_state, gate", unsafe.Offsetof(PITChannelState{}.Gate)),
		off("struct kvm_pit_channel_state, count_load_time", unsafe.Offsetof(PITChannelState{}.CountLoadTime)),
		off("struct kvm_pit_state2, flags", unsafe.Offsetof(PITState2{}.Flags)),
		off("struct kvm_clock_data, flags", unsafe.Offsetof(ClockData{}.Flags)),
		off("struct kvm_clock_data, realtime", unsafe.Offsetof(ClockData{}.Realtime)),
		off("struct kvm_clock_data, host_tsc", unsafe.Offsetof(ClockData{}.HostTSC)),
		off("struct kvm_irqchip, chip", unsafe.Offsetof(IRQChip{}.Chip)),
		off("struct kvm_ioeventfd, fd", unsafe.Offsetof(IOEventFD{}.FD)),
		off("struct kvm_ioeventfd, flags", unsafe.Offsetof(IOEventFD{}.Flags)),
		off("struct kvm_irqfd, resamplefd", unsafe.Offsetof(IRQFD{}.ResampleFD)),
		off("struct kvm_userspace_memory_region, userspace_addr", unsafe.Offsetof(UserspaceMemoryRegion{}.UserspaceAddr)),
		off("struct kvm_enable_cap, args", unsafe.Offsetof(EnableCap{}.Args)),
		off("struct kvm_clear_dirty_log, first_page", unsafe.Offsetof(clearDirty{}.FirstPage)),
		off("struct kvm_clear_dirty_log, dirty_bitmap", unsafe.Offsetof(clearDirty{}.Bitmap)),
		off("struct kvm_dirty_log, dirty_bitmap", unsafe.Offsetof(dirtyLog{}.Bitmap)),
	}
}

func macros() []abiFact {
	m := func(name string, v uint64) abiFact { return abiFact{c: name, goVal: v, macro: true} }
	return []abiFact{
		m("KVM_GET_API_VERSION", uint64(reqGetAPIVersion)),
		m("KVM_CREATE_VM", uint64(reqCreateVM)),
		m("KVM_GET_MSR_INDEX_LIST", uint64(reqGetMSRIndexList)),
		m("KVM_CHECK_EXTENSION", uint64(reqCheckExtension)),
		m("KVM_GET_VCPU_MMAP_SIZE", uint64(reqGetVCPUMmapSize)),
		m("KVM_GET_SUPPORTED_CPUID", uint64(reqGetSupportedCPUID)),
		m("KVM_CREATE_VCPU", uint64(reqCreateVCPU)),
		m("KVM_GET_DIRTY_LOG", uint64(reqGetDirtyLog)),
		m("KVM_SET_USER_MEMORY_REGION", uint64(reqSetUserMemoryRegion)),
		m("KVM_SET_TSS_ADDR", uint64(reqSetTSSAddr)),
		m("KVM_SET_IDENTITY_MAP_ADDR", uint64(reqSetIdentityMapAddr)),
		m("KVM_CREATE_IRQCHIP", uint64(reqCreateIRQChip)),
		m("KVM_IRQ_LINE", uint64(reqIRQLine)),
		m("KVM_GET_IRQCHIP", uint64(reqGetIRQChip)),
		m("KVM_SET_IRQCHIP", uint64(reqSetIRQChip)),
		m("KVM_IRQFD", uint64(reqIRQFD)),
		m("KVM_CREATE_PIT2", uint64(reqCreatePIT2)),
		m("KVM_IOEVENTFD", uint64(reqIOEventFD)),
		m("KVM_SET_CLOCK", uint64(reqSetClock)),
		m("KVM_GET_CLOCK", uint64(reqGetClock)),
		m("KVM_GET_PIT2", uint64(reqGetPIT2)),
		m("KVM_SET_PIT2", uint64(reqSetPIT2)),
		m("KVM_ENABLE_CAP", uint64(reqEnableCap)),
		m("KVM_CLEAR_DIRTY_LOG", uint64(reqClearDirtyLog)),
		m("KVM_RUN", uint64(reqRun)),
		m("KVM_GET_REGS", uint64(reqGetRegs)),
		m("KVM_SET_REGS", uint64(reqSetRegs)),
		m("KVM_GET_SREGS", uint64(reqGetSregs)),
		m("KVM_SET_SREGS", uint64(reqSetSregs)),
		m("KVM_INTERRUPT", uint64(reqInterrupt)),
		m("KVM_GET_MSRS", uint64(reqGetMSRs)),
		m("KVM_SET_MSRS", uint64(reqSetMSRs)),
		m("KVM_GET_FPU", uint64(reqGetFPU)),
		m("KVM_SET_FPU", uint64(reqSetFPU)),
		m("KVM_GET_LAPIC", uint64(reqGetLAPIC)),
		m("KVM_SET_LAPIC", uint64(reqSetLAPIC)),
		m("KVM_SET_CPUID2", uint64(reqSetCPUID2)),
		m("KVM_GET_CPUID2", uint64(reqGetCPUID2)),
		m("KVM_GET_MP_STATE", uint64(reqGetMPState)),
		m("KVM_SET_MP_STATE", uint64(reqSetMPState)),
		m("KVM_GET_VCPU_EVENTS", uint64(reqGetVCPUEvents)),
		m("KVM_SET_VCPU_EVENTS", uint64(reqSetVCPUEvents)),
		m("KVM_GET_DEBUGREGS", uint64(reqGetDebugRegs)),
		m("KVM_SET_DEBUGREGS", uint64(reqSetDebugRegs)),
		m("KVM_SET_TSC_KHZ", uint64(reqSetTSCKHz)),
		m("KVM_GET_TSC_KHZ", uint64(reqGetTSCKHz)),
		m("KVM_GET_XSAVE", uint64(reqGetXSave)),
		m("KVM_SET_XSAVE", uint64(reqSetXSave)),
		m("KVM_GET_XCRS", uint64(reqGetXCRS)),
		m("KVM_SET_XCRS", uint64(reqSetXCRS)),
		m("KVM_KVMCLOCK_CTRL", uint64(reqKVMClockCtrl)),

		m("KVM_EXIT_UNKNOWN", uint64(ExitUnknown)),
		m("KVM_EXIT_EXCEPTION", uint64(ExitException)),
		m("KVM_EXIT_IO", uint64(ExitIO)),
		m("KVM_EXIT_HYPERCALL", uint64(ExitHypercall)),
		m("KVM_EXIT_DEBUG", uint64(ExitDebug)),
		m("KVM_EXIT_HLT", uint64(ExitHLT)),
		m("KVM_EXIT_MMIO", uint64(ExitMMIO)),
		m("KVM_EXIT_IRQ_WINDOW_OPEN", uint64(ExitIRQWindowOpen)),
		m("KVM_EXIT_SHUTDOWN", uint64(ExitShutdown)),
		m("KVM_EXIT_FAIL_ENTRY", uint64(ExitFailEntry)),
		m("KVM_EXIT_INTR", uint64(ExitIntr)),
		m("KVM_EXIT_SET_TPR", uint64(ExitSetTPR)),
		m("KVM_EXIT_TPR_ACCESS", uint64(ExitTPRAccess)),
		m("KVM_EXIT_NMI", uint64(ExitNMI)),
		m("KVM_EXIT_INTERNAL_ERROR", uint64(ExitInternalError)),
		m("KVM_EXIT_WATCHDOG", uint64(ExitWatchdog)),
		m("KVM_EXIT_EPR", uint64(ExitEPR)),
		m("KVM_EXIT_SYSTEM_EVENT", uint64(ExitSystemEvent)),
		m("KVM_EXIT_IOAPIC_EOI", uint64(ExitIOAPICEOI)),
		m("KVM_EXIT_HYPERV", uint64(ExitHyperV)),
		m("KVM_EXIT_X86_RDMSR", uint64(ExitX86RDMSR)),
		m("KVM_EXIT_X86_WRMSR", uint64(ExitX86WRMSR)),
		m("KVM_EXIT_DIRTY_RING_FULL", uint64(ExitDirtyRingFull)),
		m("KVM_EXIT_AP_RESET_HOLD", uint64(ExitAPResetHold)),
		m("KVM_EXIT_X86_BUS_LOCK", uint64(ExitX86BusLock)),
		m("KVM_EXIT_XEN", uint64(ExitXen)),
		m("KVM_EXIT_NOTIFY", uint64(ExitNotify)),
		m("KVM_EXIT_MEMORY_FAULT", uint64(ExitMemoryFault)),
		m("KVM_EXIT_IO_IN", IODirIn),
		m("KVM_EXIT_IO_OUT", IODirOut),
		m("KVM_SYSTEM_EVENT_SHUTDOWN", SystemEventShutdown),
		m("KVM_SYSTEM_EVENT_RESET", SystemEventReset),
		m("KVM_SYSTEM_EVENT_CRASH", SystemEventCrash),
		m("KVM_INTERNAL_ERROR_EMULATION", InternalErrorEmulation),
		m("KVM_INTERNAL_ERROR_SIMUL_EX", InternalErrorSimulEx),
		m("KVM_INTERNAL_ERROR_DELIVERY_EV", InternalErrorDeliveryEv),
		m("KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON", InternalErrorUnexpectedExitReason),

		m("KVM_CAP_IRQCHIP", uint64(CapIRQChip)),
		m("KVM_CAP_HLT", uint64(CapHLT)),
		m("KVM_CAP_USER_MEMORY", uint64(CapUserMemory)),
		m("KVM_CAP_SET_TSS_ADDR", uint64(CapSetTSSAddr)),
		m("KVM_CAP_EXT_CPUID", uint64(CapExtCPUID)),
		m("KVM_CAP_NR_VCPUS", uint64(CapNrVCPUs)),
		m("KVM_CAP_NR_MEMSLOTS", uint64(CapNrMemslots)),
		m("KVM_CAP_MP_STATE", uint64(CapMPState)),
		m("KVM_CAP_SYNC_MMU", uint64(CapSyncMMU)),
		m("KVM_CAP_IRQ_ROUTING", uint64(CapIRQRouting)),
		m("KVM_CAP_IRQFD", uint64(CapIRQFD)),
		m("KVM_CAP_PIT2", uint64(CapPIT2)),
		m("KVM_CAP_PIT_STATE2", uint64(CapPITState2)),
		m("KVM_CAP_IOEVENTFD", uint64(CapIOEventFD)),
		m("KVM_CAP_SET_IDENTITY_MAP_ADDR", uint64(CapSetIdentityMapAddr)),
		m("KVM_CAP_ADJUST_CLOCK", uint64(CapAdjustClock)),
		m("KVM_CAP_VCPU_EVENTS", uint64(CapVCPUEvents)),
		m("KVM_CAP_DEBUGREGS", uint64(CapDebugRegs)),
		m("KVM_CAP_XSAVE", uint64(CapXSave)),
		m("KVM_CAP_XCRS", uint64(CapXCRS)),
		m("KVM_CAP_TSC_CONTROL", uint64(CapTSCControl)),
		m("KVM_CAP_GET_TSC_KHZ", uint64(CapGetTSCKHz)),
		m("KVM_CAP_MAX_VCPUS", uint64(CapMaxVCPUs)),
		m("KVM_CAP_KVMCLOCK_CTRL", uint64(CapKVMClockCtrl)),
		m("KVM_CAP_READONLY_MEM", uint64(CapReadonlyMem)),
		m("KVM_CAP_IRQFD_RESAMPLE", uint64(CapIRQFDResample)),
		m("KVM_CAP_MAX_VCPU_ID", uint64(CapMaxVCPUID)),
		m("KVM_CAP_IMMEDIATE_EXIT", uint64(CapImmediateExit)),
		m("KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2", uint64(CapManualDirtyLogProtect2)),
		m("KVM_CAP_XSAVE2", uint64(CapXSave2)),
		m("KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE", DirtyLogManualProtectEnable),
		m("KVM_DIRTY_LOG_INITIALLY_SET", DirtyLogInitiallySet),

		m("KVM_MEM_LOG_DIRTY_PAGES", MemLogDirtyPages),
		m("KVM_MEM_READONLY", MemReadonly),
		m("KVM_IRQCHIP_PIC_MASTER", IRQChipPICMaster),
		m("KVM_IRQCHIP_PIC_SLAVE", IRQChipPICSlave),
		m("KVM_IRQCHIP_IOAPIC", IRQChipIOAPIC),
		m("KVM_PIT_SPEAKER_DUMMY", pitSpeakerDummy),
		m("KVM_PIT_FLAGS_HPET_LEGACY", PITFlagsHPETLegacy),
		m("KVM_IOEVENTFD_FLAG_DATAMATCH", IOEventFDFlagDatamatch),
		m("KVM_IOEVENTFD_FLAG_PIO", IOEventFDFlagPIO),
		m("KVM_IOEVENTFD_FLAG_DEASSIGN", IOEventFDFlagDeassign),
		m("KVM_IRQFD_FLAG_DEASSIGN", IRQFDFlagDeassign),
		m("KVM_IRQFD_FLAG_RESAMPLE", IRQFDFlagResample),
		m("KVM_MP_STATE_RUNNABLE", MPStateRunnable),
		m("KVM_MP_STATE_UNINITIALIZED", MPStateUninitialized),
		m("KVM_MP_STATE_INIT_RECEIVED", MPStateInitReceived),
		m("KVM_MP_STATE_HALTED", MPStateHalted),
		m("KVM_MP_STATE_SIPI_RECEIVED", MPStateSIPIReceived),
		m("KVM_VCPUEVENT_VALID_NMI_PENDING", VCPUEventValidNMIPending),
		m("KVM_VCPUEVENT_VALID_SIPI_VECTOR", VCPUEventValidSIPIVector),
		m("KVM_VCPUEVENT_VALID_SHADOW", VCPUEventValidShadow),
		m("KVM_VCPUEVENT_VALID_SMM", VCPUEventValidSMM),
		m("KVM_VCPUEVENT_VALID_PAYLOAD", VCPUEventValidPayload),
		m("KVM_VCPUEVENT_VALID_TRIPLE_FAULT", VCPUEventValidTripleFault),
		m("KVM_CLOCK_TSC_STABLE", ClockTSCStable),
		m("KVM_CLOCK_REALTIME", ClockRealtime),
		m("KVM_CLOCK_HOST_TSC", ClockHostTSC),
		m("KVM_CPUID_FLAG_SIGNIFCANT_INDEX", CPUIDFlagSignificantIndex),
		m("KVM_APIC_REG_SIZE", size[LAPICState]()),
		m("KVM_MAX_XCRS", uint64(len(XCRS{}.XCRs))),
	}
}

// TestABI compiles a C program against <linux/kvm.h> and checks every
// struct size, field offset and constant this package hard-codes.
func TestABI(t *testing.T) {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc not installed; install gcc and linux-libc-dev to check the KVM ABI")
	}
	if _, err := os.Stat("/usr/include/linux/kvm.h"); err != nil {
		t.Skip("/usr/include/linux/kvm.h missing; install linux-libc-dev to check the KVM ABI")
	}
	facts := append(append(sizes(), offsets()...), macros()...)

	var src bytes.Buffer
	src.WriteString("#include <stdio.h>\n#include <stddef.h>\n#include <linux/kvm.h>\nint main(void) {\n")
	for i, f := range facts {
		line := fmt.Sprintf("\tprintf(\"%d %%llu\\n\", (unsigned long long)(%s));\n", i, f.c)
		if f.macro {
			line = fmt.Sprintf("#ifdef %s\n%s#else\n\tprintf(\"%d missing\\n\");\n#endif\n", f.c, line, i)
		}
		src.WriteString(line)
	}
	src.WriteString("\treturn 0;\n}\n")

	dir := t.TempDir()
	cfile, bin := filepath.Join(dir, "abi.c"), filepath.Join(dir, "abi")
	if err := os.WriteFile(cfile, src.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(gcc, "-o", bin, cfile).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	out, err := exec.Command(bin).Output()
	if err != nil {
		t.Fatalf("run ABI probe: %v", err)
	}

	seen := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		idx, val, ok := strings.Cut(line, " ")
		i, err := strconv.Atoi(idx)
		if !ok || err != nil || i < 0 || i >= len(facts) {
			t.Fatalf("bad probe line %q", line)
		}
		seen++
		f := facts[i]
		if val == "missing" {
			t.Logf("%s: not in this <linux/kvm.h>, not checked", f.c)
			continue
		}
		c, err := strconv.ParseUint(val, 10, 64)
		if err != nil {
			t.Fatalf("bad probe line %q", line)
		}
		if c != f.goVal {
			t.Errorf("%s: C says %#x, Go says %#x", f.c, c, f.goVal)
		}
	}
	if seen != len(facts) {
		t.Errorf("probe printed %d facts, want %d", seen, len(facts))
	}
}
