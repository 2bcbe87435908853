package devices

import (
	"errors"
	"io"
	"log/slog"
	"sync"
)

// The first PC serial port (COM1): I/O base, ISA IRQ and register block size.
const (
	COM1Base   = 0x3f8
	COM1IRQ    = 4
	SerialSize = 8
)

// ErrClosed is returned by Serial.Input once the UART has been closed.
var ErrClosed = errors.New("serial: closed")

// serialRxCap bounds host input queued for the guest. Beyond the UART's
// 16-byte FIFO the queue stands for the host side of a flow-controlled line:
// Input blocks instead of overrunning.
const serialRxCap = 4096

// serialFIFOLen is the 16550A receive FIFO depth; FCR "clear receiver" drops
// at most this many queued bytes (the rest has not reached the UART yet).
const serialFIFOLen = 16

// Register offsets (16550A data sheet, "Register Summary"). With LCR.DLAB set,
// offsets 0 and 1 address the divisor latch instead of RBR/THR and IER.
const (
	uartRX  = 0 // read: RBR, write: THR; DLL with DLAB
	uartIER = 1 // DLM with DLAB
	uartIIR = 2 // read: IIR, write: FCR
	uartLCR = 3
	uartMCR = 4
	uartLSR = 5
	uartMSR = 6
	uartSCR = 7
)

const (
	ierRDI  = 0x01 // received data available
	ierTHRI = 0x02 // transmitter holding register empty
	ierRLSI = 0x04 // receiver line status
	ierMSI  = 0x08 // modem status
	ierMask = 0x0f // a 16550A has no IER bits 7:4; Linux probes for them

	iirNoInt  = 0x01
	iirMSI    = 0x00
	iirTHRI   = 0x02
	iirRDI    = 0x04
	iirRLSI   = 0x06
	iirFIFOs  = 0xc0 // both FIFO-enabled bits: what makes Linux say "16550A"
	fcrEnable = 0x01
	fcrClrRX  = 0x02
	fcrKeep   = 0xc9 // enable, DMA mode, trigger level; bits 1-2 self-clear

	lcrDLAB = 0x80

	mcrDTR  = 0x01
	mcrRTS  = 0x02
	mcrOUT1 = 0x04
	mcrOUT2 = 0x08
	mcrLoop = 0x10
	mcrMask = 0x1f

	lsrDR     = 0x01
	lsrOE     = 0x02
	lsrErrors = 0x1e // OE, PE, FE, BI: the receiver line status conditions
	lsrTHRE   = 0x20
	lsrTEMT   = 0x40

	msrDCTS   = 0x01
	msrDDSR   = 0x02
	msrTERI   = 0x04
	msrDDCD   = 0x08
	msrDeltas = 0x0f
	msrCTS    = 0x10
	msrDSR    = 0x20
	msrRI     = 0x40
	msrDCD    = 0x80
)

// Serial is an 8250/16550A UART. Transmission is instantaneous, so THR is
// always empty. It is safe for concurrent use.
type Serial struct {
	out io.Writer
	irq func()

	outMu  sync.Mutex // serialises writes to out; taken before mu
	outErr bool       // an out.Write failure has been logged
	mu     sync.Mutex
	space  *sync.Cond // on mu: the receive queue has room, or Close
	closed bool
	r      SerialState // registers; here LSR keeps only error bits, MSR only deltas, RX is unused (see rx)
	rx     [serialRxCap]byte
	rxHead int
	rxLen  int
	line   bool // the interrupt output as last computed
	raised bool // the line rose during the current access; pulse irq after it
	// tx is the byte a Write put in THR, sent to out once mu is released.
	// An access touches each register once, so there is at most one.
	tx    [1]byte
	hasTx bool
}

// SerialState is the UART's register file and queued input, for snapshots.
type SerialState struct {
	IER uint8
	LCR uint8
	MCR uint8
	// LSR as read; only its error bits (OE, PE, FE, BI) are restored, the
	// rest follows from the queue.
	LSR uint8
	// MSR as read; only its delta bits are restored, the line states follow
	// from MCR.
	MSR uint8
	SCR uint8
	FCR uint8 // as last written, without the self-clearing bits
	DLL uint8
	DLM uint8
	// THREPending is the THR-empty interrupt that reading IIR clears.
	THREPending bool
	// RX holds bytes queued for the guest, oldest first.
	RX []byte
}

// NewSerial returns a UART whose transmitted bytes go to out and whose
// interrupt line is pulsed by irq (which may be nil). irq is called without
// any lock of the UART held.
func NewSerial(out io.Writer, irq func()) *Serial {
	s := &Serial{out: out, irq: irq}
	s.space = sync.NewCond(&s.mu)
	s.r.DLL = 0x0c // 9600 baud from the PC's 1.8432 MHz clock
	return s
}

// Read performs a guest read of len(data) byte registers from offset on.
func (s *Serial) Read(offset uint64, data []byte) {
	s.mu.Lock()
	for i := range data {
		data[i] = s.readReg(offset, i)
	}
	pulse := s.takePulse()
	s.mu.Unlock()
	s.pulse(pulse)
}

