package vmm

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/sietch-vm/sietch/kvm"
	"github.com/sietch-vm/sietch/snapshot"
	"github.com/sietch-vm/sietch/uffd"
	"github.com/sietch-vm/sietch/vmm/pager"
)

// RestoreConfig is what a restored VM takes from the new process rather
// than from the snapshot.
type RestoreConfig struct {
	Console     io.Writer    // receives the guest's serial output; nil discards it
	Log         *slog.Logger // nil uses slog.Default()
	SeccompVCPU bool         // as Config.SeccompVCPU

	// ForkID, when set, restores the snapshot as one of several forks: the
	// VM gets its own copy of each disk's snapshot-time clone (in WorkDir),
	// its vsock socket at the saved path + "." + ForkID and a MAC derived
	// from the saved one and ForkID, so no two forks share writable state.
	// Letters, digits, '.', '_' and '-'; at most MaxForkIDLen bytes.
	ForkID string
	// WorkDir holds a fork's disk copies; "" makes a new directory next to
	// the snapshot directory. The copies outlive the VM: they are its disks.
	WorkDir string
	// VsockUDS, when set, replaces the saved vsock socket path.
	VsockUDS string
	// TrackDirty starts dirty page tracking at the restore, so that the
	// VM's first diff snapshot can be based on the snapshot it came from
	// (a fork's too: the diff's state records the fork's own disks and
	// identity, its memory is the base's plus the diff). It costs about
	// 2 ms per GiB of guest memory on a kvm_pvm host (KVM write-protects
	// the slots), so it is off unless asked for; without it the first
	// snapshot of the restored VM must be full.
	TrackDirty bool
	// NetTap, when set, replaces the saved TAP device name. A fork of a
	// snapshot with virtio-net needs one: two guests cannot share a TAP.
	NetTap string
	// NetTapFile, when set, is the TAP (the saved one, or NetTap) already
	// open, as NetConfig.File.
	NetTapFile *os.File
	// Memory is how guest memory is filled: MemoryAuto (""), MemoryLazy,
	// MemoryOnDemand or MemoryEager.
	Memory string
	// DeviceUID is as Config.DeviceUID.
	DeviceUID int
}

