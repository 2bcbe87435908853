package vmm

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/sietch-vm/sietch/devproc"
	"github.com/sietch-vm/sietch/kvm"
	"github.com/sietch-vm/sietch/uffd"
	"github.com/sietch-vm/sietch/virtio"
	"github.com/sietch-vm/sietch/virtio/vhostuser"
	"github.com/sietch-vm/sietch/vmm/pager"
)

// Guest-physical placement of virtio-mmio transports: slot i at
// VirtioBase + i*VirtioStride on IOAPIC pin VirtioIRQBase+i (edge, as the MP
// table declares pins 5..23; COM1 has 4).
const (
	VirtioBase    = 0xc0000000
	VirtioStride  = 0x1000
	VirtioIRQBase = 5
	MaxVirtio     = 23 - VirtioIRQBase + 1
)

// vhostDevice is the vmm's side of one device process: the virtio-mmio
// transport the guest sees, and a vhost-user frontend that forwards queue
// set-up to the process. Queue kicks go guest → KVM ioeventfd → process;
// interrupts go process → irqfd → guest; the vmm only sees configuration.
type vhostDevice struct {
	name      string
	kind      devproc.Kind
	id        uint32
	numQueues int
	maxQueue  uint16
	base      uint64
	irq       uint32

	m         *Machine
	log       *slog.Logger
	fe        *vhostuser.Frontend
	features  uint64 // device features as offered, without PROTOCOL_FEATURES
	protocol  bool   // PROTOCOL_FEATURES negotiated: rings need SET_VRING_ENABLE
	canLog    bool   // LOG_SHMFD and VHOST_F_LOG_ALL offered: diff snapshots work
	transport *virtio.MMIO
	config    *vhostuser.ConfigCache // the device's config space, read at set-up
	kicks     []*vhostuser.EventFD
	call      *vhostuser.EventFD

	mu      sync.Mutex
	started []bool
	held    map[int]uint16 // rings a snapshot stopped, at their next available index
	acked   uint64         // features the driver acked at activation; 0 before
	logging bool           // the device logs its writes (dirty tracking is on)
	uffdFD  int            // the device's userfaultfd (postcopy); -1 or 0 when none
}

// protocolFeaturesWanted are the vhost-user protocol features the frontend
// uses: acknowledged messages, and config space access.
const protocolFeaturesWanted = vhostuser.ProtocolReplyAck | vhostuser.ProtocolConfig | vhostuser.ProtocolLogSHMFD

// attach negotiates with the device process behind fe and puts the
// transport on the MMIO bus with its ioeventfds and irqfd registered.
func (d *vhostDevice) attach() error {
	if err := d.negotiate(); err != nil {
		return err
	}
	d.started = make([]bool, d.numQueues)
	var err error
	if d.call, err = vhostuser.NewEventFD(); err != nil {
		return err
	}
	if err := d.m.vm.IRQFD(&kvm.IRQFD{FD: uint32(d.call.Fd()), GSI: d.irq}); err != nil {
		return fmt.Errorf("irqfd for IRQ %d: %w", d.irq, err)
	}
	for i := 0; i < d.numQueues; i++ {
		k, err := vhostuser.NewEventFD()
		if err != nil {
			return err
		}
		d.kicks = append(d.kicks, k)
		if err := d.m.vm.IOEventFD(&kvm.IOEventFD{
			Addr: d.base + virtio.MMIOQueueNotify, Len: 4, Datamatch: uint64(i),
			FD: int32(k.Fd()), Flags: kvm.IOEventFDFlagDatamatch,
		}); err != nil {
			return fmt.Errorf("ioeventfd for queue %d: %w", i, err)
		}
	}
	d.transport = virtio.NewMMIO(d, d.signalConfig, d.log, virtio.WithExternalInterrupts())
	return d.m.mmio.Insert(d.base, VirtioStride, d.name, d.transport)
}

