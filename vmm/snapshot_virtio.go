package vmm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"

	"github.com/sietch-vm/sietch/snapshot"
	"github.com/sietch-vm/sietch/virtio"
)

// holdRings stops every running ring of the paused VM's virtio devices
// and returns the devices' state. GET_VRING_BASE returns only once the
// device process no longer touches the ring or guest memory, so what is
// captured afterwards matches the saved positions, and chains the guest
// posted but the device had not taken stay in the ring for the restored
// VM. The rings stay stopped until Resume, so that a VM stopped after its
// snapshot does not move its disks on.
func (m *Machine) holdRings() ([]snapshot.Virtio, error) {
	states := make([]snapshot.Virtio, len(m.vdevs))
	for i, d := range m.vdevs {
		var err error
		if states[i], err = d.holdRings(); err != nil {
			return nil, fmt.Errorf("device %s: %w", d.name, err)
		}
	}
	return states, nil
}

func (d *vhostDevice) holdRings() (snapshot.Virtio, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	ts := d.transport.State()
	v := snapshot.Virtio{Name: d.name, Kind: d.kind.String(), Transport: ts, Queues: make([]virtio.QueueState, len(ts.Queues))}
	if d.held == nil {
		d.held = map[int]uint16{}
	}
	for i, on := range d.started {
		if !on {
			continue
		}
		base, err := d.fe.GetVringBase(i)
		if err != nil {
			return v, fmt.Errorf("stop queue %d for the snapshot (has its process died?): %w", i, err)
		}
		d.started[i] = false
		d.held[i] = base
	}
	for i, base := range d.held {
		if i >= len(v.Queues) {
			continue
		}
		// Every chain the device took is in the used ring now; its index
		// is in guest memory (virtio 1.2 §2.7.8).
		used, err := d.m.guestU16(ts.Queues[i].Used + 2)
		if err != nil {
			return v, fmt.Errorf("queue %d: %w", i, err)
		}
		v.Queues[i] = virtio.QueueState{NextAvail: base, NextUsed: used}
	}
	return v, nil
}

// releaseRings restarts the rings holdRings stopped, where they stopped.
func (m *Machine) releaseRings() {
	for _, d := range m.vdevs {
		if err := d.releaseRings(); err != nil {
			d.failed(fmt.Sprintf("restart its queues after a snapshot: %v", err))
		}
	}
}

func (d *vhostDevice) releaseRings() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	held := d.held
	d.held = nil
	if len(held) == 0 {
		return nil
	}
	_, queues, ok := d.transport.Active()
	if !ok {
		return nil // the device needs a reset; the driver starts it anew
	}
	for i, base := range held {
		if i >= len(queues) {
			continue
		}
		if err := d.startRing(i, queues[i], base); err != nil {
			return err
		}
	}
	return nil
}

// guestU16 reads a little-endian uint16 at guest-physical gpa.
func (m *Machine) guestU16(gpa uint64) (uint16, error) {
	b, err := m.mem.Slice(gpa, 2)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint16(b), nil
}

// recordDevices puts the device configuration into the snapshot dir:
// restore starts the same devices and refuses a disk whose content moved
// on; forks start from the disk clones written next to the state file.
func (m *Machine) recordDevices(dir string, mc *snapshot.Machine) error {
	for _, d := range m.cfg.Disks {
		id, sum, err := hashDisk(d.Path)
		if err != nil {
			return err
		}
		mc.Disks = append(mc.Disks, snapshot.Disk{Path: d.Path, ReadOnly: d.ReadOnly, Size: id.Size, SHA256: sum, FileID: &id})
	}
	if err := m.cloneDisks(dir, mc.Disks); err != nil {
		return err
	}
	mc.VhostUserBlk = append([]string(nil), m.cfg.VhostUserBlk...)
	if n := m.cfg.Net; n != nil {
		mc.Net = &snapshot.Net{Tap: n.Tap, MAC: n.MAC.String()}
	}
	if v := m.cfg.Vsock; v != nil {
		mc.Vsock = &snapshot.Vsock{CID: v.CID, UDS: v.UDS}
	}
	mc.RNG = m.cfg.RNG
	return nil
}

// deviceConfig rebuilds the device part of Config from a snapshot. Each
// disk must still hold what it held at snapshot time, except the writable
// disks of a fork, which gets copies of their clones instead (see
// forkDevices).
func deviceConfig(mc *snapshot.Machine, cfg *Config, fork bool) error {
	var errs []error
	for _, d := range mc.Disks {
		cfg.Disks = append(cfg.Disks, DiskConfig{Path: d.Path, ReadOnly: d.ReadOnly})
		if fork && d.Clone != "" && !d.ReadOnly {
			continue
		}
		if err := checkDisk(d); err != nil {
			errs = append(errs, err)
		}
	}
	cfg.VhostUserBlk = append([]string(nil), mc.VhostUserBlk...)
	if n := mc.Net; n != nil {
		mac, err := net.ParseMAC(n.MAC)
		if err != nil {
			errs = append(errs, fmt.Errorf("net MAC address in the snapshot: %w", err))
		}
		cfg.Net = &NetConfig{Tap: n.Tap, MAC: mac}
	}
	if v := mc.Vsock; v != nil {
		cfg.Vsock = &VsockConfig{CID: v.CID, UDS: v.UDS}
	}
	cfg.RNG = mc.RNG
	return errors.Join(errs...)
}

// startSavedDevices starts the snapshot's device processes. The snapshot's
// command line already declares their transports, so the parameters
// startDevices returns are not used.
func (m *Machine) startSavedDevices(saved []snapshot.Virtio) error {
	if _, err := m.startDevices(); err != nil {
		return err
	}
	if len(saved) != len(m.vdevs) {
		return fmt.Errorf("the snapshot has state for %d virtio devices, its configuration makes %d", len(saved), len(m.vdevs))
	}
	for i, d := range m.vdevs {
		if saved[i].Name != d.name || saved[i].Kind != d.kind.String() {
			return fmt.Errorf("virtio slot %d holds %s (%s) in the snapshot, %s (%s) here", i, saved[i].Name, saved[i].Kind, d.name, d.kind)
		}
	}
	return nil
}

// restoreVirtio sets each transport's registers and starts the devices the
// driver had started, each ring at its saved position.
func (m *Machine) restoreVirtio(saved []snapshot.Virtio) error {
	for i, d := range m.vdevs {
		s := &saved[i]
		if err := d.transport.SetState(s.Transport); err != nil {
			return fmt.Errorf("device %s: %w", d.name, err)
		}
		if len(s.Queues) != len(s.Transport.Queues) {
			return fmt.Errorf("device %s: %d queue positions for %d queues", d.name, len(s.Queues), len(s.Transport.Queues))
		}
		features, queues, ok := d.transport.Active()
		if !ok {
			continue
		}
		bases := make([]uint16, len(s.Queues))
		for q := range s.Queues {
			bases[q] = s.Queues[q].NextAvail
		}
		if err := d.activate(features, queues, bases); err != nil {
			return fmt.Errorf("device %s: restart it: %w", d.name, err)
		}
	}
	return nil
}
