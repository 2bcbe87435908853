package kvm

import (
	"errors"
	"os"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// openKVM opens /dev/kvm or skips the test when the host has none.
func openKVM(t *testing.T) *System {
	t.Helper()
	if _, err := os.Stat(DefaultPath); err != nil {
		t.Skipf("%s not present (%v): these tests need a host with KVM", DefaultPath, err)
	}
	s, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Guest memory layout of the test guests: 16 KiB at GPA 0, code at 0x1000;
// 0x2000 is a data page; 0x8000 is unbacked and therefore MMIO.
const (
	guestMemSize = 0x4000
	guestCode    = 0x1000
	guestMMIO    = 0x8000
	tssAddr      = 0xfffbd000

	msrLSTAR = 0xc0000082
)

type guestOpts struct {
	irqchip  bool
	memFlags uint32
	before   func(vm *VM) // runs before the memory slot is registered
}

type guest struct {
	vm   *VM
	cpu  *VCPU
	mem  []byte
	kvm  *System
	opts guestOpts
}

// newGuest builds a one-vCPU VM that runs code in real mode from 0x1000.
func newGuest(t *testing.T, code []byte, o guestOpts) *guest {
	t.Helper()
	s := openKVM(t)
	vm, err := s.CreateVM()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Close() })
	if err := vm.SetTSSAddr(tssAddr); err != nil {
		t.Fatal(err)
	}
	if o.irqchip {
		if err := vm.CreateIRQChip(); err != nil {
			t.Fatal(err)
		}
		if err := vm.CreatePIT2(); err != nil {
			t.Fatal(err)
		}
	}
	if o.before != nil {
		o.before(vm)
	}
	mem, err := unix.Mmap(-1, 0, guestMemSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(mem) })
	copy(mem[guestCode:], code)
	err = vm.SetUserMemoryRegion(&UserspaceMemoryRegion{
		Slot: 0, Flags: o.memFlags, GuestPhysAddr: 0, MemorySize: guestMemSize,
		UserspaceAddr: uint64(uintptr(unsafe.Pointer(&mem[0]))),
	})
	if err != nil {
		t.Fatal(err)
	}
	cpu, err := vm.CreateVCPU(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cpu.Close() })

	sregs, err := cpu.GetSregs()
	if err != nil {
		t.Fatal(err)
	}
	sregs.CS.Base, sregs.CS.Selector = 0, 0
	if err := cpu.SetSregs(sregs); err != nil {
		t.Fatal(err)
	}
	if err := cpu.SetRegs(&Regs{RIP: guestCode, RFLAGS: 2}); err != nil {
		t.Fatal(err)
	}
	return &guest{vm: vm, cpu: cpu, mem: mem, kvm: s, opts: o}
}

// run runs the vCPU once and returns the exit reason, failing the test on
// errors and on exits that say the guest went wrong.
func (g *guest) run(t *testing.T) ExitReason {
	t.Helper()
	if err := g.cpu.Run(); err != nil {
		t.Fatal(err)
	}
	r := g.cpu.RunData()
	switch r.Reason() {
	case ExitInternalError:
		sub, data := r.InternalError()
		t.Fatalf("internal error, suberror %d, data %#x", sub, data)
	case ExitFailEntry:
		hw, cpu := r.FailEntry()
		t.Fatalf("entry failed: hardware reason %#x on cpu %d", hw, cpu)
	case ExitShutdown:
		t.Fatal("guest shut down (triple fault)")
	}
	return r.Reason()
}

func TestOpenMissingDevice(t *testing.T) {
	_, err := OpenPath("/nonexistent/kvm")
	if err == nil || !strings.Contains(err.Error(), "is KVM enabled") || !errors.Is(err, unix.ENOENT) {
		t.Fatalf("OpenPath: got %v, want ENOENT with advice", err)
	}
}