// Write performs a guest write of len(data) byte registers from offset on.
// Transmitted bytes are written to out after the register lock is released,
// so a slow out delays only other transmitters.
func (s *Serial) Write(offset uint64, data []byte) {
	if len(data) == 0 {
		return
	}
	// THR writes take outMu first so that bytes reach out in order while mu
	// is free for other registers.
	thr := offset == uartRX
	if thr {
		s.outMu.Lock()
	}
	s.mu.Lock()
	for i, v := range data {
		s.writeReg(offset, i, v)
	}
	tx, hasTx := s.tx, s.hasTx
	s.hasTx = false
	pulse := s.takePulse()
	s.mu.Unlock()
	if hasTx && s.out != nil {
		if _, err := s.out.Write(tx[:]); err != nil && !s.outErr {
			s.outErr = true
			slog.Warn("serial: console output failed; dropping guest output", "err", err)
		}
	}
	if thr {
		s.outMu.Unlock()
	}
	s.pulse(pulse)
}

// reg maps byte i of an access at offset to a register, or -1 if it lies
// outside the block (including offsets that wrap around).
func reg(offset uint64, i int, size uint64) int {
	r := offset + uint64(i)
	if r < offset || r >= size {
		return -1
	}
	return int(r)
}

func (s *Serial) readReg(offset uint64, i int) byte {
	switch reg(offset, i, SerialSize) {
	case uartRX:
		if s.r.LCR&lcrDLAB != 0 {
			return s.r.DLL
		}
		return s.popRX()
	case uartIER:
		if s.r.LCR&lcrDLAB != 0 {
			return s.r.DLM
		}
		return s.r.IER
	case uartIIR:
		// Reading IIR clears a THRE interrupt only if it is the one reported
		// (16550A data sheet, Table 4 "Interrupt Control Functions").
		v := s.iir()
		if v&0x0f == iirTHRI {
			s.r.THREPending = false
			s.update()
		}
		return v
	case uartLCR:
		return s.r.LCR
	case uartMCR:
		return s.r.MCR
	case uartLSR:
		v := s.lsr()
		s.r.LSR = 0 // reading LSR clears the error bits
		s.update()
		return v
	case uartMSR:
		v := s.msr()
		s.r.MSR = 0 // reading MSR clears the delta bits
		s.update()
		return v
	case uartSCR:
		return s.r.SCR
	}
	return 0xff // nothing decodes this address: an open ISA bus reads all ones
}

func (s *Serial) writeReg(offset uint64, i int, v byte) {
	switch reg(offset, i, SerialSize) {
	case uartRX:
		if s.r.LCR&lcrDLAB != 0 {
			s.r.DLL = v
			return
		}
		s.transmit(v)
	case uartIER:
		if s.r.LCR&lcrDLAB != 0 {
			s.r.DLM = v
			return
		}
		old := s.r.IER
		s.r.IER = v & ierMask
		// Enabling THRI with THR empty raises THRE at once; Linux's start-up
		// THRE test (serial8250_do_startup) relies on it.
		if (old^s.r.IER)&ierTHRI != 0 {
			s.r.THREPending = s.r.IER&ierTHRI != 0
		}
		s.update()
	case uartIIR:
		s.writeFCR(v)
	case uartLCR:
		s.r.LCR = v
	case uartMCR:
		before := s.msrLines()
		s.r.MCR = v & mcrMask
		s.modemChanged(before)
	case uartSCR:
		s.r.SCR = v
	}
	// LSR and MSR writes are factory-test features; ignored.
}

// transmit handles a THR write: THR empties at once, so the THRE interrupt
// drops and rises again, which is an edge on the interrupt line.
func (s *Serial) transmit(v byte) {
	s.r.THREPending = false
	s.update()
	if s.r.MCR&mcrLoop != 0 {
		if !s.pushRX(v) {
			s.r.LSR |= lsrOE
		}
	} else {
		s.tx[0], s.hasTx = v, true
	}
	s.r.THREPending = s.r.IER&ierTHRI != 0
	s.update()
}

func (s *Serial) writeFCR(v byte) {
	if v&fcrClrRX != 0 {
		n := min(s.rxLen, serialFIFOLen)
		s.rxHead = (s.rxHead + n) % serialRxCap
		s.rxLen -= n
		if n > 0 {
			s.space.Broadcast()
		}
	}
	if v&fcrEnable == 0 {
		s.r.FCR = 0 // the other bits only take effect with the FIFOs on
	} else {
		s.r.FCR = v & fcrKeep
	}
	s.update()
}

// msrLines returns MSR bits 7:4. In loopback they reflect MCR (OUT2→DCD,
// OUT1→RI, RTS→CTS, DTR→DSR); otherwise the line is up: DCD, DSR, CTS.
func (s *Serial) msrLines() byte {
	if s.r.MCR&mcrLoop == 0 {
		return msrDCD | msrDSR | msrCTS
	}
	var v byte
	if s.r.MCR&mcrDTR != 0 {
		v |= msrDSR
	}
	if s.r.MCR&mcrRTS != 0 {
		v |= msrCTS
	}
	if s.r.MCR&mcrOUT1 != 0 {
		v |= msrRI
	}
	if s.r.MCR&mcrOUT2 != 0 {
		v |= msrDCD
	}
	return v
}

