package vmm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sietch-vm/sietch/kvm"
	"github.com/sietch-vm/sietch/snapshot"
	"github.com/sietch-vm/sietch/wire/control"
)

// MemoryFile is the name of the memory file in the snapshots the vmm writes.
const MemoryFile = "memory"

// Snapshot writes a full snapshot of the VM into dir (created if needed):
// the memory file first, then the state file, which makes dir a snapshot.
//
// A running VM is paused for the snapshot and resumed after it; a VM the
// caller paused stays paused; a VM built but not yet run (such as one just
// restored) is captured as it is, and a Run started meanwhile waits. Do not
// call Resume while Snapshot runs.
//
// Virtio device processes stop with the vCPUs and start again with them.
// Disk images are recorded by size and SHA-256, so a restore refuses a disk
// written after the snapshot (stop the VM after its snapshot), and cloned
// into dir (copy-on-write where the file system can), so forks restored
// with RestoreConfig.ForkID each start from their own copy of the clone.
//
// After the first snapshot the VM tracks the pages vCPUs and devices write,
// so that SnapshotDiff can save only those.
func (m *Machine) Snapshot(dir string) error { return m.snapshot(dir, false) }

// SnapshotDiff is Snapshot writing only the guest pages written since the
// VM's last snapshot (full or diff) or its restore: the state names that
// snapshot as its base, and restoring the diff reads the chain of bases
// back to a full snapshot (snapshot.Layers; snapshot.Flatten makes a diff
// stand alone). Without an earlier snapshot it fails with control.ErrNoDiffBase.
func (m *Machine) SnapshotDiff(dir string) error { return m.snapshot(dir, true) }

func (m *Machine) snapshot(dir string, diff bool) error {
	t := time.Now()
	if m.pager != nil && !diff {
		// Pages not yet in would read as zeros through the memfd. A diff
		// reads only pages written since the restore, which are in.
		m.pager.FillAll()
		m.pager.Wait()
	}
	if diff {
		m.mu.Lock()
		tracked, unsupported := m.dirty != nil, ""
		if tracked {
			unsupported = m.dirty.unsupported
		}
		m.mu.Unlock()
		if !tracked {
			return fmt.Errorf("diff snapshot: %w", control.ErrNoDiffBase)
		}
		if unsupported != "" {
			return fmt.Errorf("diff snapshot: device %s cannot log the pages it writes (its back-end lacks LOG_SHMFD): %w; take a full snapshot", unsupported, control.ErrSnapshotUnsupported)
		}
	}
	release, err := m.quiesce()
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	defer release()
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("snapshot: create directory: %w", err)
	}
	// Device processes stop before anything is read, so that neither the
	// vCPU and interrupt state nor memory changes under the capture; the
	// rings run again when the vCPUs resume.
	virt, err := m.holdRings()
	if err != nil {
		return fmt.Errorf("snapshot to %s: %w", dir, err)
	}
	st, err := m.captureState()
	if err != nil {
		return fmt.Errorf("snapshot to %s: %w", dir, err)
	}
	st.Devices.Virtio = virt
	if err := m.recordDevices(dir, &st.Machine); err != nil {
		return fmt.Errorf("snapshot to %s: %w", dir, err)
	}
	tState := time.Since(t)
	var written uint64
	if diff {
		if abs == m.lastSnap {
			return fmt.Errorf("diff snapshot to %s: that is its own base; pick a new directory", dir)
		}
		dirty, err := m.collectDirty()
		if err != nil {
			return fmt.Errorf("diff snapshot to %s: %w", dir, err)
		}
		st.Memory.Kind, st.Memory.DirtyPages, st.Memory.Base = snapshot.KindDiff, dirty, baseRef(abs, m.lastSnap)
		written, err = m.writeMemory(filepath.Join(dir, MemoryFile), dirty)
		if err != nil {
			// The pages are out of KVM's log now: the next diff must
			// not pretend to follow this failed one.
			m.lastSnap = ""
			return fmt.Errorf("diff snapshot to %s: %w", dir, err)
		}
	} else if written, err = m.writeMemory(filepath.Join(dir, MemoryFile), nil); err != nil {
		return fmt.Errorf("snapshot to %s: %w", dir, err)
	}
	crashPoint("snapshot-memory-written")
	if st.Memory.Sums, err = snapshot.SumMemory(filepath.Join(dir, MemoryFile), m.mem.Size()); err != nil {
		if diff {
			m.lastSnap = "" // as for a failed write: the dirty log is spent
		}
		return fmt.Errorf("snapshot to %s: %w", dir, err)
	}
	if err := snapshot.Write(dir, st); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	crashPoint("snapshot-state-written")
	if err := m.trackFrom(abs); err != nil {
		m.log.Warn("diff snapshots will not be possible", "err", err)
	}
	m.log.Debug("snapshot written", "dir", dir, "diff", diff, "state", tState, "memory_bytes", written, "took", time.Since(t))
	return nil
}

