package devices

import (
	"log/slog"
	"sync/atomic"
)

// sietch's power port (there is no ACPI): the guest writes one byte to
// PowerPort, PowerOffValue to power off or PowerResetValue to reset.
const (
	PowerPort       = 0x600
	PowerSize       = 1
	PowerOffValue   = 0x00
	PowerResetValue = 0x01
)

// PowerEvent is what the guest asked of the power port.
type PowerEvent int

// Power events.
const (
	PowerOff PowerEvent = iota + 1
	PowerReset
)

func (e PowerEvent) String() string {
	switch e {
	case PowerOff:
		return "power-off"
	case PowerReset:
		return "reset"
	}
	return "unknown"
}

// Power is the power-off/reset port. It is safe for concurrent use.
type Power struct {
	ev     func(PowerEvent)
	warned atomic.Bool
}

// NewPower returns a power port that reports guest requests to ev, which is
// called on the writing vCPU's thread, once per request.
func NewPower(ev func(PowerEvent)) *Power {
	return &Power{ev: ev}
}

// Read returns zeros: the port holds no state.
func (p *Power) Read(offset uint64, data []byte) {
	clear(data)
}

// Write acts on the byte written at offset 0; others are ignored.
func (p *Power) Write(offset uint64, data []byte) {
	if offset != 0 || len(data) == 0 {
		return
	}
	var e PowerEvent
	switch data[0] {
	case PowerOffValue:
		e = PowerOff
	case PowerResetValue:
		e = PowerReset
	default:
		if !p.warned.Swap(true) {
			slog.Debug("power port: ignoring unknown value (0 powers off, 1 resets)", "value", data[0])
		}
		return
	}
	if p.ev != nil {
		p.ev(e)
	}
}