// negotiate sets up the vhost-user session with the device process:
// features, protocol features, postcopy for lazily restored memory, and
// the copy of its config space.
func (d *vhostDevice) negotiate() error {
	if err := d.fe.SetOwner(); err != nil {
		return err
	}
	f, err := d.fe.GetFeatures()
	if err != nil {
		return err
	}
	if f&virtio.FeatureVersion1 == 0 {
		return fmt.Errorf("device process offers no VIRTIO_F_VERSION_1 (features %#x)", f)
	}
	d.config = &vhostuser.ConfigCache{} // no config space, unless CONFIG is negotiated
	if f&vhostuser.FeatureProtocolFeatures != 0 {
		pf, err := d.fe.GetProtocolFeatures()
		if err != nil {
			return err
		}
		want := protocolFeaturesWanted
		if d.m.pager != nil {
			want |= vhostuser.ProtocolPagefault
		}
		if err := d.fe.SetProtocolFeatures(pf & want); err != nil {
			return err
		}
		d.protocol = true
		if pf&want&vhostuser.ProtocolConfig != 0 {
			// Guest config reads are vCPU exits: they are answered from
			// this copy, not by a round trip to the device process.
			if d.config, err = vhostuser.LoadConfig(d.fe); err != nil {
				return err
			}
		}
		d.canLog = pf&vhostuser.ProtocolLogSHMFD != 0 && f&vhostuser.FeatureLogAll != 0
		if pf&want&vhostuser.ProtocolPagefault != 0 {
			// Lazily restored memory: the device registers its mapping
			// with its own userfaultfd, which the vmm's pager serves.
			fd, err := d.fe.PostcopyAdvise()
			if err != nil {
				return err
			}
			d.uffdFD = fd
			if err := d.fe.PostcopyListen(); err != nil {
				return err
			}
		}
	}
	// VHOST_F_LOG_ALL is vhost-user's, not the guest's.
	d.features = f &^ (vhostuser.FeatureProtocolFeatures | vhostuser.FeatureLogAll)
	return nil
}

// signalConfig raises the device's interrupt for a config change.
func (d *vhostDevice) signalConfig() {
	if err := d.call.Signal(); err != nil {
		d.log.Warn("raise device interrupt", "err", err)
	}
}

// failed is called when the device process is gone: the guest sees
// DEVICE_NEEDS_RESET and keeps running.
func (d *vhostDevice) failed(reason string) {
	d.log.Error("device process failed; the guest sees DEVICE_NEEDS_RESET", "reason", reason)
	d.transport.NeedsReset(reason)
}

func (d *vhostDevice) close() {
	if d.fe != nil {
		d.fe.Close()
	}
	if d.uffdFD > 0 {
		uffd.FromFD(d.uffdFD).Close()
		d.uffdFD = 0
	}
	for _, k := range d.kicks {
		k.Close()
	}
	if d.call != nil {
		d.call.Close()
	}
}

// virtio.Device, called by the transport on vCPU threads.

func (d *vhostDevice) DeviceID() uint32 { return d.id }
func (d *vhostDevice) Features() uint64 { return d.features }

func (d *vhostDevice) QueueMaxSizes() []uint16 {
	s := make([]uint16, d.numQueues)
	for i := range s {
		s[i] = d.maxQueue
	}
	return s
}

func (d *vhostDevice) ReadConfig(off uint64, data []byte) { d.config.Read(off, data) }

func (d *vhostDevice) WriteConfig(off uint64, data []byte) {
	if off > 0xff || uint64(len(data)) > 0x100-off {
		return
	}
	if err := d.config.Write(uint32(off), data); err != nil {
		d.log.Warn("write device config", "offset", off, "err", err)
	}
}

// RefreshConfig reads the device's config space again; the transport calls
// it when it raises a configuration change interrupt (virtio.ConfigRefresher).
// The device process has no way to report a change itself: that would be
// the back-end's request channel (VHOST_USER_BACKEND_REQ, CONFIG_CHANGE_MSG),
// which neither end speaks yet.
func (d *vhostDevice) RefreshConfig() {
	if err := d.config.Refresh(); err != nil {
		d.log.Warn("read device config again", "err", err)
	}
}

// Activate hands the negotiated features, guest memory and each ready queue
// to the device process (DRIVER_OK).
func (d *vhostDevice) Activate(features uint64, queues []virtio.QueueConfig) error {
	return d.activate(features, queues, nil)
}