// modemChanged records delta bits for the modem lines that changed since
// before (RI only on its trailing edge).
func (s *Serial) modemChanged(before byte) {
	now := s.msrLines()
	d := before ^ now
	if d&msrCTS != 0 {
		s.r.MSR |= msrDCTS
	}
	if d&msrDSR != 0 {
		s.r.MSR |= msrDDSR
	}
	if d&msrRI != 0 && now&msrRI == 0 {
		s.r.MSR |= msrTERI
	}
	if d&msrDCD != 0 {
		s.r.MSR |= msrDDCD
	}
	s.update()
}

func (s *Serial) msr() byte { return s.msrLines() | s.r.MSR&msrDeltas }

func (s *Serial) lsr() byte {
	v := s.r.LSR&lsrErrors | lsrTHRE | lsrTEMT
	if s.rxLen > 0 {
		v |= lsrDR
	}
	return v
}

// iir returns the highest-priority pending, enabled interrupt (16550A data
// sheet, Table 4): line status > received data > THRE > modem status.
func (s *Serial) iir() byte {
	id := byte(iirNoInt)
	switch {
	case s.r.IER&ierRLSI != 0 && s.r.LSR&lsrErrors != 0:
		id = iirRLSI
	case s.r.IER&ierRDI != 0 && s.rxLen > 0:
		id = iirRDI
	case s.r.IER&ierTHRI != 0 && s.r.THREPending:
		id = iirTHRI
	case s.r.IER&ierMSI != 0 && s.r.MSR&msrDeltas != 0:
		id = iirMSI
	}
	if s.r.FCR&fcrEnable != 0 {
		id |= iirFIFOs
	}
	return id
}

// update recomputes the interrupt output; a rising edge is remembered and
// pulsed once the access is over.
func (s *Serial) update() {
	line := s.iir()&iirNoInt == 0
	if line && !s.line {
		s.raised = true
	}
	s.line = line
}

func (s *Serial) takePulse() bool {
	p := s.raised
	s.raised = false
	return p
}

func (s *Serial) pulse(p bool) {
	if p && s.irq != nil {
		s.irq()
	}
}

func (s *Serial) pushRX(v byte) bool {
	if s.rxLen == serialRxCap {
		return false
	}
	s.rx[(s.rxHead+s.rxLen)%serialRxCap] = v
	s.rxLen++
	return true
}

func (s *Serial) popRX() byte {
	if s.rxLen == 0 {
		return 0
	}
	v := s.rx[s.rxHead]
	s.rxHead = (s.rxHead + 1) % serialRxCap
	s.rxLen--
	s.space.Broadcast()
	s.update()
	return v
}

// Input queues host console input for the guest. It blocks while the queue is
// full until the guest reads or Close is called, and returns how many bytes
// were queued.
func (s *Serial) Input(b []byte) (int, error) {
	n := 0
	s.mu.Lock()
	for {
		if s.closed {
			s.mu.Unlock()
			return n, ErrClosed
		}
		for n < len(b) && s.pushRX(b[n]) {
			n++
		}
		s.update()
		p := s.takePulse()
		if n == len(b) {
			s.mu.Unlock()
			s.pulse(p)
			return n, nil
		}
		if p {
			// Let the guest know before waiting for it to make room.
			s.mu.Unlock()
			s.pulse(p)
			s.mu.Lock()
			continue
		}
		s.space.Wait()
	}
}

// Close makes pending and future Input calls return ErrClosed. The guest can
// still use the UART.
func (s *Serial) Close() error {
	s.mu.Lock()
	s.closed = true
	s.space.Broadcast()
	s.mu.Unlock()
	return nil
}

// State returns the UART's registers and queued input.
func (s *Serial) State() SerialState {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.r
	st.LSR = s.lsr()
	st.MSR = s.msr()
	st.RX = make([]byte, s.rxLen)
	for i := range st.RX {
		st.RX[i] = s.rx[(s.rxHead+i)%serialRxCap]
	}
	return st
}

// SetState replaces the UART's registers and queued input (input beyond the
// queue's 4 KiB is dropped). It does not pulse the interrupt line: the
// interrupt controller's own state is restored with the VM.
func (s *Serial) SetState(st SerialState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.r = SerialState{
		IER:         st.IER & ierMask,
		LCR:         st.LCR,
		MCR:         st.MCR & mcrMask,
		LSR:         st.LSR & lsrErrors,
		MSR:         st.MSR & msrDeltas,
		SCR:         st.SCR,
		DLL:         st.DLL,
		DLM:         st.DLM,
		THREPending: st.THREPending && st.IER&ierTHRI != 0,
	}
	if st.FCR&fcrEnable != 0 {
		s.r.FCR = st.FCR & fcrKeep
	}
	s.rxHead = 0
	s.rxLen = copy(s.rx[:], st.RX)
	s.line = s.iir()&iirNoInt == 0
	s.raised = false
	s.space.Broadcast()
}