// trackFrom makes the snapshot at abs the base of the next diff, starting
// dirty tracking (or clearing its logs) now, while vCPUs and rings stand.
func (m *Machine) trackFrom(abs string) error {
	m.lastSnap = ""
	if err := m.startDirtyTracking(); err != nil {
		return err
	}
	m.lastSnap = abs
	return nil
}

// baseRef names base for a diff in dir: relative when both share a parent
// directory tree, so the pair can move together; absolute otherwise.
func baseRef(dir, base string) string {
	if rel, err := filepath.Rel(dir, base); err == nil {
		return rel
	}
	return base
}

// quiesce makes sure no vCPU runs guest code until release is called.
func (m *Machine) quiesce() (release func(), err error) {
	m.mu.Lock()
	switch m.state {
	case stateStopped, stateClosed:
		m.mu.Unlock()
		return nil, errors.New("the VM has stopped")
	case stateCreated:
		// A Run that starts now parks its vCPUs before they enter the guest.
		m.moveLocked(stateHeld)
		m.mu.Unlock()
		return func() { m.Resume() }, nil
	case stateHeld, statePaused:
		m.mu.Unlock()
		return func() {}, nil
	}
	m.mu.Unlock()
	if err := m.Pause(); err != nil {
		return nil, err
	}
	return func() { m.Resume() }, nil
}

// writeMemory saves guest RAM to a sparse file at path: all of it, or with
// dirty set only those pages.
func (m *Machine) writeMemory(path string, dirty snapshot.Bitmap) (uint64, error) {
	// The memfd stays Memory's: hand WriteFile a duplicate to own and close.
	fd, err := unix.FcntlInt(uintptr(m.mem.FD()), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("duplicate the guest memory fd: %w", err)
	}
	f := os.NewFile(uintptr(fd), "guest-ram")
	defer f.Close()
	if dirty != nil {
		return snapshot.WriteDiff(path, f, m.mem.Size(), dirty)
	}
	return snapshot.WriteFull(path, f, m.mem.Size())
}

// captureState reads the state of the paused VM, its vCPUs and devices.
func (m *Machine) captureState() (*snapshot.State, error) {
	st := &snapshot.State{
		Machine: snapshot.Machine{
			MemSize: m.cfg.MemSize,
			CPUs:    len(m.vcpus),
			Cmdline: m.cmdline,
			Compat:  m.compat,
			Entry:   m.cfg.Entry,
		},
		Memory: snapshot.Memory{File: MemoryFile, Size: m.mem.Size(), Kind: snapshot.KindFull},
	}
	for _, r := range m.mem.Regions() {
		st.Memory.Regions = append(st.Memory.Regions, snapshot.Region{GPA: r.GPA, Size: r.Size, Offset: r.Offset})
	}
	caps, err := m.stateCaps()
	if err != nil {
		return nil, err
	}
	for _, v := range m.vcpus {
		// Tell a kvmclock guest it was stopped, so its watchdogs do not
		// count the pause; EINVAL when the guest has no kvmclock.
		_ = v.kvm.KVMClockCtrl()
		s, err := v.capture(caps)
		if err != nil {
			return nil, fmt.Errorf("vCPU %d: %w", v.id, err)
		}
		st.VCPUs = append(st.VCPUs, *s)
	}
	if err := m.captureVM(&st.VM); err != nil {
		return nil, err
	}
	st.Devices.Serial = m.serial.State()
	st.Devices.I8042 = m.i8042.State()
	return st, nil
}

