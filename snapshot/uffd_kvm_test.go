package snapshot

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/sietch-vm/sietch/kvm"
)

// TestUserfaultKVM restores a tiny real-mode guest lazily: its code and data
// pages exist only in the memory file, and the guest's own accesses (which
// KVM makes from kernel mode) are served by the userfaultfd. This is what
// restore mechanism (a) relies on, checked on this host's KVM.
func TestUserfaultKVM(t *testing.T) {
	if _, err := os.Stat(kvm.DefaultPath); err != nil {
		t.Skipf("%s not present (%v)", kvm.DefaultPath, err)
	}
	const (
		size     = 4 * PageSize
		code     = 0x1000
		data     = 0x2000
		mmioAddr = 0x8000 // unbacked: a write there exits to us
	)
	// The "snapshot": mov al, [0x2000]; mov [0x8000], al; hlt.
	src, sm := newMemfd(t, size)
	copy(sm[code:], []byte{0xa0, 0x00, 0x20, 0xa2, 0x00, 0x80, 0xf4})
	sm[data] = 0x5a
	path := filepath.Join(t.TempDir(), "memory")
	if _, err := WriteFull(path, src, size); err != nil {
		t.Fatal(err)
	}
	r := newLazyRestore(t, path, size)

	sys, err := kvm.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()
	vm, err := sys.CreateVM()
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	if err := vm.SetTSSAddr(0xfffbd000); err != nil {
		t.Fatal(err)
	}
	if err := vm.SetUserMemoryRegion(&kvm.UserspaceMemoryRegion{MemorySize: size, UserspaceAddr: addrOf(r.vmm)}); err != nil {
		t.Fatal(err)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpu, err := vm.CreateVCPU(0)
	if err != nil {
		t.Fatal(err)
	}
	defer cpu.Close()
	sregs, err := cpu.GetSregs()
	if err != nil {
		t.Fatal(err)
	}
	sregs.CS.Base, sregs.CS.Selector = 0, 0
	if err := cpu.SetSregs(sregs); err != nil {
		t.Fatal(err)
	}
	if err := cpu.SetRegs(&kvm.Regs{RIP: code, RFLAGS: 2}); err != nil {
		t.Fatal(err)
	}
	if err := cpu.Run(); err != nil {
		t.Fatal(err)
	}
	run := cpu.RunData()
	if run.Reason() != kvm.ExitMMIO {
		t.Fatalf("first exit %v; want the MMIO write of the byte the guest loaded", run.Reason())
	}
	addr, got, write := run.MMIO()
	if addr != mmioAddr || !write || len(got) != 1 || got[0] != 0x5a {
		t.Fatalf("guest wrote %x to %#x (write=%v); want 5a to %#x: it did not see the snapshot's page", got, addr, write, mmioAddr)
	}
	// UFFDIO_COPY wakes the vCPU before the handler counts the page: give
	// the handler a moment to finish its bookkeeping.
	for deadline := time.Now().Add(5 * time.Second); r.u.filled.Load() < 2 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if n := r.u.filled.Load(); n < 2 {
		t.Fatalf("userfaultfd filled %d pages; the guest's code and data pages should have come through it", n)
	}
}
