package vmm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sietch-vm/sietch/boot"
	"github.com/sietch-vm/sietch/devices"
	"github.com/sietch-vm/sietch/devproc"
	"github.com/sietch-vm/sietch/kvm"
	"github.com/sietch-vm/sietch/vmm/pager"
)

// Machine is one VM and everything the vmm process owns for it.
type Machine struct {
	cfg Config
	log *slog.Logger

	sys    *kvm.System
	vm     *kvm.VM
	mem    *Memory
	pio    *devices.Bus
	mmio   *devices.Bus
	serial *devices.Serial
	i8042  *devices.I8042
	vcpus  []*vcpu
	vdevs  []*vhostDevice // virtio devices, the vmm's side of each (virtio.go)
	procs  []*devproc.Process

	vsockPath string // the vsock host socket we bound, removed on Close

	restoring bool          // built by Restore: devices resume a saved guest
	pager     *pager.Pager  // lazily restored memory; nil when filled eagerly
	uffdDev   *os.File      // /dev/userfaultfd for device processes, while they start
	dirty     *dirtyTracker // nil until the first snapshot or a restore
	lastSnap  string        // absolute path of the snapshot a diff is based on

	compat  bool
	cmdline string
	loaded  *boot.Loaded

	mu     sync.Mutex
	cond   *sync.Cond // signalled on every state change and park
	state  vmState    // changed only by moveLocked (state.go)
	parked int        // vCPUs parked or finished
	// halt mirrors state.halts() for the vCPU exit path, which checks it
	// after every exit without taking mu.
	halt  atomic.Bool
	exit  *Exit
	runAt time.Time // when Run started (the control socket's uptime)
	// console wraps Config.Console of a booted VM to tell whether the guest
	// has printed anything (watchQuiet); nil for a restored VM.
	console *consoleWatch
	done    chan struct{} // closed when the first Exit is recorded
	wg      sync.WaitGroup
}

// step is one named stage of start-up. Steps run in order; the first error
// aborts start-up and names the step. No step changes the kernel command
// line: one that adds to it returns its parameters (see adding), and the
// boot path composes the command line from them when it loads the kernel.
type step struct {
	name string
	run  func() error
}

// adding makes a step of f, a stage that adds kernel command line
// parameters, which it appends to *params.
func adding(params *[]string, f func() ([]string, error)) func() error {
	return func() error {
		p, err := f()
		*params = append(*params, p...)
		return err
	}
}

// New builds a VM ready to run: it opens KVM, creates the VM, its memory, its
// devices and vCPUs, and loads the kernel. Nothing guest-visible runs yet.
func New(cfg Config) (*Machine, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("invalid VM configuration: %w", err)
	}
	m := &Machine{cfg: cfg, log: cfg.Log, done: make(chan struct{})}
	if m.log == nil {
		m.log = slog.Default()
	}
	if m.cfg.Console == nil {
		m.cfg.Console = io.Discard
	}
	m.console = &consoleWatch{w: m.cfg.Console}
	m.cfg.Console = m.console
	m.cond = sync.NewCond(&m.mu)
	var params []string // what the steps add to the user's command line, in order
	steps := []step{
		{"open /dev/kvm", m.openKVM},
		{"decide host profile", m.decideProfile},
		{"create VM", m.createVM},
		{"allocate guest memory", m.allocateMemory},
		{"create interrupt controllers", m.createIRQChip},
		{"create platform devices", m.createDevices},
		{"start virtio device processes", adding(&params, m.startDevices)},
		{"create vCPUs", m.createVCPUs},
		{"tell the guest its TSC rate", adding(&params, m.tscParams)},
		{"load kernel", func() error { return m.loadKernel(buildCmdline(m.cfg.Cmdline, m.compat, params...)) }},
		{"set boot registers", m.setBootRegisters},
	}
	for _, s := range steps {
		t := time.Now()
		if err := s.run(); err != nil {
			m.Close()
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		m.log.Debug("start-up step done", "step", s.name, "took", time.Since(t))
	}
	return m, nil
}