// Restore rebuilds the VM saved in the snapshot directory dir, ready for
// Run to continue it where Snapshot stopped it. The snapshot is read and
// checked first (errors wrap the snapshot package's Err* values); any later
// failure closes everything built so far, so no VM is left behind.
//
// Guest memory is filled lazily where this process can get a userfaultfd
// (mechanism (a) of docs/SNAPSHOTS.md): the guest runs at once, each page
// arrives on its first touch by a vCPU or a device process, and a
// background filler copies the rest; Snapshot waits for the filler. Else,
// or with RestoreConfig.Memory = MemoryEager, the memory file's data is
// copied in before Restore returns (snapshot.Fill).
func Restore(dir string, cfg RestoreConfig) (*Machine, error) {
	t := time.Now()
	st, err := snapshot.Read(dir)
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	if err := restorable(st); err != nil {
		return nil, fmt.Errorf("restore %s: %w", dir, err)
	}
	compat := CompatOff
	if st.Machine.Compat {
		compat = CompatOn
	}
	m := &Machine{
		cfg: Config{
			Cmdline:     st.Machine.Cmdline,
			MemSize:     st.Machine.MemSize,
			CPUs:        st.Machine.CPUs,
			Entry:       st.Machine.Entry,
			Compat:      compat,
			SeccompVCPU: cfg.SeccompVCPU,
			DeviceUID:   cfg.DeviceUID,
			Console:     cfg.Console,
			Log:         cfg.Log,
		},
		log:       cfg.Log,
		restoring: true,
		compat:    st.Machine.Compat,
		cmdline:   st.Machine.Cmdline,
		done:      make(chan struct{}),
	}
	if m.log == nil {
		m.log = slog.Default()
	}
	if m.cfg.Console == nil {
		m.cfg.Console = io.Discard
	}
	m.cond = sync.NewCond(&m.mu)
	if err := deviceConfig(&st.Machine, &m.cfg, cfg.ForkID != ""); err != nil {
		return nil, fmt.Errorf("restore %s: %w", dir, err)
	}
	if cfg.VsockUDS != "" && m.cfg.Vsock != nil {
		m.cfg.Vsock.UDS = cfg.VsockUDS
	}
	if cfg.NetTap != "" {
		if m.cfg.Net == nil {
			return nil, fmt.Errorf("restore %s: a TAP was given but the snapshot has no virtio-net device", dir)
		}
		n := *m.cfg.Net
		n.Tap = cfg.NetTap
		m.cfg.Net = &n
	} else if cfg.ForkID != "" && m.cfg.Net != nil {
		return nil, fmt.Errorf("restore %s: fork %s: the snapshot's guest has virtio-net on TAP %s, which a fork cannot share; give the fork its own TAP (RestoreConfig.NetTap, vmm restore --net-tap)", dir, cfg.ForkID, m.cfg.Net.Tap)
	}
	if cfg.NetTapFile != nil && m.cfg.Net != nil {
		n := *m.cfg.Net
		n.File = cfg.NetTapFile
		m.cfg.Net = &n
	}
	var forkDisks []string
	if cfg.ForkID != "" {
		if forkDisks, err = forkDevices(dir, &st.Machine, &m.cfg, cfg, m); err != nil {
			return nil, fmt.Errorf("restore %s: fork: %w", dir, err)
		}
	}
	removeForkDisks := func() {
		for _, p := range forkDisks {
			os.Remove(p)
		}
	}
	if n := m.cfg.virtioCount(); n > MaxVirtio {
		removeForkDisks()
		return nil, fmt.Errorf("restore %s: %d virtio devices, at most %d fit the interrupt lines", dir, n, MaxVirtio)
	}
	steps := []step{
		{"open /dev/kvm", m.openKVM},
		{"create VM", m.createVM},
		{"allocate guest memory", m.allocateMemory},
		{"fill guest memory from the snapshot", func() error { return m.fillMemory(dir, st, cfg.Memory) }},
		{"create interrupt controllers", m.createIRQChip},
		{"create platform devices", m.createDevices},
		{"start virtio device processes", func() error {
			err := m.startSavedDevices(st.Devices.Virtio)
			if m.uffdDev != nil {
				m.uffdDev.Close()
				m.uffdDev = nil
			}
			return err
		}},
		{"create vCPUs", m.createBareVCPUs},
		{"restore VM state", func() error { return m.restoreVM(&st.VM) }},
		{"restore vCPU state", func() error { return m.restoreVCPUs(st.VCPUs) }},
		{"start dirty page tracking", func() error { return m.trackRestored(dir, cfg.TrackDirty) }},
		{"restore device state", func() error { return m.restoreDevices(&st.Devices) }},
	}
	for _, s := range steps {
		ts := time.Now()
		if err := s.run(); err != nil {
			m.Close()
			removeForkDisks()
			return nil, fmt.Errorf("restore %s: %s: %w", dir, s.name, err)
		}
		m.log.Debug("restore step done", "step", s.name, "took", time.Since(ts))
	}
	m.log.Debug("restored", "dir", dir, "took", time.Since(t))
	return m, nil
}

// restorable refuses what this vmm cannot rebuild yet.
func restorable(st *snapshot.State) error {
	mc := &st.Machine
	var errs []error
	if mc.MemSize < 16<<20 || mc.MemSize%(2<<20) != 0 {
		errs = append(errs, fmt.Errorf("guest memory %d bytes is not a multiple of 2 MiB of at least 16 MiB", mc.MemSize))
	}
	if mc.CPUs < 1 || mc.CPUs > MaxCPUs {
		errs = append(errs, fmt.Errorf("vCPU count %d is outside 1..%d", mc.CPUs, MaxCPUs))
	}
	want := Layout(mc.MemSize)
	same := len(want) == len(st.Memory.Regions)
	for i := 0; same && i < len(want); i++ {
		r := st.Memory.Regions[i]
		same = want[i] == Region{GPA: r.GPA, Size: r.Size, Offset: r.Offset}
	}
	if !same {
		errs = append(errs, fmt.Errorf("memory regions %+v differ from this vmm's layout %+v of %d bytes", st.Memory.Regions, want, mc.MemSize))
	}
	return errors.Join(errs...)
}

