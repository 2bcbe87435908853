package uffd

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// A system call reading an unfilled page of a registered shared mapping
// blocks until the handler copies the page in; a second mapping of the
// same memfd then sees it, and a second copy reports that it existed.
func TestCopyServesKernelModeFault(t *testing.T) {
	u, err := New()
	if err != nil {
		t.Skipf("no userfaultfd here: %v", err)
	}
	defer u.Close()
	const size = 16 * pageSize
	fd, err := unix.MemfdCreate("uffd-test", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Ftruncate(fd, size); err != nil {
		t.Fatal(err)
	}
	mapA, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mapA)
	mapB, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mapB)
	if err := u.RegisterBytes(mapA); err != nil {
		t.Fatal(err)
	}
	page := bytes.Repeat([]byte("sietch!\n"), pageSize/8)
	served := make(chan error, 1)
	go func() {
		buf := make([]byte, 4*MsgSize)
		pfd := []unix.PollFd{{Fd: int32(u.Fd()), Events: unix.POLLIN}}
		for {
			if _, err := unix.Poll(pfd, 10000); err != nil && err != unix.EINTR {
				served <- err
				return
			}
			faults, err := u.ReadFaults(buf, nil)
			if err != nil {
				served <- err
				return
			}
			for _, a := range faults {
				if a != Addr(mapA)+3*pageSize {
					t.Errorf("fault at %#x, want page 3 at %#x", a, Addr(mapA)+3*pageSize)
				}
				_, err := u.Copy(a, page)
				served <- err
				return
			}
		}
	}()
	out := filepath.Join(t.TempDir(), "out")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// write(2) reads page 3 of mapA in kernel mode: the fault is served.
	if _, err := f.Write(mapA[3*pageSize : 4*pageSize]); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(out)
	if !bytes.Equal(got, page) {
		t.Fatalf("write(2) from the unfilled page wrote %q..., want the copied page", got[:16])
	}
	if !bytes.Equal(mapB[3*pageSize:4*pageSize], page) {
		t.Error("the second mapping does not see the page filled through the first")
	}
	if existed, err := u.Copy(Addr(mapA)+3*pageSize, page); err != nil || !existed {
		t.Errorf("second copy to a filled page: existed=%v err=%v, want existed", existed, err)
	}
	if err := u.Unregister(Addr(mapA), size); err != nil {
		t.Fatal(err)
	}
}