func (m *Machine) openKVM() (err error) {
	m.sys, err = kvm.Open()
	if err != nil {
		return err
	}
	v, err := m.sys.APIVersion()
	if err != nil {
		return err
	}
	if v != kvm.StableAPIVersion {
		return fmt.Errorf("KVM API version %d, want %d", v, kvm.StableAPIVersion)
	}
	return checkCaps(m.sys)
}

func (m *Machine) decideProfile() error {
	switch m.cfg.Compat {
	case CompatOn:
		m.compat = true
	case CompatOff:
		m.compat = false
	default:
		emulated, err := KernelModeEmulated(m.sys)
		if err != nil {
			return err
		}
		m.compat = emulated
		if emulated {
			m.log.Info("this host's KVM emulates guest kernel mode; applying the compatibility profile (see `vmm check`)")
		}
	}
	return nil
}

func (m *Machine) createVM() (err error) {
	if m.vm, err = m.sys.CreateVM(); err != nil {
		return err
	}
	if err := m.vm.SetTSSAddr(boot.TSSAddr); err != nil {
		return err
	}
	return m.vm.SetIdentityMapAddr(boot.IdentityMapAddr)
}

// createIRQChip creates the in-kernel PIC, IOAPIC, LAPICs and PIT. It runs
// after guest RAM is registered: on some hosts adding a memory slot to a VM
// that already has an irqchip costs milliseconds.
func (m *Machine) createIRQChip() error {
	if err := m.vm.CreateIRQChip(); err != nil {
		return err
	}
	return m.vm.CreatePIT2()
}

func (m *Machine) allocateMemory() (err error) {
	if m.mem, err = NewMemory(m.cfg.MemSize); err != nil {
		return err
	}
	for i, r := range m.mem.Regions() {
		region := &kvm.UserspaceMemoryRegion{
			Slot:          uint32(i),
			GuestPhysAddr: r.GPA,
			MemorySize:    r.Size,
			UserspaceAddr: hostAddr(m.mem.Mapping()[r.Offset:]),
		}
		if err := m.vm.SetUserMemoryRegion(region); err != nil {
			return fmt.Errorf("register guest RAM slot %d at %#x: %w", i, r.GPA, err)
		}
	}
	return nil
}

func (m *Machine) createDevices() error {
	m.pio = devices.NewBus("pio")
	m.mmio = devices.NewBus("mmio")
	m.serial = devices.NewSerial(m.cfg.Console, func() { m.pulseIRQ(devices.COM1IRQ) })
	power := devices.NewPower(func(ev devices.PowerEvent) {
		if ev == devices.PowerReset {
			m.finish(Exit{Kind: ExitReset, VCPU: -1, Reason: "guest wrote the reset value to the power port"})
			return
		}
		m.finish(Exit{Kind: ExitPowerOff, VCPU: -1, Reason: "guest powered off"})
	})
	m.i8042 = devices.NewI8042(func() {
		m.finish(Exit{Kind: ExitReset, VCPU: -1, Reason: "guest pulsed the reset line through the i8042 keyboard controller"})
	})
	return errors.Join(
		m.pio.Insert(devices.COM1Base, devices.SerialSize, "serial (COM1)", m.serial),
		m.pio.Insert(devices.I8042Base, devices.I8042Size, "i8042", m.i8042),
		m.pio.Insert(devices.PowerPort, devices.PowerSize, "power", power),
		m.pio.Insert(devices.RTCBase, devices.RTCSize, "rtc", devices.NewRTC(nil)),
	)
}

// pulseIRQ raises and lowers an ISA interrupt line: an edge for the IOAPIC/PIC.
func (m *Machine) pulseIRQ(irq uint32) {
	if err := m.vm.IRQLine(irq, 1); err != nil {
		m.log.Warn("raise interrupt line", "irq", irq, "err", err)
		return
	}
	if err := m.vm.IRQLine(irq, 0); err != nil {
		m.log.Warn("lower interrupt line", "irq", irq, "err", err)
	}
}