// fillMemory copies the snapshot's memory into guest RAM: the memory file
// of a full snapshot, or a diff's chain of bases and diffs.
func (m *Machine) fillMemory(dir string, st *snapshot.State, mode string) error {
	chain, err := snapshot.Layers(dir, st)
	if err != nil {
		return err
	}
	t := time.Now()
	switch mode {
	case "", MemoryAuto, MemoryLazy, MemoryOnDemand:
		p, err := m.lazyMemory(chain, mode != MemoryOnDemand)
		if err == nil {
			m.pager = p
			m.log.Debug("guest memory restored lazily", "layers", len(chain), "mode", mode, "took", time.Since(t))
			return nil
		}
		if mode == MemoryLazy {
			return fmt.Errorf("lazy restore: %w", err)
		}
		m.log.Info("restoring guest memory eagerly", "reason", err)
	case MemoryEager:
	default:
		return fmt.Errorf("memory mode %q is not auto, lazy, ondemand or eager", mode)
	}
	n, err := snapshot.Fill(m.mem.Mapping(), chain)
	if err != nil {
		return err
	}
	m.log.Debug("guest memory filled", "bytes", n, "layers", len(chain), "took", time.Since(t))
	return nil
}

// Restore memory modes (RestoreConfig.Memory).
const (
	MemoryAuto  = "auto"  // lazy where this process can get a userfaultfd, else eager
	MemoryLazy  = "lazy"  // userfaultfd: pages arrive on first touch and from a background filler
	MemoryEager = "eager" // copy every data page before the guest runs
	// MemoryOnDemand is lazy without the background filler: a page
	// arrives only when the guest or a device first touches it, so idle
	// restores of one snapshot hold little memory of their own and share
	// the snapshot's page cache. The snapshot's files must stay for the
	// VM's life; a full snapshot of the VM fills the rest first.
	MemoryOnDemand = "ondemand"
)

// lazyMemory starts a pager, and opens /dev/userfaultfd for the device
// processes that will map guest memory.
func (m *Machine) lazyMemory(chain []snapshot.Layer, fill bool) (*pager.Pager, error) {
	if m.cfg.virtioCount() > len(m.cfg.VhostUserBlk) {
		dev, err := uffd.OpenDevice()
		if err != nil {
			return nil, err
		}
		m.uffdDev = dev
	}
	p, err := pager.New(m.mem.Mapping(), chain, m.log, fill, func(err error) {
		// The page is never copied in: the guest cannot run on.
		m.finish(Exit{Kind: ExitCrash, VCPU: -1, Reason: fmt.Sprintf("snapshot memory: %v; restore from another snapshot or take a new one", err)})
	})
	if err != nil && m.uffdDev != nil {
		m.uffdDev.Close()
		m.uffdDev = nil
	}
	return p, err
}