func TestSystem(t *testing.T) {
	s := openKVM(t)
	if v, err := s.APIVersion(); err != nil || v != 12 {
		t.Fatalf("APIVersion = %d, %v; want 12", v, err)
	}
	for _, c := range []Cap{CapUserMemory, CapIRQChip, CapImmediateExit, CapSetTSSAddr} {
		if v, err := s.CheckExtension(c); err != nil || v == 0 {
			t.Errorf("CheckExtension(%d) = %d, %v; want supported", c, v, err)
		}
	}
	if n, err := s.VCPUMmapSize(); err != nil || n < 4096 {
		t.Errorf("VCPUMmapSize = %d, %v", n, err)
	}
	cpuid, err := s.SupportedCPUID()
	if err != nil {
		t.Fatal(err)
	}
	if len(cpuid) < 10 || cpuid[0].Function != 0 {
		t.Errorf("SupportedCPUID: %d entries, first leaf %#x; want leaf 0 first", len(cpuid), cpuid[0].Function)
	}
	msrs, err := s.MSRIndexList()
	if err != nil {
		t.Fatal(err)
	}
	if !containsMSR(msrs, msrLSTAR) {
		t.Errorf("MSRIndexList (%d MSRs) lacks LSTAR", len(msrs))
	}
}

func containsMSR(list []uint32, idx uint32) bool {
	for _, m := range list {
		if m == idx {
			return true
		}
	}
	return false
}

func TestGuestDirtyLog(t *testing.T) {
	code := []byte{
		0xc6, 0x06, 0x00, 0x20, 0x01, // mov byte [0x2000], 1
		0xf4, // hlt
	}
	manual := false
	g := newGuest(t, code, guestOpts{memFlags: MemLogDirtyPages, before: func(vm *VM) {
		if v, _ := vm.CheckExtension(CapManualDirtyLogProtect2); v&DirtyLogManualProtectEnable != 0 {
			err := vm.EnableCap(&EnableCap{Cap: uint32(CapManualDirtyLogProtect2), Args: [4]uint64{DirtyLogManualProtectEnable}})
			if err != nil {
				t.Fatal(err)
			}
			manual = true
		}
	}})
	if r := g.run(t); r != ExitHLT {
		t.Fatalf("exit %v, want HLT", r)
	}
	if g.mem[0x2000] != 1 {
		t.Fatalf("guest write not visible: mem[0x2000] = %d", g.mem[0x2000])
	}
	bitmap := make([]uint64, 1)
	if err := g.vm.GetDirtyLog(0, bitmap); err != nil {
		t.Fatal(err)
	}
	if bitmap[0]&(1<<2) == 0 {
		t.Fatalf("dirty bitmap %#b: page 2 not marked dirty", bitmap[0])
	}
	if err := g.vm.GetDirtyLog(0, nil); err == nil {
		t.Error("GetDirtyLog with an empty bitmap succeeded; want a size error")
	}
	if !manual {
		t.Log("CapManualDirtyLogProtect2 unsupported; ClearDirtyLog not exercised")
		return
	}
	if err := g.vm.ClearDirtyLog(0, 0, guestMemSize/4096, []uint64{1 << 2}); err != nil {
		t.Fatal(err)
	}
	bitmap[0] = 0
	if err := g.vm.GetDirtyLog(0, bitmap); err != nil {
		t.Fatal(err)
	}
	if bitmap[0]&(1<<2) != 0 {
		t.Fatalf("dirty bitmap %#b after ClearDirtyLog: page 2 still dirty", bitmap[0])
	}
}

func TestGuestIO(t *testing.T) {
	code := []byte{
		0xb0, 0x42, // mov al, 0x42
		0xe6, 0x10, // out 0x10, al
		0xf4, // hlt
	}
	g := newGuest(t, code, guestOpts{})
	if r := g.run(t); r != ExitIO {
		t.Fatalf("exit %v, want IO", r)
	}
	dir, size, port, count, _ := g.cpu.RunData().IO()
	if dir != IODirOut || size != 1 || port != 0x10 || count != 1 {
		t.Fatalf("IO exit dir %d size %d port %#x count %d; want out 1 0x10 1", dir, size, port, count)
	}
	data, err := g.cpu.IOData()
	if err != nil {
		t.Fatal(err)
	}
	if len(data) != 1 || data[0] != 0x42 {
		t.Fatalf("IO data %#x, want [0x42]", data)
	}
	if r := g.run(t); r != ExitHLT {
		t.Fatalf("exit %v after IO, want HLT", r)
	}
}

