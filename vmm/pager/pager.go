// Package pager serves lazily restored guest memory: userfaultfd faults of the vmm and of its device processes, answered from a snapshot's memory files, with an optional background filler (docs/SNAPSHOTS.md, "Lazy restore").
package pager

import (
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sietch-vm/sietch/snapshot"
	"github.com/sietch-vm/sietch/uffd"
	"github.com/sietch-vm/sietch/virtio/vhostuser"
)

// pageSize is the granule userfaultfd copies and the snapshot's memory
// files are laid out in.
const pageSize = snapshot.PageSize

// Pager serves lazily restored guest memory (docs/SNAPSHOTS.md, mechanism
// (a)). The vmm's mapping of the memfd and each device process's mapping
// are registered with userfaultfds in MISSING mode; one handler thread
// resolves every fault with UFFDIO_COPY from the snapshot's memory files,
// mapped read-only. A page filled through any mapping is in the memfd's
// page cache, seen by all: the next fault on it elsewhere finds it there
// (EEXIST) and is only woken. A background filler copies the remaining data
// pages; when it is done every registration is dropped and the pager ends.
type Pager struct {
	log                *slog.Logger
	base, size         uint64 // the vmm's mapping of guest memory
	layers             []layer
	own                *uffd.FD
	need               snapshot.Bitmap // pages some layer holds data for: the filler's work
	filled             []atomic.Uint64 // pages in the memfd, one bit each
	wake               int             // eventfd: device added, or stop
	stop               atomic.Bool     // abandon filling (the VM is closing)
	fillStarted        atomic.Bool     // the background filler has been started
	workers            sync.WaitGroup  // serve and fill; release waits for them before closing their fds
	done               chan struct{}   // closed when the pager has ended
	served, background atomic.Uint64
	devServed          atomic.Uint64 // faults of device processes

	onCorrupt func(error)
	corrupt   atomic.Bool // a chunk failed its check: nothing more is copied in

	mu    sync.Mutex
	devs  []*Device
	ended bool
}

type layer struct {
	path     string
	data     []byte          // the memory file, mapped read-only
	dirty    snapshot.Bitmap // nil for the full base
	sums     *snapshot.Sums  // nil: not checked
	verified []atomic.Uint64 // chunks checked against sums, one bit each
}

// Device is a device process's userfaultfd and where its mapping of
// each region lies.
type Device struct {
	Name    string
	FD      *uffd.FD
	Regions []vhostuser.MemoryRegion // UserspaceAddr: the device's address
	End     func() error             // POSTCOPY_END
}

// New maps the chain and registers mapping, the vmm's mapping of the
// guest memory memfd; the guest must not run and no device may map the
// memory before this. A nil log discards messages.
//
// With fill the background filler starts at once; otherwise pages come
// in on fault only until FillAll is called.
//
// A chunk of a memory file that does not match its checksum is never
// copied in: onCorrupt (if set) is told once, to stop the VM, and from
// then on faults are answered with zeros only to release the faulting
// threads of the stopped VM (see resolve).
func New(mapping []byte, chain []snapshot.Layer, log *slog.Logger, fill bool, onCorrupt func(error)) (p *Pager, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	own, err := uffd.New()
	if err != nil {
		return nil, err
	}
	p = &Pager{log: log, own: own, wake: -1, done: make(chan struct{}), onCorrupt: onCorrupt,
		base: uffd.Addr(mapping), size: uint64(len(mapping)),
		filled: make([]atomic.Uint64, snapshot.BitmapWords(uint64(len(mapping))))}
	defer func() {
		if err != nil {
			p.Release()
		}
	}()
	size := p.size
	for _, l := range chain {
		data, err := mapReadOnly(l.Path, size)
		if err != nil {
			return nil, err
		}
		ly := layer{path: l.Path, data: data, dirty: l.Dirty, sums: l.Sums}
		if l.Sums != nil {
			ly.verified = make([]atomic.Uint64, (size/snapshot.SumChunk+64)/64)
		}
		p.layers = append(p.layers, ly)
	}
	if p.need, err = dataPages(chain[0].Path, size); err != nil {
		return nil, err
	}
	for _, l := range chain[1:] {
		for i, w := range l.Dirty {
			if i < len(p.need) {
				p.need[i] |= w
			}
		}
	}
	if p.wake, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	if err := own.RegisterBytes(mapping); err != nil {
		return nil, err
	}
	p.workers.Add(1)
	go p.serve()
	if fill {
		p.FillAll()
	}
	return p, nil
}

// FillAll starts the background filler if it has not started: every data
// page comes in, then the pager ends (wait returns).
func (p *Pager) FillAll() {
	if p.fillStarted.CompareAndSwap(false, true) {
		p.workers.Add(1)
		go p.fill()
	}
}

func mapReadOnly(path string, size uint64) ([]byte, error) {
	f, err := snapshot.OpenMemory(path, size)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("map memory file %s: %w", path, err)
	}
	return b, nil
}