// tscParams are the command line parameters that, under the compatibility
// profile, tell the guest the TSC rate instead of letting it calibrate
// against the PIT in emulated kernel mode (slow, and it fails here: the
// kernel then distrusts the TSC and falls back to jiffies). lpj assumes the
// project kernel's HZ=100. None when the rate is unknown.
func (m *Machine) tscParams() ([]string, error) {
	if !m.compat {
		return nil, nil
	}
	khz, err := m.vcpus[0].kvm.GetTSCKHz()
	if err != nil || khz == 0 {
		return nil, nil
	}
	return []string{fmt.Sprintf("tsc_early_khz=%d", khz), fmt.Sprintf("lpj=%d", uint64(khz)*1000/projectKernelHZ)}, nil
}

// loadKernel loads the kernel and initrd with cmdline, the command line
// the guest gets.
func (m *Machine) loadKernel(cmdline string) error {
	m.cmdline = cmdline
	img, err := boot.ParseImage(m.cfg.Kernel)
	if err != nil {
		return err
	}
	m.loaded, err = boot.Load(m.mem.Low(), m.cfg.Kernel, img, boot.Params{
		Cmdline: m.cmdline,
		Initrd:  m.cfg.Initrd,
		MemSize: m.cfg.MemSize,
		CPUs:    m.cfg.CPUs,
		Entry:   m.cfg.Entry,
	})
	return err
}

// projectKernelHZ is CONFIG_HZ of the project kernel (guest-init/kernel/config).
const projectKernelHZ = 100

func (m *Machine) setBootRegisters() error {
	return m.vcpus[0].setBootRegisters()
}

func (m *Machine) createVCPUs() error {
	supported, err := m.sys.SupportedCPUID()
	if err != nil {
		return err
	}
	for i := 0; i < m.cfg.CPUs; i++ {
		c, err := m.vm.CreateVCPU(i)
		if err != nil {
			return err
		}
		v := &vcpu{m: m, id: i, kvm: c}
		m.vcpus = append(m.vcpus, v)
		if err := v.configure(supported); err != nil {
			return fmt.Errorf("vCPU %d: %w", i, err)
		}
	}
	return nil
}

// Cmdline is the kernel command line the guest gets (the user's plus what
// the platform and the compatibility profile add).
func (m *Machine) Cmdline() string { return m.cmdline }

// Compat reports whether the compatibility profile is applied.
func (m *Machine) Compat() bool { return m.compat }

// Memory is the guest's RAM.
func (m *Machine) Memory() *Memory { return m.mem }

// Serial is the guest's console UART (for host input).
func (m *Machine) Serial() *devices.Serial { return m.serial }

// Run starts every vCPU and blocks until the guest powers off, resets or
// crashes, Stop is called, or ctx is cancelled (which stops the VM).
func (m *Machine) Run(ctx context.Context) (Exit, error) {
	m.mu.Lock()
	to := stateRunning
	if m.state == stateHeld {
		to = statePaused // a snapshot holds it: the vCPUs park at once
	}
	if m.state == stateStopped && m.runAt.IsZero() && m.exit != nil {
		// Stopped before it ran (Stop, or its restored memory found
		// corrupt): that is how it ended.
		e := *m.exit
		m.mu.Unlock()
		return e, nil
	}
	if m.state != stateCreated && m.state != stateHeld {
		m.mu.Unlock()
		return Exit{}, fmt.Errorf("run: the VM is %s; a Machine runs once: build a new one", m.state)
	}
	m.moveLocked(to)
	m.runAt = time.Now()
	m.mu.Unlock()
	for _, v := range m.vcpus {
		m.wg.Add(1)
		go v.loop()
	}
	go m.watchQuiet()
	select {
	case <-m.done:
	case <-ctx.Done():
		m.finish(Exit{Kind: ExitStopped, VCPU: -1, Reason: fmt.Sprintf("context: %v", context.Cause(ctx))})
	}
	m.wg.Wait()
	m.mu.Lock()
	defer m.mu.Unlock()
	return *m.exit, nil
}