func TestGuestMMIO(t *testing.T) {
	code := []byte{
		0xc6, 0x06, 0x00, 0x80, 0xab, // mov byte [0x8000], 0xab
		0xa0, 0x00, 0x80, // mov al, [0x8000]
		0xe6, 0x10, // out 0x10, al
		0xf4, // hlt
	}
	g := newGuest(t, code, guestOpts{})
	if r := g.run(t); r != ExitMMIO {
		t.Fatalf("exit %v, want MMIO", r)
	}
	addr, data, write := g.cpu.RunData().MMIO()
	if addr != guestMMIO || !write || len(data) != 1 || data[0] != 0xab {
		t.Fatalf("MMIO exit addr %#x write %v data %#x; want 0x8000 true [0xab]", addr, write, data)
	}
	if r := g.run(t); r != ExitMMIO {
		t.Fatalf("exit %v, want MMIO read", r)
	}
	addr, data, write = g.cpu.RunData().MMIO()
	if addr != guestMMIO || write || len(data) != 1 {
		t.Fatalf("MMIO exit addr %#x write %v len %d; want a 1-byte read of 0x8000", addr, write, len(data))
	}
	data[0] = 0x77 // the device's answer, through the aliasing slice
	if r := g.run(t); r != ExitIO {
		t.Fatalf("exit %v, want IO", r)
	}
	if io, err := g.cpu.IOData(); err != nil || len(io) != 1 || io[0] != 0x77 {
		t.Fatalf("guest passed on %#x (%v); want the MMIO read value 0x77", io, err)
	}
}

func TestImmediateExit(t *testing.T) {
	g := newGuest(t, []byte{0xe6, 0x10, 0xf4}, guestOpts{}) // out 0x10, al; hlt
	g.cpu.SetImmediateExit(true)
	err := g.cpu.Run()
	if !errors.Is(err, unix.EINTR) {
		t.Fatalf("Run with immediate_exit: %v, want EINTR", err)
	}
	if regs, err := g.cpu.GetRegs(); err != nil || regs.RIP != guestCode {
		t.Fatalf("RIP after immediate exit = %#x (%v), want %#x: the guest ran", regs.RIP, err, guestCode)
	}
	g.cpu.SetImmediateExit(false)
	if g.cpu.RunData().ImmediateExit != 0 {
		t.Fatal("immediate_exit still set")
	}
	if r := g.run(t); r != ExitIO {
		t.Fatalf("exit %v, want IO", r)
	}
}

func TestIOEventFD(t *testing.T) {
	code := []byte{
		0xe6, 0x10, // out 0x10, al: taken by the ioeventfd, no exit
		0xf4, // hlt
	}
	g := newGuest(t, code, guestOpts{})
	efd := newEventFD(t)
	e := &IOEventFD{Addr: 0x10, Len: 1, FD: int32(efd), Flags: IOEventFDFlagPIO}
	if err := g.vm.IOEventFD(e); err != nil {
		t.Fatal(err)
	}
	if r := g.run(t); r != ExitHLT {
		t.Fatalf("exit %v, want HLT (the OUT should not exit)", r)
	}
	var buf [8]byte
	if n, err := unix.Read(efd, buf[:]); err != nil || n != 8 || buf[0] != 1 {
		t.Fatalf("eventfd read %d bytes %v (%v); want count 1", n, buf, err)
	}
	e.Flags |= IOEventFDFlagDeassign
	if err := g.vm.IOEventFD(e); err != nil {
		t.Fatal(err)
	}
}

func newEventFD(t *testing.T) int {
	t.Helper()
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(efd) })
	return efd
}

func TestGetMSRsNamesUnreadable(t *testing.T) {
	g := newGuest(t, nil, guestOpts{})
	_, err := g.cpu.GetMSRs([]uint32{msrLSTAR, 0xdeadbeef})
	if err == nil || !strings.Contains(err.Error(), "0xdeadbeef") {
		t.Fatalf("GetMSRs with a bogus MSR: %v; want an error naming 0xdeadbeef", err)
	}
}

// An interrupted request is issued again, except KVM_RUN, whose EINTR is
// how a vCPU is stopped, and except forever.
func TestRetryable(t *testing.T) {
	for _, tt := range []struct {
		req   uintptr
		errno unix.Errno
		tries int
		want  bool
	}{
		{uintptr(reqCreateVM), unix.EINTR, 0, true},
		{uintptr(reqSetUserMemoryRegion), unix.EINTR, 5, true},
		{uintptr(reqRun), unix.EINTR, 0, false},
		{uintptr(reqCreateVM), unix.EINTR, 100, false},
		{uintptr(reqCreateVM), unix.EAGAIN, 0, false},
		{uintptr(reqCreateVM), 0, 0, false},
	} {
		if got := retryable(tt.req, tt.errno, tt.tries); got != tt.want {
			t.Errorf("retryable(%#x, %v, %d) = %v, want %v", tt.req, tt.errno, tt.tries, got, tt.want)
		}
	}
}