// dataPages is the set of pages of the file that are not holes.
func dataPages(path string, size uint64) (snapshot.Bitmap, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make(snapshot.Bitmap, snapshot.BitmapWords(size))
	for off := int64(0); uint64(off) < size; {
		d, err := f.Seek(off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("find data in %s: %w", path, err)
		}
		h, err := f.Seek(d, unix.SEEK_HOLE)
		if err != nil {
			return nil, fmt.Errorf("find hole in %s: %w", path, err)
		}
		for p := uint64(d) / pageSize; p < (uint64(h)+pageSize-1)/pageSize && p*pageSize < size; p++ {
			b.Set(p)
		}
		if h <= off {
			break
		}
		off = h
	}
	return b, nil
}

func (p *Pager) isFilled(page uint64) bool {
	return p.filled[page/64].Load()&(1<<(page%64)) != 0
}

func (p *Pager) setFilled(page uint64) { p.filled[page/64].Or(1 << (page % 64)) }

// source is the snapshot's content of page: from the newest diff that
// holds it, else from the full base. The chunk it is in is checked against
// the layer's checksums the first time a page of it is used.
func (p *Pager) source(page uint64) ([]byte, error) {
	off := page * pageSize
	l := &p.layers[0]
	for i := len(p.layers) - 1; i > 0; i-- {
		if p.layers[i].dirty.Has(page) {
			l = &p.layers[i]
			break
		}
	}
	if err := p.verify(l, off/snapshot.SumChunk); err != nil {
		return nil, err
	}
	return l.data[off : off+pageSize], nil
}

// verify checks chunk c of layer l once.
func (p *Pager) verify(l *layer, c uint64) error {
	if l.sums == nil || l.verified[c/64].Load()&(1<<(c%64)) != 0 {
		return nil
	}
	end := min((c+1)*snapshot.SumChunk, uint64(len(l.data)))
	if err := l.sums.Verify(l.path, c, l.data[c*snapshot.SumChunk:end]); err != nil {
		p.reportCorrupt(err)
		return err
	}
	l.verified[c/64].Or(1 << (c % 64))
	return nil
}

// reportCorrupt records the first checksum failure and has the VM stopped:
// onCorrupt runs (it kicks every vCPU out of KVM_RUN with a signal
// pending) before any faulting thread is released, for up to a second.
func (p *Pager) reportCorrupt(err error) {
	if !p.corrupt.CompareAndSwap(false, true) {
		return
	}
	p.log.Error("lazy memory: snapshot memory is corrupt; stopping the VM, no more of the snapshot is copied in", "err", err)
	if p.onCorrupt == nil {
		return
	}
	done := make(chan struct{})
	go func() { p.onCorrupt(err); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Second):
	}
}

var zeroPage [pageSize]byte

// resolve answers a fault at addr (in u's address space) on page. Once
// the snapshot is known to be corrupt, a fault is answered with zeros,
// never with the snapshot's bytes: only so that the faulting thread can
// leave, since the VM has been stopped (a vCPU has a signal pending and
// leaves KVM_RUN before it enters the guest again).
func (p *Pager) resolve(u *uffd.FD, addr, page uint64) error {
	if p.isFilled(page) {
		return u.Wake(addr, pageSize)
	}
	src := zeroPage[:]
	if !p.corrupt.Load() {
		s, err := p.source(page)
		if err == nil {
			src = s
		}
	}
	if _, err := u.Copy(addr, src); err != nil {
		return err
	}
	p.setFilled(page)
	p.served.Add(1)
	return nil
}

// serve is the fault handler thread.
func (p *Pager) serve() {
	defer p.workers.Done()
	runtime.LockOSThread() // it must never wait for a P held by a faulting goroutine
	buf := make([]byte, 64*uffd.MsgSize)
	var faults []uint64
	for {
		p.mu.Lock()
		if p.ended {
			p.mu.Unlock()
			return
		}
		devs := append([]*Device(nil), p.devs...)
		p.mu.Unlock()
		fds := []unix.PollFd{{Fd: int32(p.wake), Events: unix.POLLIN}, {Fd: int32(p.own.Fd()), Events: unix.POLLIN}}
		for _, d := range devs {
			fds = append(fds, unix.PollFd{Fd: int32(d.FD.Fd()), Events: unix.POLLIN})
		}
		if _, err := unix.Poll(fds, -1); err != nil && !errors.Is(err, unix.EINTR) {
			p.log.Error("lazy memory: poll", "err", err)
			return
		}
		if fds[0].Revents != 0 {
			var b [8]byte
			unix.Read(p.wake, b[:])
		}
		if fds[1].Revents != 0 {
			faults, _ = p.own.ReadFaults(buf, faults[:0])
			base := p.base
			for _, a := range faults {
				if a < base || a-base >= p.size {
					p.log.Error("lazy memory: fault outside guest memory", "addr", a)
					continue
				}
				if err := p.resolve(p.own, a, (a-base)/pageSize); err != nil {
					p.log.Error("lazy memory: fill a page for the vmm", "err", err)
				}
			}
		}
		for i, d := range devs {
			if fds[2+i].Revents == 0 {
				continue
			}
			faults, _ = d.FD.ReadFaults(buf, faults[:0])
			for _, a := range faults {
				off, ok := d.offset(a)
				if !ok || off >= p.size {
					p.log.Error("lazy memory: device fault outside guest memory", "device", d.Name, "addr", a)
					continue
				}
				if err := p.resolve(d.FD, a, off/pageSize); err != nil {
					p.log.Error("lazy memory: fill a page for a device", "device", d.Name, "err", err)
				}
				p.devServed.Add(1)
			}
		}
	}
}

