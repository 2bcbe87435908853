package vmm

import (
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/sietch-vm/sietch/devproc"
	"github.com/sietch-vm/sietch/virtio"
	"github.com/sietch-vm/sietch/virtio/net/tap"
	"github.com/sietch-vm/sietch/virtio/vhostuser"
)

// defaultQueueSize is the size of every queue of our device processes;
// their counts are devproc's table's.
const defaultQueueSize = 256

// startDevices starts one process per virtio device and wires each to a
// virtio-mmio transport. It returns the kernel command line parameters that
// announce the transports (virtio_mmio.device=…), in slot order.
func (m *Machine) startDevices() ([]string, error) {
	var params []string
	type plan struct {
		args     devproc.Args // args.Kind says what it is, args.Name which one
		fds      map[devproc.FD]*os.File
		after    func() // runs once the process started
		external string // vhost-user socket of a back-end we do not start
	}
	var plans []plan
	defer func() {
		for _, p := range plans {
			for _, f := range p.fds {
				f.Close() // the child has its copies
			}
		}
	}()
	for i, d := range m.cfg.Disks {
		flags := os.O_RDWR
		if d.ReadOnly {
			flags = os.O_RDONLY
		}
		f, err := os.OpenFile(d.Path, flags, 0)
		if err != nil {
			return nil, fmt.Errorf("open disk image: %w", err)
		}
		name := fmt.Sprintf("blk%d", i)
		plans = append(plans, plan{args: devproc.Args{Kind: devproc.Blk, Name: name, Serial: name, ReadOnly: d.ReadOnly},
			fds: map[devproc.FD]*os.File{devproc.FDDisk: f}})
	}
	for i, path := range m.cfg.VhostUserBlk {
		plans = append(plans, plan{args: devproc.Args{Kind: devproc.VhostUserBlk, Name: fmt.Sprintf("vublk%d", i)}, external: path})
	}
	if n := m.cfg.Net; n != nil {
		tf := n.File
		if tf != nil {
			if err := tap.Check(int(tf.Fd())); err != nil {
				return nil, fmt.Errorf("TAP %q passed in: %w", n.Tap, err)
			}
		} else {
			var err error
			if tf, err = tap.Open(n.Tap); err != nil {
				return nil, fmt.Errorf("open TAP %q: %w", n.Tap, err)
			}
		}
		mac := n.MAC
		if mac == nil {
			// Kept in the configuration, for snapshots to record.
			mac = randomMAC()
			withMAC := *n
			withMAC.MAC = mac
			m.cfg.Net = &withMAC
		}
		plans = append(plans, plan{args: devproc.Args{Kind: devproc.Net, Name: "net0", MAC: mac.String()},
			fds: map[devproc.FD]*os.File{devproc.FDTap: tf}})
	}
	if v := m.cfg.Vsock; v != nil {
		ln, err := listenUnix(v.UDS)
		if err != nil {
			return nil, err
		}
		m.vsockPath = v.UDS
		lf, err := ln.File()
		ln.Close()
		if err != nil {
			return nil, fmt.Errorf("vsock listener: %w", err)
		}
		brokerOurs, brokerTheirs, err := devproc.SocketPair("vsock0-broker")
		if err != nil {
			lf.Close()
			return nil, err
		}
		plans = append(plans, plan{
			args:  devproc.Args{Kind: devproc.Vsock, Name: "vsock0", CID: v.CID, ResetTransport: m.restoring},
			fds:   map[devproc.FD]*os.File{devproc.FDVsockListener: lf, devproc.FDVsockBroker: brokerTheirs},
			after: func() { go devproc.ServeVsockDials(brokerOurs, v.UDS, m.log) },
		})
	}
	if m.cfg.RNG {
		plans = append(plans, plan{args: devproc.Args{Kind: devproc.RNG, Name: "rng0"}})
	}
	spawner := &devproc.Spawner{Exe: m.cfg.DeviceExe, Stderr: m.cfg.DeviceStderr, NoJail: m.cfg.NoJail, TestArgs: m.cfg.testDeviceArgs, UID: m.cfg.DeviceUID}
	for i, p := range plans {
		name, kind := p.args.Name, p.args.Kind
		d := &vhostDevice{
			name: name, kind: kind, id: kind.DeviceID(), numQueues: kind.Queues(), maxQueue: defaultQueueSize,
			base: VirtioBase + uint64(i)*VirtioStride, irq: uint32(VirtioIRQBase + i),
			m: m, log: m.log.With("device", name),
		}
		if p.external != "" {
			fe, err := vhostuser.Dial(p.external)
			if err != nil {
				return nil, fmt.Errorf("device %s: connect to vhost-user backend %s: %w", name, p.external, err)
			}
			d.fe = fe
			m.vdevs = append(m.vdevs, d)
			if err := d.attach(); err != nil {
				return nil, fmt.Errorf("device %s (vhost-user backend %s): %w", name, p.external, err)
			}
			params = append(params, virtio.CmdlineArg(d.base, d.irq))
			continue
		}
		proc, conn, err := spawner.Start(p.args, p.fds, m.uffdDev)
		if err != nil {
			return nil, err
		}
		m.procs = append(m.procs, proc)
		if p.after != nil {
			p.after()
		}
		d.fe = vhostuser.NewFrontend(conn)
		m.vdevs = append(m.vdevs, d)
		if err := d.attach(); err != nil {
			// A process that died explains the failure better than the
			// broken socket does: give the kernel a moment to report it.
			select {
			case <-proc.Done():
				return nil, fmt.Errorf("device %s: %w (its process %s)", name, err, proc.Why())
			case <-time.After(2 * time.Second):
				return nil, fmt.Errorf("device %s: %w", name, err)
			}
		}
		go func() {
			<-proc.Done()
			if !m.isStopping() {
				d.failed(fmt.Sprintf("device process %s %s", name, proc.Why()))
			}
		}()
		params = append(params, virtio.CmdlineArg(d.base, d.irq))
	}
	return params, nil
}

// listenUnix binds the vsock host socket. A stale socket file that nobody
// listens on is replaced; anything else at the path is an error.
func listenUnix(path string) (*net.UnixListener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("vsock socket path %s exists and is not a socket: choose another path", path)
		}
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("vsock socket path %s is in use by another process", path)
		}
		os.Remove(path)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on vsock socket %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(false)
	return ln, nil
}

// randomMAC makes a locally administered unicast address (52:54:00 is
// QEMU's; we set the local bit on a random one instead).
func randomMAC() net.HardwareAddr {
	mac := make(net.HardwareAddr, 6)
	_, _ = rand.Read(mac)
	mac[0] = mac[0]&^1 | 2
	return mac
}

func (m *Machine) isStopping() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state.ended()
}