// Stop ends the VM: vCPUs leave KVM_RUN promptly and Run returns ExitStopped
// (unless the guest had already ended it).
func (m *Machine) Stop(reason string) {
	m.finish(Exit{Kind: ExitStopped, VCPU: -1, Reason: reason})
}

// finish records the first exit and tells every vCPU to return.
func (m *Machine) finish(e Exit) {
	m.mu.Lock()
	if m.exit == nil {
		m.exit = &e
		close(m.done)
	}
	if !m.state.ended() {
		m.moveLocked(stateStopped)
	}
	m.mu.Unlock()
	m.kickAll()
}

// Pause parks every vCPU outside KVM_RUN and returns once all are parked.
func (m *Machine) Pause() error {
	m.mu.Lock()
	if m.state != stateRunning && m.state != statePaused {
		m.mu.Unlock()
		return fmt.Errorf("pause: the VM is %s, not running", m.state)
	}
	m.moveLocked(statePaused)
	m.mu.Unlock()
	m.kickAll()
	m.mu.Lock()
	defer m.mu.Unlock()
	for m.parked < len(m.vcpus) && !m.state.ended() {
		m.cond.Wait()
	}
	if m.state.ended() {
		return errors.New("pause: the VM stopped while pausing")
	}
	return nil
}

// Resume lets parked vCPUs run again.
func (m *Machine) Resume() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	to := stateRunning
	switch m.state {
	case statePaused:
	case stateHeld:
		to = stateCreated // released before it ever ran
	default:
		return fmt.Errorf("resume: the VM is %s, not paused", m.state)
	}
	// Rings a snapshot stopped run again before the vCPUs do.
	m.releaseRings()
	return m.moveLocked(to)
}

func (m *Machine) kickAll() {
	for _, v := range m.vcpus {
		v.kick()
	}
}

// Close releases everything New created. Call it after Run returns.
func (m *Machine) Close() error {
	m.mu.Lock()
	if !m.state.ended() {
		m.moveLocked(stateStopped) // a Machine never run
	}
	m.moveLocked(stateClosed)
	m.mu.Unlock()
	var errs []error
	if m.pager != nil {
		m.pager.Release()
	}
	devproc.StopAll(m.procs)
	m.procs = nil
	for _, d := range m.vdevs {
		d.close()
	}
	m.vdevs = nil
	if m.dirty != nil {
		m.dirty.close()
		m.dirty = nil
	}
	if m.vsockPath != "" {
		os.Remove(m.vsockPath)
		m.vsockPath = ""
	}
	if m.serial != nil {
		errs = append(errs, m.serial.Close())
	}
	for _, v := range m.vcpus {
		errs = append(errs, v.kvm.Close())
	}
	m.vcpus = nil
	if m.vm != nil {
		errs = append(errs, m.vm.Close())
		m.vm = nil
	}
	if m.mem != nil {
		errs = append(errs, m.mem.Close())
		m.mem = nil
	}
	if m.sys != nil {
		errs = append(errs, m.sys.Close())
		m.sys = nil
	}
	return errors.Join(errs...)
}

// buildCmdline composes the guest's command line: the user's, then what the
// platform needs (the power-off port), on an emulated-kernel-mode host the
// compatibility profile's parameters, and last the params start-up steps
// added.
func buildCmdline(user string, compat bool, params ...string) string {
	parts := []string{strings.TrimSpace(user), fmt.Sprintf("sietch.poweroff=%#x", devices.PowerPort)}
	if compat {
		parts = append(parts, compatCmdline...)
	}
	parts = append(parts, params...)
	return strings.TrimSpace(strings.Join(parts, " "))
}
