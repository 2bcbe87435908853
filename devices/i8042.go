package devices

import "sync"

// The i8042 keyboard controller: data port 0x60 (offset 0) and status/command
// port 0x64 (offset 4). Only as much as Linux's reboot=k path and a probe
// need; no keyboard or mouse is attached.
const (
	I8042Base = 0x60
	I8042Size = 5
)

const (
	i8042Data = 0
	i8042Cmd  = 4

	// Status register bits (IBM PS/2 Technical Reference, 8042 status).
	i8042OBF      = 0x01 // output buffer full: a byte waits on the data port
	i8042SysFlag  = 0x04 // set by a passed self test, mirrors command byte bit 2
	i8042LastCmd  = 0x08 // the last write went to the command port
	i8042Unlocked = 0x10 // keyboard not inhibited

	i8042CmdByteSys = 0x04
	i8042CmdByteKbd = 0x10 // keyboard interface disabled
	i8042CmdByteAux = 0x20 // aux interface disabled

	// Controller commands.
	i8042ReadCmdByte  = 0x20
	i8042WriteCmdByte = 0x60
	i8042AuxDisable   = 0xa7
	i8042AuxEnable    = 0xa8
	i8042SelfTest     = 0xaa
	i8042KbdTest      = 0xab
	i8042KbdDisable   = 0xad
	i8042KbdEnable    = 0xae
	i8042ReadOutPort  = 0xd0
	i8042WriteOutPort = 0xd1
	i8042PulseFirst   = 0xf0 // 0xf0-0xff pulse output port bits 3:0 low for those 0 in the command
	i8042OutPortReset = 0x01 // output port bit 0 drives the CPU reset line, active low
	i8042OutPortA20   = 0x02
)

// I8042 is a minimal i8042 keyboard controller whose point is the CPU reset
// line. It is safe for concurrent use.
type I8042 struct {
	reset func()
	mu    sync.Mutex
	st    I8042State
}

// I8042State is the controller's state, for snapshots.
type I8042State struct {
	CommandByte uint8
	OutputPort  uint8
	// Output is the byte the data port returns; OutputFull is status OBF.
	Output     uint8
	OutputFull bool
	// Pending is a command waiting for its data byte (0x60 or 0xd1), or 0.
	Pending uint8
	// LastWasCommand is status bit 3: the last write went to port 0x64.
	LastWasCommand bool
}

// NewI8042 returns a controller that calls reset when the guest pulses the
// CPU reset line. reset is called without the controller's lock held, at
// most once per Write.
func NewI8042(reset func()) *I8042 {
	return &I8042{reset: reset, st: I8042State{
		CommandByte: i8042CmdByteSys,
		OutputPort:  i8042OutPortReset | i8042OutPortA20,
	}}
}

// Read performs a guest read from offset (0: data, 4: status).
func (k *I8042) Read(offset uint64, data []byte) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for i := range data {
		switch reg(offset, i, I8042Size) {
		case i8042Data:
			data[i] = k.st.Output
			k.st.OutputFull = false
		case i8042Cmd:
			data[i] = k.status()
		default:
			data[i] = 0xff
		}
	}
}

// status never reports IBF: writes are processed at once, so Linux's kb_wait
// finishes on its first poll.
func (k *I8042) status() byte {
	v := byte(i8042Unlocked) | k.st.CommandByte&i8042SysFlag
	if k.st.OutputFull {
		v |= i8042OBF
	}
	if k.st.LastWasCommand {
		v |= i8042LastCmd
	}
	return v
}

// Write performs a guest write to offset (0: data, 4: command).
func (k *I8042) Write(offset uint64, data []byte) {
	reset := false
	k.mu.Lock()
	for i, v := range data {
		switch reg(offset, i, I8042Size) {
		case i8042Data:
			reset = k.writeData(v) || reset
		case i8042Cmd:
			reset = k.command(v) || reset
		}
	}
	k.mu.Unlock()
	if reset && k.reset != nil {
		k.reset()
	}
}

func (k *I8042) output(v byte) {
	k.st.Output = v
	k.st.OutputFull = true
}

// command runs a controller command and reports whether it pulsed reset.
func (k *I8042) command(v byte) bool {
	k.st.LastWasCommand = true
	k.st.Pending = 0
	switch v {
	case i8042ReadCmdByte:
		k.output(k.st.CommandByte)
	case i8042WriteCmdByte, i8042WriteOutPort:
		k.st.Pending = v
	case i8042AuxDisable:
		k.st.CommandByte |= i8042CmdByteAux
	case i8042AuxEnable:
		k.st.CommandByte &^= i8042CmdByteAux
	case i8042SelfTest:
		k.st.CommandByte |= i8042CmdByteSys
		k.output(0x55)
	case i8042KbdTest:
		k.output(0x00) // no clock or data line stuck
	case i8042KbdDisable:
		k.st.CommandByte |= i8042CmdByteKbd
	case i8042KbdEnable:
		k.st.CommandByte &^= i8042CmdByteKbd
	case i8042ReadOutPort:
		k.output(k.st.OutputPort)
	default:
		if v >= i8042PulseFirst {
			return v&i8042OutPortReset == 0
		}
		// Other commands are accepted and ignored.
	}
	return false
}

// writeData takes the data byte of a pending command and reports whether it
// pulled the reset line low. Bytes meant for the keyboard are dropped: none
// is attached.
func (k *I8042) writeData(v byte) bool {
	k.st.LastWasCommand = false
	p := k.st.Pending
	k.st.Pending = 0
	switch p {
	case i8042WriteCmdByte:
		k.st.CommandByte = v
	case i8042WriteOutPort:
		// Writing bit 0 low asserts reset; keep the port's idle value so a
		// reset is one event, not a stuck line.
		if v&i8042OutPortReset == 0 {
			return true
		}
		k.st.OutputPort = v
	}
	return false
}

// State returns the controller's state.
func (k *I8042) State() I8042State {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.st
}

// SetState replaces the controller's state.
func (k *I8042) SetState(st I8042State) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if st.Pending != i8042WriteCmdByte && st.Pending != i8042WriteOutPort {
		st.Pending = 0
	}
	k.st = st
}