// trackRestored makes the restored snapshot the base of the VM's next diff
// when track is set.
func (m *Machine) trackRestored(dir string, track bool) error {
	if !track {
		return nil
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if err := m.trackFrom(abs); err != nil {
		m.log.Warn("diff snapshots will not be possible", "err", err)
	}
	return nil
}

// createBareVCPUs creates the vCPUs without configuring them: their whole
// state comes from the snapshot.
func (m *Machine) createBareVCPUs() error {
	for i := 0; i < m.cfg.CPUs; i++ {
		c, err := m.vm.CreateVCPU(i)
		if err != nil {
			return err
		}
		m.vcpus = append(m.vcpus, &vcpu{m: m, id: i, kvm: c})
	}
	return nil
}

func (m *Machine) restoreVM(vm *snapshot.VM) error {
	m.checkHostTSC(vm.Clock)
	// Only the clock value: with KVM_CLOCK_REALTIME set KVM would advance
	// the clock by the host time since the snapshot.
	if err := m.vm.SetClock(&kvm.ClockData{Clock: vm.Clock.Clock}); err != nil {
		return err
	}
	for _, c := range []kvm.IRQChip{vm.PICMaster, vm.PICSlave, vm.IOAPIC} {
		if err := m.vm.SetIRQChip(&c); err != nil {
			return err
		}
	}
	pit := vm.PIT
	return m.vm.SetPIT2(&pit)
}

func (m *Machine) restoreVCPUs(states []snapshot.VCPU) error {
	if len(states) != len(m.vcpus) {
		return fmt.Errorf("%d vCPU states for %d vCPUs", len(states), len(m.vcpus))
	}
	for i, v := range m.vcpus {
		if err := v.restore(&states[i]); err != nil {
			return fmt.Errorf("vCPU %d: %w", v.id, err)
		}
	}
	return nil
}

// msrTSCDeadline is IA32_TSC_DEADLINE (Intel SDM vol. 3, 11.5.4.1).
const msrTSCDeadline = 0x6e0

// restore sets one fresh vCPU's state in the order KVM needs:
//   - the TSC rate and CPUID before anything CPUID gates (MSRs, XSAVE);
//   - sregs before the LAPIC: KVM_SET_SREGS writes CR8 into the TPR, the
//     LAPIC page then brings back TPR and the PPR derived from it;
//   - FPU, then XSAVE: KVM_SET_FPU drops MXCSR, the XSAVE area holds it;
//   - IA32_TSC_DEADLINE again after the LAPIC, since KVM ignores it while
//     the LAPIC timer is not in TSC-deadline mode (as QEMU does);
//   - MP state, then vCPU events last: they hold the pending and injected
//     events the earlier steps must not overwrite.
func (v *vcpu) restore(s *snapshot.VCPU) error {
	c := v.kvm
	if khz, err := c.GetTSCKHz(); err != nil || khz != s.TSCKHz {
		if err := c.SetTSCKHz(s.TSCKHz); err != nil {
			return fmt.Errorf("%w (the snapshot's TSC runs at %d kHz; this host cannot scale to it)", err, s.TSCKHz)
		}
	}
	if err := c.SetCPUID2(s.CPUID); err != nil {
		return err
	}
	sregs, regs := s.Sregs, s.Regs
	if err := c.SetSregs(&sregs); err != nil {
		return err
	}
	if err := c.SetRegs(&regs); err != nil {
		return err
	}
	fpu := s.FPU
	if err := c.SetFPU(&fpu); err != nil {
		return err
	}
	if s.XSave != nil {
		if err := c.SetXSave(s.XSave); err != nil {
			return err
		}
	}
	if s.XCRS != nil {
		x := *s.XCRS
		if err := c.SetXCRS(&x); err != nil {
			return err
		}
	}
	if err := c.SetMSRs(s.MSRs); err != nil {
		return err
	}
	dregs := s.DebugRegs
	dregs.Flags = 0 // KVM_SET_DEBUGREGS refuses any flag
	if err := c.SetDebugRegs(&dregs); err != nil {
		return err
	}
	lapic := s.LAPIC
	if err := c.SetLAPIC(&lapic); err != nil {
		return err
	}
	for _, e := range s.MSRs {
		if e.Index == msrTSCDeadline {
			if err := c.SetMSRs([]kvm.MSREntry{e}); err != nil {
				return err
			}
		}
	}
	mp := s.MPState
	if err := c.SetMPState(&mp); err != nil {
		return err
	}
	ev := s.Events
	return c.SetVCPUEvents(&ev)
}

func (m *Machine) restoreDevices(d *snapshot.Devices) error {
	m.serial.SetState(d.Serial)
	m.i8042.SetState(d.I8042)
	return m.restoreVirtio(d.Virtio)
}

// checkHostTSC warns when the host's TSC is behind the one the snapshot
// was taken at (the host rebooted, or this is another host). Where the
// guest reads the host's TSC unchanged (nested page-table-based KVM, where
// a restored IA32_TSC does not take), its clocksource would then run
// backwards and its time stand still until the TSC catches up.
func (m *Machine) checkHostTSC(saved kvm.ClockData) {
	if saved.Flags&kvm.ClockHostTSC == 0 {
		return
	}
	now, err := m.vm.GetClock()
	if err != nil || now.Flags&kvm.ClockHostTSC == 0 || now.HostTSC >= saved.HostTSC {
		return
	}
	m.log.Warn("the host's TSC is behind the snapshot's (host rebooted since, or another host): a guest that reads the host TSC sees time stand still until it catches up; restore it on the host it was taken on, or boot anew",
		"snapshot_host_tsc", saved.HostTSC, "host_tsc", now.HostTSC)
}
