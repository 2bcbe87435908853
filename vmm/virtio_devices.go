package vmm

import (
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/sietch-vm/sietch/virtio"
	vnet "github.com/sietch-vm/sietch/virtio/net"
	"github.com/sietch-vm/sietch/virtio/vhostuser"
)

// Queue counts and sizes of our device processes (virtio 1.2 §5.2, §5.1,
// §5.10, §5.4): blk one request queue, net rx+tx, vsock rx+tx+event, rng one.
const defaultQueueSize = 256

// startDevices starts one process per virtio device, wires each to a
// virtio-mmio transport, and announces the transports on the command line.
func (m *Machine) startDevices() error {
	type plan struct {
		kind, name string
		id         uint32
		queues     int
		args       []string
		files      []*os.File
		after      func(p *deviceProcess) // runs once the process started
		external   string                 // vhost-user socket of a backend we do not start
	}
	var plans []plan
	defer func() {
		for _, p := range plans {
			for _, f := range p.files {
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
			return fmt.Errorf("open disk image: %w", err)
		}
		name := fmt.Sprintf("blk%d", i)
		args := []string{"blk", "--name", name, "--serial", name}
		if d.ReadOnly {
			args = append(args, "--ro")
		}
		plans = append(plans, plan{kind: "blk", name: name, id: virtio.DeviceBlock, queues: 1, args: args, files: []*os.File{f}})
	}
	for i, path := range m.cfg.VhostUserBlk {
		plans = append(plans, plan{kind: "vhost-user-blk", name: fmt.Sprintf("vublk%d", i), id: virtio.DeviceBlock, queues: 1, external: path})
	}
	if n := m.cfg.Net; n != nil {
		tap, err := vnet.OpenTap(n.Tap)
		if err != nil {
			return fmt.Errorf("open TAP %q: %w", n.Tap, err)
		}
		mac := n.MAC
		if mac == nil {
			// Kept in the configuration, for snapshots to record.
			mac = randomMAC()
			withMAC := *n
			withMAC.MAC = mac
			m.cfg.Net = &withMAC
		}
		plans = append(plans, plan{kind: "net", name: "net0", id: virtio.DeviceNet, queues: 2,
			args: []string{"net", "--name", "net0", "--mac", mac.String()}, files: []*os.File{tap}})
	}
	if v := m.cfg.Vsock; v != nil {
		ln, err := listenUnix(v.UDS)
		if err != nil {
			return err
		}
		m.vsockPath = v.UDS
		lf, err := ln.File()
		ln.Close()
		if err != nil {
			return fmt.Errorf("vsock listener: %w", err)
		}
		brokerOurs, brokerTheirs, err := socketPair("vsock0-broker")
		if err != nil {
			lf.Close()
			return err
		}
		args := []string{"vsock", "--name", "vsock0", "--cid", strconv.FormatUint(v.CID, 10)}
		if m.restoring {
			args = append(args, "--reset-transport")
		}
		plans = append(plans, plan{kind: "vsock", name: "vsock0", id: virtio.DeviceVsock, queues: 3,
			args:  args,
			files: []*os.File{lf, brokerTheirs},
			after: func(*deviceProcess) { go serveVsockDials(brokerOurs, v.UDS, m.log) },
		})
	}
	if m.cfg.RNG {
		plans = append(plans, plan{kind: "rng", name: "rng0", id: virtio.DeviceRNG, queues: 1, args: []string{"rng", "--name", "rng0"}})
	}
	for i, p := range plans {
		d := &vhostDevice{
			name: p.name, kind: p.kind, id: p.id, numQueues: p.queues, maxQueue: defaultQueueSize,
			base: VirtioBase + uint64(i)*VirtioStride, irq: uint32(VirtioIRQBase + i),
			m: m, log: m.log.With("device", p.name),
		}
		if p.external != "" {
			fe, err := vhostuser.Dial(p.external)
			if err != nil {
				return fmt.Errorf("device %s: connect to vhost-user backend %s: %w", p.name, p.external, err)
			}
			d.fe = fe
			m.vdevs = append(m.vdevs, d)
			if err := d.attach(); err != nil {
				return fmt.Errorf("device %s (vhost-user backend %s): %w", p.name, p.external, err)
			}
			m.cmdline += " " + virtio.CmdlineArg(d.base, d.irq)
			continue
		}
		conn, theirs, err := socketPair(p.name)
		if err != nil {
			return err
		}
		args, files := p.args, append([]*os.File{theirs}, p.files...)
		if m.uffdDev != nil {
			// ExtraFiles start at fd 3.
			args = append(args, "--userfault-dev-fd", strconv.Itoa(3+len(files)))
			files = append(files, m.uffdDev)
		}
		proc, err := m.spawnDevice(p.name, args, files)
		theirs.Close()
		if err != nil {
			conn.Close()
			return err
		}
		m.procs = append(m.procs, proc)
		if p.after != nil {
			p.after(proc)
		}
		d.fe = vhostuser.NewFrontend(conn)
		m.vdevs = append(m.vdevs, d)
		if err := d.attach(); err != nil {
			// A process that died explains the failure better than the
			// broken socket does: give the kernel a moment to report it.
			select {
			case <-proc.done:
				return fmt.Errorf("device %s: %w (its process %s)", p.name, err, proc.why)
			case <-time.After(2 * time.Second):
				return fmt.Errorf("device %s: %w", p.name, err)
			}
		}
		go func() {
			<-proc.done
			if !m.isStopping() {
				d.failed(fmt.Sprintf("device process %s %s", p.name, proc.why))
			}
		}()
		m.cmdline += " " + virtio.CmdlineArg(d.base, d.irq)
	}
	return nil
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
