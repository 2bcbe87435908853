package vmm

import (
	"fmt"
	"math/bits"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sietch-vm/sietch/kvm"
	"github.com/sietch-vm/sietch/snapshot"
	"github.com/sietch-vm/sietch/virtio"
	"github.com/sietch-vm/sietch/virtio/vhostuser"
	"github.com/sietch-vm/sietch/wire/control"
)

// dirtyTracker records which guest pages change between snapshots: KVM's
// dirty log covers what vCPUs write, a vhost-user dirty log shared with the
// device processes (LOG_SHMFD, VHOST_F_LOG_ALL) what devices write into
// guest memory. It starts at the first snapshot or at restore, so a VM that
// never snapshots pays nothing for it.
type dirtyTracker struct {
	fd      int    // memfd holding the device log
	mapping []byte // the vmm's view of it
	log     *virtio.DirtyLog
	size    uint64 // bytes of device log
	// unsupported names a device process that cannot log its writes; diff
	// snapshots are refused while it is attached.
	unsupported string
}

// startDirtyTracking turns dirty logging on if it is not yet, then forgets
// what was logged so far: the next diff holds the pages written from now
// on. Call it with the vCPUs parked and the device rings stopped or not
// yet started.
func (m *Machine) startDirtyTracking() error {
	if m.dirty == nil {
		t0 := time.Now()
		t, err := m.newDirtyTracker()
		if err != nil {
			return fmt.Errorf("start dirty page tracking: %w", err)
		}
		m.dirty = t
		// A fresh log is empty: KVM starts the slots' bitmaps at zero.
		m.log.Debug("dirty tracking on", "took", time.Since(t0))
		return nil
	}
	_, err := m.collectDirty()
	return err
}

func (m *Machine) newDirtyTracker() (*dirtyTracker, error) {
	var top uint64
	for _, r := range m.mem.Regions() {
		top = max(top, r.GPA+r.Size)
	}
	size := uint64(snapshot.BitmapWords(top)) * 8
	size = (size + pageSize - 1) &^ (pageSize - 1)
	fd, err := unix.MemfdCreate("sietch-dirty-log", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	t := &dirtyTracker{fd: fd, size: size}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		t.close()
		return nil, fmt.Errorf("size dirty log: %w", err)
	}
	if t.mapping, err = unix.Mmap(fd, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
		t.close()
		return nil, fmt.Errorf("map dirty log: %w", err)
	}
	t.log = virtio.NewDirtyLog(t.mapping)
	for i, r := range m.mem.Regions() {
		if err := m.vm.SetUserMemoryRegion(&kvm.UserspaceMemoryRegion{
			Slot: uint32(i), Flags: kvm.MemLogDirtyPages, GuestPhysAddr: r.GPA, MemorySize: r.Size,
			UserspaceAddr: hostAddr(m.mem.Mapping()[r.Offset:]),
		}); err != nil {
			t.close()
			return nil, fmt.Errorf("turn on KVM dirty logging for slot %d: %w", i, err)
		}
	}
	for _, d := range m.vdevs {
		ok, err := d.enableLog(t.fd, t.size)
		if err != nil {
			t.close()
			return nil, fmt.Errorf("device %s: %w", d.name, err)
		}
		if !ok && t.unsupported == "" {
			t.unsupported = d.name
		}
	}
	return t, nil
}

func (t *dirtyTracker) close() {
	if t.mapping != nil {
		unix.Munmap(t.mapping)
		t.mapping = nil
	}
	if t.fd >= 0 {
		unix.Close(t.fd)
		t.fd = -1
	}
}

// collectDirty returns the pages of the memory file written since the last
// call (or since tracking started), by vCPUs and devices, and clears the
// logs. Call it with the vCPUs parked and the device rings stopped.
func (m *Machine) collectDirty() (snapshot.Bitmap, error) {
	if m.dirty == nil {
		return nil, control.ErrNoDiffBase
	}
	size := m.mem.Size()
	out := make(snapshot.Bitmap, snapshot.BitmapWords(size))
	regions := m.mem.Regions()
	for i, r := range regions {
		slot := make([]uint64, snapshot.BitmapWords(r.Size))
		if err := m.vm.GetDirtyLog(uint32(i), slot); err != nil {
			return nil, fmt.Errorf("read KVM dirty log of slot %d: %w", i, err)
		}
		first := r.Offset / pageSize
		forEachBit(slot, func(p uint64) { out.Set(first + p) })
	}
	gpaPages := make([]uint64, m.dirty.log.Pages()/64)
	m.dirty.log.Collect(gpaPages)
	forEachBit(gpaPages, func(p uint64) {
		gpa := p * pageSize
		for _, r := range regions {
			if gpa >= r.GPA && gpa-r.GPA < r.Size {
				out.Set((r.Offset + gpa - r.GPA) / pageSize)
				return
			}
		}
	})
	return out, nil
}

func forEachBit(words []uint64, f func(uint64)) {
	for i, w := range words {
		for w != 0 {
			b := bits.TrailingZeros64(w)
			f(uint64(i)*64 + uint64(b))
			w &= w - 1
		}
	}
}

// enableLog shares the dirty log with the device process and has it log
// from now on. It reports false, without error, for a back-end that cannot
// log (no LOG_SHMFD or VHOST_F_LOG_ALL).
func (d *vhostDevice) enableLog(fd int, size uint64) (bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.canLog {
		return false, nil
	}
	if err := d.fe.SetLogBase(fd, vhostuser.LogBase{Size: size}); err != nil {
		return false, fmt.Errorf("share the dirty log: %w", err)
	}
	d.logging = true
	if d.acked != 0 {
		if err := d.fe.SetFeatures(d.wireFeatures(d.acked)); err != nil {
			return false, fmt.Errorf("turn on dirty logging: %w", err)
		}
	}
	return true, nil
}

// wireFeatures is what SET_FEATURES sends for the driver's acked features.
func (d *vhostDevice) wireFeatures(acked uint64) uint64 {
	if d.protocol {
		acked |= vhostuser.FeatureProtocolFeatures
	}
	if d.logging {
		acked |= vhostuser.FeatureLogAll
	}
	return acked
}
