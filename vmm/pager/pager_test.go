package pager

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sietch-vm/sietch/snapshot"
	"github.com/sietch-vm/sietch/uffd"
)

// memFile writes a sparse memory file of pages pages in which page i holds
// byte i+1 where data(i), and returns its path.
func memFile(t *testing.T, pages int, data func(int) bool) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "memory")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(int64(pages * pageSize)); err != nil {
		t.Fatal(err)
	}
	for i := range pages {
		if data(i) {
			f.WriteAt(bytes.Repeat([]byte{byte(i + 1)}, pageSize), int64(i*pageSize))
		}
	}
	return path
}

// guestMemory is a MAP_SHARED mapping of a new memfd, as the vmm's.
func guestMemory(t *testing.T, pages int) []byte {
	t.Helper()
	fd, err := unix.MemfdCreate("pager-test", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Ftruncate(fd, int64(pages*pageSize)); err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(fd, 0, pages*pageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(m) })
	return m
}

func requireUffd(t *testing.T) {
	u, err := uffd.New()
	if err != nil {
		t.Skipf("no userfaultfd here: %v", err)
	}
	u.Close()
}

// On demand, a page comes in when it is first read, holding the
// snapshot's content; holes read as zeros; nothing else is copied until
// FillAll, after which every data page is in and Wait returns.
func TestOnDemandThenFill(t *testing.T) {
	requireUffd(t)
	const pages = 64
	path := memFile(t, pages, func(i int) bool { return i%4 != 3 })
	mem := guestMemory(t, pages)
	p, err := New(mem, []snapshot.Layer{{Path: path}}, nil, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Release()
	if got := mem[5*pageSize+100]; got != 6 {
		t.Errorf("page 5 reads %d, want 6 (the snapshot's)", got)
	}
	if got := mem[7*pageSize]; got != 0 {
		t.Errorf("page 7, a hole, reads %d, want 0", got)
	}
	if st := p.Stats(); st.Served == 0 || st.Background != 0 {
		t.Errorf("on demand: %+v; want faults only", st)
	}
	if p.DataPages() != 48 {
		t.Errorf("DataPages %d, want 48", p.DataPages())
	}
	p.FillAll()
	done := make(chan struct{})
	go func() { p.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not return after FillAll")
	}
	st := p.Stats()
	if st.Served+st.Background < 48 {
		t.Errorf("after the fill %+v; want all 48 data pages in (and the hole that was read)", st)
	}
	for i := range pages {
		want := byte(i + 1)
		if i%4 == 3 {
			want = 0
		}
		if mem[i*pageSize+pageSize-1] != want {
			t.Fatalf("page %d reads %d, want %d", i, mem[i*pageSize+pageSize-1], want)
		}
	}
}

// A diff layer's pages win over the base's.
func TestChainNewestLayerWins(t *testing.T) {
	requireUffd(t)
	const pages = 8
	base := memFile(t, pages, func(int) bool { return true })
	diff := memFile(t, pages, func(i int) bool { return i == 2 })
	// The diff holds page 2 with byte 3 too; make it differ.
	f, _ := os.OpenFile(diff, os.O_WRONLY, 0)
	f.WriteAt(bytes.Repeat([]byte{0xee}, pageSize), 2*pageSize)
	f.Close()
	dirty := make(snapshot.Bitmap, snapshot.BitmapWords(pages*pageSize))
	dirty.Set(2)
	mem := guestMemory(t, pages)
	p, err := New(mem, []snapshot.Layer{{Path: base}, {Path: diff, Dirty: dirty}}, nil, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Release()
	p.Wait()
	if mem[2*pageSize] != 0xee || mem[3*pageSize] != 4 {
		t.Errorf("page 2 reads %#x (want the diff's 0xee), page 3 %d (want the base's 4)", mem[2*pageSize], mem[3*pageSize])
	}
}
