package snapshot

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// lazyRestore is restore mechanism (a): a fresh guest memfd whose pages a
// userfaultfd fills from a memory file on first touch.
type lazyRestore struct {
	mem  *os.File
	vmm  []byte // the vmm's MAP_SHARED mapping, registered with u
	file []byte // the memory file, mapped read-only
	u    *userfault
	done chan error
}

func newLazyRestore(t testing.TB, path string, size uint64) *lazyRestore {
	t.Helper()
	f, err := OpenMemory(path, size)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	file, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(file) })
	mem, vmm := newMemfd(t, size)
	return &lazyRestore{mem: mem, vmm: vmm, file: file, u: serveUserfault(t, vmm, file)}
}

// serveUserfault registers dst and fills its faults from src until cleanup.
func serveUserfault(t testing.TB, dst, src []byte) *userfault {
	t.Helper()
	u, err := newUserfault(false)
	if err != nil {
		t.Skipf("no userfaultfd here: %v", err)
	}
	if err := u.register(dst); err != nil {
		u.close()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- u.serve(dst, src) }()
	t.Cleanup(func() {
		u.shutdown()
		if err := <-done; err != nil {
			t.Errorf("userfault handler: %v", err)
		}
		u.close()
	})
	return u
}

// TestUserfaultSharedMemfd is the prototype of lazy restore with device
// processes: the vmm's mapping of a fresh memfd and a second mapping of the
// same memfd (standing for a device process's, with its own userfaultfd)
// both fill missing pages from the snapshot's memory file. Whichever side
// touches a page first fills it; the other side then sees the snapshot's
// contents, never zeros.
func TestUserfaultSharedMemfd(t *testing.T) {
	// A goroutine blocked in a user-mode fault keeps its P (and cannot be
	// preempted inside assembly such as bytes.Equal), so the handlers need
	// Ps of their own: two faulting goroutines below plus two handlers.
	// With fewer, this test deadlocks; see docs/SNAPSHOTS.md.
	if runtime.GOMAXPROCS(0) < 4 {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	}
	const size = 64 * PageSize
	src, sm := newMemfd(t, size)
	touch(sm, 48, rand.New(rand.NewPCG(9, 9)))
	path := filepath.Join(t.TempDir(), "memory")
	if _, err := WriteFull(path, src, size); err != nil {
		t.Fatal(err)
	}
	// Registered first, so it runs after the handlers have stopped.
	counts := new([2]*userfault)
	t.Cleanup(func() {
		v, d := counts[0], counts[1]
		if v == nil {
			return
		}
		t.Logf("vmm filled %d pages (%d were already there), device %d (%d)", v.filled.Load(), v.woken.Load(), d.filled.Load(), d.woken.Load())
		// Pages 3, 5, 7, 9 and 10-63 were touched; 0-2, 4, 6, 8 never.
		if got := v.filled.Load() + d.filled.Load(); got != 58 {
			t.Errorf("%d pages filled; each of the 58 touched pages should be filled exactly once", got)
		}
	})
	r := newLazyRestore(t, path, size)
	dev, err := unix.Mmap(int(r.mem.Fd()), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(dev)
	du := serveUserfault(t, dev, r.file)

	page := func(m []byte, p int) []byte { return m[p*PageSize : (p+1)*PageSize] }
	want := func(p int) []byte { return page(sm, p) }

	// The vCPU (user-mode access through the vmm mapping) touches page 3
	// first; the device then reads it without a fault of its own.
	if !bytes.Equal(page(r.vmm, 3), want(3)) {
		t.Fatal("vmm mapping: page 3 differs from the snapshot")
	}
	if !bytes.Equal(page(dev, 3), want(3)) {
		t.Fatal("device mapping: page 3 filled by the vmm differs from the snapshot")
	}
	// The device touches page 5 first (a DMA into a page the guest has not
	// touched since restore); the vmm sees it.
	if !bytes.Equal(page(dev, 5), want(5)) || !bytes.Equal(page(r.vmm, 5), want(5)) {
		t.Fatal("page 5 filled by the device differs from the snapshot in one of the mappings")
	}
	// Kernel-mode access, as KVM's and a device's read(2) into guest
	// buffers are: write(2) from an unfilled page of each mapping.
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	for _, c := range []struct {
		m []byte
		p int
	}{{r.vmm, 7}, {dev, 9}} {
		if _, err := unix.Write(int(pw.Fd()), page(c.m, c.p)[:64]); err != nil {
			t.Fatalf("write(2) from unfilled page %d: %v", c.p, err)
		}
		got := make([]byte, 64)
		if _, err := pr.Read(got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want(c.p)[:64]) {
			t.Fatalf("write(2) from page %d sent %x, the snapshot has %x", c.p, got[:8], want(c.p)[:8])
		}
	}
	// Both touch the same pages at once: one fills, the other wakes.
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for _, m := range [][]byte{r.vmm, dev} {
		wg.Go(func() {
			for p := 10; p < 64; p++ {
				if !bytes.Equal(page(m, p), want(p)) {
					errs <- "page differs"
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
	// A write after filling goes to the shared page, not a private copy.
	page(r.vmm, 20)[0] ^= 0xff
	if page(dev, 20)[0] != want(20)[0]^0xff {
		t.Fatal("a guest write after the fill is not seen by the device: the memory is not shared")
	}
	*counts = [2]*userfault{r.u, du}
}

// TestUserfaultUserModeOnly records what UFFD_USER_MODE_ONLY (the only
// userfaultfd an unprivileged process gets when
// vm.unprivileged_userfaultfd is 0) does to kernel-mode accesses: they fail
// with EFAULT instead of waiting for the handler, so it cannot serve KVM or
// a device's read(2) into guest memory.
func TestUserfaultUserModeOnly(t *testing.T) {
	sysctl, _ := os.ReadFile("/proc/sys/vm/unprivileged_userfaultfd")
	t.Logf("vm.unprivileged_userfaultfd = %s", strings.TrimSpace(string(sysctl)))
	u, err := newUserfault(true)
	if err != nil {
		t.Skipf("UFFD_USER_MODE_ONLY unavailable: %v", err)
	}
	defer u.close()
	_, m := newMemfd(t, 4*PageSize)
	if err := u.register(m); err != nil {
		t.Fatal(err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	_, err = unix.Write(int(pw.Fd()), m[:64])
	if !errors.Is(err, unix.EFAULT) {
		t.Fatalf("write(2) from a missing page under a user-mode-only userfaultfd: %v; want EFAULT", err)
	}
}
