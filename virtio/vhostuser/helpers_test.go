package vhostuser

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sietch-vm/sietch/virtio"
)

// socketPair returns the two connected ends of a unix stream socket.
func socketPair(t testing.TB) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socketpair: %v", err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "socketpair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatalf("FileConn: %v", err)
		}
		return c.(*net.UnixConn)
	}
	a, b := conn(fds[0]), conn(fds[1])
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// guestRAM is a memfd the test maps as "the vmm" and shares with the
// back-end, plus a minimal split-ring driver working in it.
type guestRAM struct {
	fd  int
	mem []byte
}

const (
	ramSize  = 1 << 20
	fakeVA   = 0x7f12_3400_0000 // the front-end's address of guest RAM; not the GPA on purpose
	ringSize = 8
	descGPA  = 0x1000
	availGPA = 0x2000
	usedGPA  = 0x3000
)

func newGuestRAM(t testing.TB, size int) *guestRAM {
	t.Helper()
	fd, err := unix.MemfdCreate("guest-ram", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatalf("memfd_create: %v", err)
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		t.Fatalf("ftruncate: %v", err)
	}
	mem, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatalf("mmap: %v", err)
	}
	t.Cleanup(func() { unix.Munmap(mem); unix.Close(fd) })
	return &guestRAM{fd: fd, mem: mem}
}

func (g *guestRAM) region() MemoryRegion {
	return MemoryRegion{GuestPhysAddr: 0, MemorySize: uint64(len(g.mem)), UserspaceAddr: fakeVA}
}

func ringAddr() VringAddr {
	return VringAddr{Desc: fakeVA + descGPA, Avail: fakeVA + availGPA, Used: fakeVA + usedGPA}
}

type buf struct {
	gpa   uint64
	len   uint32
	write bool
}

// post writes a descriptor chain starting at descriptor head and publishes
// it in the available ring (virtio 1.2 §2.7.13).
func (g *guestRAM) post(head uint16, bufs ...buf) {
	le := binary.LittleEndian
	for i, b := range bufs {
		d := g.mem[descGPA+16*int(head+uint16(i)):]
		le.PutUint64(d[0:], b.gpa)
		le.PutUint32(d[8:], b.len)
		var flags uint16
		if i < len(bufs)-1 {
			flags |= 1 // NEXT
		}
		if b.write {
			flags |= 2 // WRITE
		}
		le.PutUint16(d[12:], flags)
		le.PutUint16(d[14:], head+uint16(i)+1)
	}
	idx := le.Uint16(g.mem[availGPA+2:])
	// used_event: with EVENT_IDX, interrupt once the device passes what the
	// driver has seen (virtio 1.2 §2.7.10).
	le.PutUint16(g.mem[availGPA+4+2*ringSize:], g.usedIdx())
	le.PutUint16(g.mem[availGPA+4+2*int(idx%ringSize):], head)
	le.PutUint16(g.mem[availGPA+2:], idx+1)
}

func (g *guestRAM) usedIdx() uint16 { return binary.LittleEndian.Uint16(g.mem[usedGPA+2:]) }

func (g *guestRAM) usedElem(i uint16) (id, n uint32) {
	e := g.mem[usedGPA+4+8*int(i%ringSize):]
	return binary.LittleEndian.Uint32(e), binary.LittleEndian.Uint32(e[4:])
}

// waitEvent waits for e to be signalled; the deadline only keeps a broken
// back-end from hanging the test run.
func waitEvent(t testing.TB, e *EventFD, what string) {
	t.Helper()
	done := make(chan error, 1)
	go func() { _, err := e.Wait(); done <- err }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("wait for %s: %v", what, err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("no %s signal after 30s", what)
	}
}

// echoDevice is a toy virtio device with one queue: each chain's readable
// bytes come back upper-cased in its writable buffers. Its 8-byte config
// space is read-only but for the last 4 bytes.
type echoDevice struct {
	mu       sync.Mutex
	config   [8]byte
	acked    uint64
	runners  map[int]*Vring
	stops    int
	features uint64
}

const echoFeatures = virtio.FeatureVersion1 | virtio.FeatureEventIdx

func newEchoDevice() *echoDevice {
	d := &echoDevice{runners: map[int]*Vring{}, features: echoFeatures}
	copy(d.config[:], "ECHO\x00\x00\x00\x00")
	return d
}

func (d *echoDevice) Features() uint64         { return d.features }
func (d *echoDevice) ProtocolFeatures() uint64 { return ^uint64(0) }
func (d *echoDevice) NumQueues() int           { return 1 }
func (d *echoDevice) MaxQueueSize() uint16     { return 256 }

func (d *echoDevice) ReadConfig(off uint32, data []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := range data {
		data[i] = 0
		if o := uint64(off) + uint64(i); o < uint64(len(d.config)) {
			data[i] = d.config[o]
		}
	}
}

func (d *echoDevice) WriteConfig(off uint32, data []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if off < 4 || uint64(off)+uint64(len(data)) > uint64(len(d.config)) {
		return errors.New("only bytes 4..8 are writable")
	}
	copy(d.config[off:], data)
	return nil
}

func (d *echoDevice) SetFeatures(acked uint64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.acked = acked
	return nil
}

func (d *echoDevice) HandleChain(_ int, c *virtio.Chain, mem virtio.GuestMemory) (uint32, error) {
	in, _ := io.ReadAll(virtio.NewChainReader(mem, c))
	for j, b := range in {
		if 'a' <= b && b <= 'z' {
			in[j] = b - 'a' + 'A'
		}
	}
	w := virtio.NewChainWriter(mem, c)
	w.Write(in)
	return w.Written(), nil
}

func (d *echoDevice) StartVring(r *Vring) error {
	d.mu.Lock()
	d.runners[r.Index()] = r
	d.mu.Unlock()
	return nil
}

func (d *echoDevice) InterruptVring(*Vring) {}

func (d *echoDevice) StopVring(r *Vring) {
	d.mu.Lock()
	delete(d.runners, r.Index())
	d.stops++
	d.mu.Unlock()
}

func unixRights(fds []int) []byte { return unix.UnixRights(fds...) }

func dup(t testing.TB, fd int) int {
	t.Helper()
	d, err := unix.Dup(fd)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