// offset is the memfd offset of the device's address a.
func (d *Device) offset(a uint64) (uint64, bool) {
	for _, r := range d.Regions {
		if a >= r.UserspaceAddr && a-r.UserspaceAddr < r.MemorySize {
			return r.MmapOffset + a - r.UserspaceAddr, true
		}
	}
	return 0, false
}

// HoldFill, when set by a test, keeps the background filler from
// starting, so that every page must come through a fault.
var HoldFill atomic.Bool

// fill copies every data page not yet in, then ends the pager.
func (p *Pager) fill() {
	defer p.workers.Done()
	for HoldFill.Load() && !p.stop.Load() {
		time.Sleep(10 * time.Millisecond)
	}
	if p.stop.Load() {
		return // the VM is going away; its memory may be unmapped already
	}
	t := time.Now()
	base := p.base
	pages := p.size / pageSize
	for page := uint64(0); page < pages; page++ {
		if p.need[page/64] == 0 {
			page |= 63
			continue
		}
		if !p.need.Has(page) || p.isFilled(page) {
			continue
		}
		if p.stop.Load() {
			return
		}
		src, err := p.source(page)
		if err != nil || p.corrupt.Load() {
			// Reported by source; the VM has been stopped. Ending lets a
			// Wait return (a snapshot then finds the VM stopped).
			p.end()
			return
		}
		if _, err := p.own.Copy(base+page*pageSize, src); err != nil {
			p.log.Error("lazy memory: background fill", "err", err)
			return
		}
		p.setFilled(page)
		p.background.Add(1)
	}
	p.end()
	p.log.Debug("lazy memory: every page is in", "took", time.Since(t),
		"on_fault", p.served.Load(), "background", p.background.Load())
}

// end drops every registration once all data pages are in: holes read as
// zeros without help.
func (p *Pager) end() {
	p.mu.Lock()
	p.ended = true
	devs := p.devs
	p.mu.Unlock()
	for _, d := range devs {
		if err := d.End(); err != nil {
			p.log.Warn("lazy memory: end postcopy", "device", d.Name, "err", err)
		}
	}
	if err := p.own.Unregister(p.base, p.size); err != nil {
		p.log.Warn("lazy memory: unregister", "err", err)
	}
	p.kick()
	close(p.done)
}

func (p *Pager) kick() {
	var one [8]byte
	one[0] = 1
	unix.Write(p.wake, one[:])
}

// AddDevice has faults of a device process's mapping served. It reports
// false when the pager has ended: the device then needs nothing.
func (p *Pager) AddDevice(d *Device) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ended {
		return false
	}
	p.devs = append(p.devs, d)
	p.kick()
	return true
}

// Wait blocks until every page is in.
func (p *Pager) Wait() { <-p.done }

// Release stops the pager and frees what it holds; the VM is going away.
func (p *Pager) Release() {
	p.stop.Store(true)
	p.mu.Lock()
	ended := p.ended
	p.ended = true
	devs := p.devs
	p.devs = nil
	p.mu.Unlock()
	if p.wake >= 0 {
		p.kick()
	}
	// The handler thread and the filler use the userfaultfds: they must be
	// gone before the fds are closed (a closed fd number can be reused).
	// The filler stops at its next page, the handler at its next wake.
	p.workers.Wait()
	if !ended {
		// Not every page is in: wake anything waiting and let it see
		// zeros; the VM is being torn down.
		p.own.Close()
	}
	for _, d := range devs {
		d.FD.Close()
	}
	for _, l := range p.layers {
		unix.Munmap(l.data)
	}
	p.layers = nil
}

// Stats counts the pages in so far: by the vmm's faults, by the device
// processes' faults, and by the background filler.
type Stats struct {
	Served, DevServed, Background uint64
}

// Stats returns the counts so far.
func (p *Pager) Stats() Stats {
	return Stats{Served: p.served.Load(), DevServed: p.devServed.Load(), Background: p.background.Load()}
}

// DataPages is how many pages the snapshot holds data for.
func (p *Pager) DataPages() int {
	n := 0
	for _, w := range p.need {
		n += bits.OnesCount64(w)
	}
	return n
}