// stateCaps is what this host's KVM can save beyond the basics.
type stateCaps struct {
	xsave, xcrs bool
	msrs        []uint32 // KVM's MSR index list
}

func (m *Machine) stateCaps() (stateCaps, error) {
	var c stateCaps
	n, _ := m.sys.CheckExtension(kvm.CapXSave)
	c.xsave = n > 0
	n, _ = m.sys.CheckExtension(kvm.CapXCRS)
	c.xcrs = n > 0
	var err error
	if c.msrs, err = m.sys.MSRIndexList(); err != nil {
		return c, err
	}
	return c, nil
}

func (m *Machine) captureVM(vm *snapshot.VM) error {
	clock, err := m.vm.GetClock()
	if err != nil {
		return err
	}
	vm.Clock = *clock
	vm.PICMaster.ChipID = kvm.IRQChipPICMaster
	vm.PICSlave.ChipID = kvm.IRQChipPICSlave
	vm.IOAPIC.ChipID = kvm.IRQChipIOAPIC
	for _, c := range []*kvm.IRQChip{&vm.PICMaster, &vm.PICSlave, &vm.IOAPIC} {
		if err := m.vm.GetIRQChip(c); err != nil {
			return err
		}
	}
	pit, err := m.vm.GetPIT2()
	if err != nil {
		return err
	}
	vm.PIT = *pit
	return nil
}

// capture reads one parked vCPU's state.
func (v *vcpu) capture(caps stateCaps) (*snapshot.VCPU, error) {
	c := v.kvm
	s := &snapshot.VCPU{ID: v.id}
	// MP state first: reading it makes KVM accept pending INIT/SIPI
	// events, which the other registers then reflect.
	mp, err := c.GetMPState()
	if err != nil {
		return nil, err
	}
	s.MPState = *mp
	regs, err := c.GetRegs()
	if err != nil {
		return nil, err
	}
	s.Regs = *regs
	sregs, err := c.GetSregs()
	if err != nil {
		return nil, err
	}
	s.Sregs = *sregs
	fpu, err := c.GetFPU()
	if err != nil {
		return nil, err
	}
	s.FPU = *fpu
	if caps.xsave {
		if s.XSave, err = c.GetXSave(); err != nil {
			return nil, err
		}
	}
	if caps.xcrs {
		if s.XCRS, err = c.GetXCRS(); err != nil {
			return nil, err
		}
	}
	dregs, err := c.GetDebugRegs()
	if err != nil {
		return nil, err
	}
	s.DebugRegs = *dregs
	lapic, err := c.GetLAPIC()
	if err != nil {
		return nil, err
	}
	s.LAPIC = *lapic
	if s.MSRs, err = readMSRs(c, caps.msrs); err != nil {
		return nil, err
	}
	ev, err := c.GetVCPUEvents()
	if err != nil {
		return nil, err
	}
	s.Events = *ev
	if s.TSCKHz, err = c.GetTSCKHz(); err != nil {
		return nil, err
	}
	if s.CPUID, err = c.GetCPUID2(); err != nil {
		return nil, err
	}
	return s, nil
}

// readMSRs reads every MSR of list that KVM will read for this vCPU: the
// index list names MSRs that CPUID may hide (PMU, TSX, AMD-only ones),
// which KVM_GET_MSRS refuses; those are left out.
func readMSRs(c *kvm.VCPU, list []uint32) ([]kvm.MSREntry, error) {
	if all, err := c.GetMSRs(list); err == nil {
		return all, nil
	}
	var out []kvm.MSREntry
	for _, idx := range list {
		e, err := c.GetMSRs([]uint32{idx})
		if err != nil {
			continue
		}
		out = append(out, e[0])
	}
	if len(out) == 0 && len(list) > 0 {
		return nil, fmt.Errorf("KVM reads none of the %d MSRs in its index list", len(list))
	}
	return out, nil
}
