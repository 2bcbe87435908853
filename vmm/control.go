package vmm

import (
	"os"
	"time"

	"github.com/sietch-vm/sietch/devices"
	"github.com/sietch-vm/sietch/wire/control"
)

// The control socket: one vmm's HTTP/JSON API on a unix socket (DESIGN.md
// "Processes"); its wire types, states, error codes and client are package
// control's.

// State says whether the VM runs, as the control protocol reports it:
// control.StateCreated, StateRunning, StatePaused or StateStopped.
func (m *Machine) State() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state.wire()
}

// Info describes the VM for GET /info.
func (m *Machine) Info() control.Info {
	info := control.Info{
		State:    m.State(),
		VCPUs:    m.cfg.CPUs,
		MemBytes: m.cfg.MemSize,
		Cmdline:  m.cmdline,
		Compat:   m.compat,
		VMMPID:   os.Getpid(),
		Devices: []control.DeviceInfo{
			{Name: "serial0", Kind: "uart-8250", IOPort: devices.COM1Base, IRQ: devices.COM1IRQ},
			{Name: "i8042", Kind: "i8042", IOPort: devices.I8042Base},
			{Name: "power", Kind: "sietch-power", IOPort: devices.PowerPort},
		},
	}
	for _, d := range m.vdevs {
		info.Devices = append(info.Devices, control.DeviceInfo{Name: d.name, Kind: d.kind.Model(), MMIOBase: d.base, IRQ: d.irq})
	}
	m.mu.Lock()
	if !m.runAt.IsZero() {
		info.UptimeMS = time.Since(m.runAt).Milliseconds()
	}
	if m.exit != nil {
		info.Exit = m.exit.String()
	}
	m.mu.Unlock()
	return info
}