// activate is Activate with each queue resuming at bases[i] (a restored
// snapshot) rather than at 0; bases may be nil or shorter than queues.
func (d *vhostDevice) activate(features uint64, queues []virtio.QueueConfig, bases []uint16) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.fe.SetFeatures(d.wireFeatures(features)); err != nil {
		return err
	}
	d.acked = features
	mem := d.m.mem
	var regions []vhostuser.MemoryRegion
	var fds []int
	for _, r := range mem.Regions() {
		regions = append(regions, vhostuser.MemoryRegion{
			GuestPhysAddr: r.GPA, MemorySize: r.Size,
			UserspaceAddr: hostAddr(mem.Mapping()[r.Offset:]), MmapOffset: r.Offset,
		})
		fds = append(fds, mem.FD())
	}
	if err := d.setMemTable(regions, fds); err != nil {
		return err
	}
	for i, q := range queues {
		if q.Size == 0 || i >= d.numQueues {
			continue
		}
		var base uint16
		if i < len(bases) {
			base = bases[i]
		}
		if err := d.startRing(i, q, base); err != nil {
			return err
		}
	}
	return nil
}

// setMemTable shares guest memory with the device process. While memory
// is restored lazily, a device with a userfaultfd gets its faults served
// by the pager; one without must wait until every page is in.
func (d *vhostDevice) setMemTable(regions []vhostuser.MemoryRegion, fds []int) error {
	p := d.m.pager
	if p == nil {
		return d.fe.SetMemTable(regions, fds)
	}
	if d.uffdFD <= 0 {
		d.log.Info("device cannot take lazily restored memory; waiting for every page to be in")
		p.FillAll()
		p.Wait()
		return d.fe.SetMemTable(regions, fds)
	}
	theirs, err := d.fe.SetMemTablePostcopy(regions, fds)
	if err != nil {
		return err
	}
	// The reply may differ from our table only in the device's addresses:
	// the pager trusts its offsets and sizes to find pages.
	for i, r := range theirs {
		if r.GuestPhysAddr != regions[i].GuestPhysAddr || r.MemorySize != regions[i].MemorySize || r.MmapOffset != regions[i].MmapOffset {
			return fmt.Errorf("postcopy SET_MEM_TABLE reply region %d is %+v, we sent %+v", i, r, regions[i])
		}
	}
	u := uffd.FromFD(d.uffdFD)
	d.uffdFD = 0
	if !p.AddDevice(&pager.Device{Name: d.name, FD: u, Regions: theirs, End: d.fe.PostcopyEnd}) {
		u.Close()
		return d.fe.PostcopyEnd()
	}
	return nil
}

// startRing sets up queue i in the device process and starts it at the
// available index base. Called with d.mu held, after SET_MEM_TABLE.
func (d *vhostDevice) startRing(i int, q virtio.QueueConfig, base uint16) error {
	desc, err1 := d.hostVA(q.Desc)
	avail, err2 := d.hostVA(q.Avail)
	used, err3 := d.hostVA(q.Used)
	if err := errors.Join(err1, err2, err3); err != nil {
		return fmt.Errorf("queue %d: %w", i, err)
	}
	// Marked before the first message: a set-up the device refused half
	// way leaves state in the device process (its kick and call, the
	// rejected addresses) that Reset must clear with GET_VRING_BASE, or
	// the next set-up of this queue trips over it.
	d.started[i] = true
	return d.fe.SetupVring(i, vhostuser.VringSetup{
		Size: q.Size, Base: base,
		Addr: vhostuser.VringAddr{Desc: desc, Avail: avail, Used: used},
		Kick: d.kicks[i].Fd(), Call: d.call.Fd(), Enable: d.protocol,
	})
}

// hostVA translates a guest-physical ring address to this process's
// virtual address: vhost-user ring addresses are frontend addresses.
func (d *vhostDevice) hostVA(gpa uint64) (uint64, error) {
	for _, r := range d.m.mem.Regions() {
		if gpa >= r.GPA && gpa-r.GPA < r.Size {
			return hostAddr(d.m.mem.Mapping()[r.Offset:]) + gpa - r.GPA, nil
		}
	}
	return 0, fmt.Errorf("ring address %#x is not in guest RAM", gpa)
}

// Reset stops every ring whose set-up began (GET_VRING_BASE stops a
// vhost-user ring and drops its kick and call).
func (d *vhostDevice) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, on := range d.started {
		if !on {
			continue
		}
		if _, err := d.fe.GetVringBase(i); err != nil {
			d.log.Warn("stop ring on reset", "queue", i, "err", err)
		}
		d.started[i] = false
	}
}
