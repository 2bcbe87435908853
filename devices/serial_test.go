package devices

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// uart wraps a Serial with byte-wide port accessors, as Linux's serial_in and
// serial_out use it, and counts interrupt pulses.
type uart struct {
	t    *testing.T
	s    *Serial
	out  *syncBuffer
	irqs atomic.Int64
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func newUART(t *testing.T) *uart {
	u := &uart{t: t, out: &syncBuffer{}}
	u.s = NewSerial(u.out, func() {
		// The pulse must come without the UART's lock held: touching a
		// register here would otherwise deadlock.
		var scr [1]byte
		u.s.Read(uartSCR, scr[:])
		u.irqs.Add(1)
	})
	return u
}

func (u *uart) in(off uint64) byte {
	var b [1]byte
	u.s.Read(off, b[:])
	return b[0]
}

func (u *uart) outb(off uint64, v byte) { u.s.Write(off, []byte{v}) }

func (u *uart) expect(off uint64, want byte, what string) {
	u.t.Helper()
	if got := u.in(off); got != want {
		u.t.Fatalf("%s: register %d = %#02x, want %#02x", what, off, got, want)
	}
}

// TestSerialLinuxAutoconfig replays the probes of Linux's autoconfig() and
// autoconfig_16550a() (drivers/tty/serial/8250/8250_port.c); the UART must be
// identified as a plain 16550A.
func TestSerialLinuxAutoconfig(t *testing.T) {
	u := newUART(t)

	// IER probe: bits 3:0 read back, nothing else sticks.
	u.outb(uartIER, 0)
	u.expect(uartIER, 0, "IER after writing 0")
	u.outb(uartIER, 0x0f)
	u.expect(uartIER, 0x0f, "IER after writing 0x0f")
	u.outb(uartIER, 0)
	u.irqs.Store(0) // enabling THRI above rightly pulsed the line

	// Scratch register test.
	for _, v := range []byte{0xa5, 0x5a} {
		u.outb(uartSCR, v)
		u.expect(uartSCR, v, "scratch register")
	}

	// Divisor latch: DLAB swaps offsets 0/1 for DLL/DLM.
	u.outb(uartLCR, 0x80)
	u.outb(uartRX, 0x01)
	u.outb(uartIER, 0x00)
	u.expect(uartRX, 0x01, "DLL")
	u.expect(uartIER, 0x00, "DLM")
	u.outb(uartLCR, 0x03)
	u.expect(uartIER, 0, "IER after DLAB cleared")
	if st := u.s.State(); st.DLL != 1 || st.DLM != 0 {
		t.Fatalf("divisor = %#x:%#x, want 0:1", st.DLM, st.DLL)
	}

	// Loopback test: MCR = LOOP|OUT2|RTS must show DCD|CTS.
	save := u.in(uartMCR)
	u.outb(uartMCR, 0x1a)
	if got := u.in(uartMSR) & 0xf0; got != 0x90 {
		t.Fatalf("loopback MSR&0xf0 = %#x, want 0x90", got)
	}
	u.outb(uartMCR, save)
	if got := u.in(uartMSR) & 0xf0; got != 0xb0 {
		t.Fatalf("MSR&0xf0 out of loopback = %#x, want DCD|DSR|CTS 0xb0", got)
	}

	// FIFO detection: IIR bits 7:6 = 11 means 16550A.
	u.outb(uartIIR, 0x01)
	if got := u.in(uartIIR) >> 6; got != 3 {
		t.Fatalf("IIR>>6 with FIFOs enabled = %d, want 3", got)
	}

	// No EFR at offset 2 whether LCR is 0x80 or 0xbf: reads must not be 0.
	for _, lcr := range []byte{0x80, 0xbf} {
		u.outb(uartLCR, lcr)
		if u.in(uartIIR) == 0 {
			t.Fatalf("offset 2 reads 0 with LCR=%#x: Linux would probe for an EFR", lcr)
		}
	}

	// Not a National SuperIO: IIR bit 4 must not follow MCR.LOOP.
	u.outb(uartLCR, 0)
	s1 := u.in(uartMCR)
	u.outb(uartMCR, s1^0x10)
	u.outb(uartLCR, 0xe0)
	s2 := u.in(uartIIR)
	u.outb(uartLCR, 0)
	u.outb(uartMCR, s1)
	if (s1^s2)&0x10 != 0 {
		t.Fatal("IIR bit 4 follows MCR.LOOP: Linux would detect an NS16550A")
	}

	// Not a TI16750: no 64-byte FIFO bit (IIR bit 5).
	for _, lcr := range []byte{0, 0x80} {
		u.outb(uartLCR, lcr)
		u.outb(uartIIR, 0x21)
		if got := u.in(uartIIR) & 0xe0; got != 0xc0 {
			t.Fatalf("IIR&0xe0 = %#x with LCR %#x, want 0xc0", got, lcr)
		}
		u.outb(uartIIR, 0x01)
	}
	u.outb(uartLCR, 0)

	// Not an XScale: IER bit 6 (UUE) does not stick.
	u.outb(uartIER, 0x40)
	u.expect(uartIER, 0, "IER after writing UUE")

	if u.irqs.Load() != 0 {
		t.Fatalf("%d interrupts during autoconfig with IER = 0", u.irqs.Load())
	}
	if u.out.String() != "" {
		t.Fatalf("autoconfig transmitted %q", u.out.String())
	}
}

// TestSerialTHRE replays the THRE checks of serial8250_do_startup and
// serial8250_THRE_test.
func TestSerialTHRE(t *testing.T) {
	u := newUART(t)
	u.outb(uartIIR, 0xc1) // FIFOs on, as set_termios leaves them
	u.outb(uartLCR, 0x03)
	u.outb(uartMCR, 0x0b) // DTR, RTS, OUT2

	u.outb(uartIER, ierTHRI)
	if u.irqs.Load() != 1 {
		t.Fatalf("enabling THRI pulsed the interrupt %d times, want 1", u.irqs.Load())
	}
	if lsr := u.in(uartLSR); lsr&(lsrTHRE|lsrTEMT) != lsrTHRE|lsrTEMT {
		t.Fatalf("LSR = %#x, want THRE and TEMT", lsr)
	}
	u.expect(uartIIR, 0xc2, "IIR with THRI pending")
	u.expect(uartIIR, 0xc1, "IIR after the THRE interrupt was read")
	u.outb(uartIER, 0)

	// Re-enabling THRI re-asserts THRE (Linux sets UART_BUG_THRE otherwise).
	u.outb(uartIER, ierTHRI)
	u.expect(uartIIR, 0xc2, "IIR after re-enabling THRI")
	if u.irqs.Load() != 2 {
		t.Fatalf("interrupt pulses = %d, want 2", u.irqs.Load())
	}

	// Each transmitted byte empties THR again: a new THRE interrupt.
	u.outb(uartRX, 'x')
	u.expect(uartIIR, 0xc2, "IIR after a transmit")
	if u.irqs.Load() != 3 {
		t.Fatalf("interrupt pulses = %d, want 3", u.irqs.Load())
	}

	// Writing IER with THRI unchanged does not re-raise a cleared THRE.
	u.outb(uartIER, ierTHRI|ierRDI)
	u.expect(uartIIR, 0xc1, "IIR after rewriting IER")
}

func TestSerialTransmit(t *testing.T) {
	u := newUART(t)
	u.outb(uartLCR, 0x03)
	for _, c := range []byte("hello\r\n") {
		u.outb(uartRX, c)
	}
	// A wide write is split into byte registers: THR then IER.
	u.s.Write(uartRX, []byte{'!', 0})
	if got := u.out.String(); got != "hello\r\n!" {
		t.Fatalf("out = %q, want %q", got, "hello\r\n!")
	}
	// THR with DLAB set is the divisor, not output.
	u.outb(uartLCR, 0x83)
	u.outb(uartRX, 'z')
	u.outb(uartLCR, 0x03)
	if got := u.out.String(); got != "hello\r\n!" {
		t.Fatalf("DLL write reached out: %q", got)
	}
	if u.irqs.Load() != 0 {
		t.Fatalf("%d interrupts with IER = 0", u.irqs.Load())
	}
}

func TestSerialLoopbackData(t *testing.T) {
	u := newUART(t)
	u.outb(uartMCR, mcrLoop)
	u.outb(uartRX, 'a')
	u.outb(uartRX, 'b')
	if u.out.String() != "" {
		t.Fatalf("loopback transmitted %q to out", u.out.String())
	}
	if u.in(uartLSR)&lsrDR == 0 {
		t.Fatal("LSR.DR clear after a loopback transmit")
	}
	u.expect(uartRX, 'a', "RBR")
	u.expect(uartRX, 'b', "RBR")
	if u.in(uartLSR)&lsrDR != 0 {
		t.Fatal("LSR.DR set with nothing received")
	}
	// Modem outputs loop back to inputs, with delta bits: entering loopback
	// with all outputs off drops CTS, DSR and DCD.
	if got := u.in(uartMSR); got != msrDCTS|msrDDSR|msrDDCD {
		t.Fatalf("MSR on entering loopback = %#x, want DCTS|DDSR|DDCD", got)
	}
	u.outb(uartMCR, mcrLoop|mcrDTR|mcrOUT1)
	if got := u.in(uartMSR); got != msrDSR|msrRI|msrDDSR {
		t.Fatalf("MSR = %#x, want DSR|RI|DDSR", got)
	}
	u.outb(uartMCR, mcrLoop)
	if got := u.in(uartMSR); got != msrDDSR|msrTERI {
		t.Fatalf("MSR = %#x, want DDSR|TERI", got)
	}
	u.expect(uartMSR, 0, "MSR after its deltas were read")
}

func TestSerialInput(t *testing.T) {
	u := newUART(t)
	u.outb(uartIIR, 0x01)
	u.outb(uartIER, ierRDI)
	u.expect(uartIIR, 0xc1, "IIR with nothing received")
	if n, err := u.s.Input([]byte("ok\n")); n != 3 || err != nil {
		t.Fatalf("Input = %d, %v", n, err)
	}
	if u.irqs.Load() != 1 {
		t.Fatalf("input pulsed the interrupt %d times, want 1", u.irqs.Load())
	}
	u.expect(uartIIR, 0xc4, "IIR with data received")
	var got []byte
	for u.in(uartLSR)&lsrDR != 0 {
		got = append(got, u.in(uartRX))
	}
	if string(got) != "ok\n" {
		t.Fatalf("guest read %q, want %q", got, "ok\n")
	}
	u.expect(uartIIR, 0xc1, "IIR after draining")

	// More input raises the interrupt again; disabled RX interrupts do not.
	u.s.Input([]byte("x"))
	if u.irqs.Load() != 2 {
		t.Fatalf("second input: %d pulses, want 2", u.irqs.Load())
	}
	u.in(uartRX)
	u.outb(uartIER, 0)
	u.s.Input([]byte("y"))
	if u.irqs.Load() != 2 {
		t.Fatalf("input with RDI disabled pulsed the interrupt")
	}
	// Enabling RDI with data waiting raises it.
	u.outb(uartIER, ierRDI)
	if u.irqs.Load() != 3 {
		t.Fatalf("enabling RDI with data waiting: %d pulses, want 3", u.irqs.Load())
	}
}

func TestSerialInputBlocksUntilRead(t *testing.T) {
	u := newUART(t)
	full := bytes.Repeat([]byte{'a'}, serialRxCap)
	if n, err := u.s.Input(full); n != len(full) || err != nil {
		t.Fatalf("Input of %d bytes = %d, %v", len(full), n, err)
	}
	done := make(chan error)
	go func() {
		_, err := u.s.Input([]byte("bc"))
		done <- err
	}()
	// The guest drains the queue; the blocked writer then completes, in order.
	var got []byte
	for len(got) < serialRxCap+2 {
		if u.in(uartLSR)&lsrDR != 0 {
			got = append(got, u.in(uartRX))
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if string(got[serialRxCap-1:]) != "abc" {
		t.Fatalf("tail of input = %q, want %q", got[serialRxCap-1:], "abc")
	}
}

func TestSerialCloseUnblocksInput(t *testing.T) {
	u := newUART(t)
	u.s.Input(bytes.Repeat([]byte{'a'}, serialRxCap))
	done := make(chan error)
	go func() {
		_, err := u.s.Input([]byte("b"))
		done <- err
	}()
	u.s.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("blocked Input after Close = %v, want ErrClosed", err)
	}
	if _, err := u.s.Input([]byte("c")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Input after Close = %v, want ErrClosed", err)
	}
	u.expect(uartRX, 'a', "RBR after Close") // the guest still reads what was queued
}

// TestSerialIIRPriority walks down the interrupt priorities by clearing each
// source in turn.
func TestSerialIIRPriority(t *testing.T) {
	u := newUART(t)
	u.s.SetState(SerialState{
		IER: 0x0f, FCR: 0x01, LSR: lsrOE, MSR: msrDDCD,
		THREPending: true, RX: []byte("z"),
	})
	u.expect(uartIIR, 0xc6, "IIR with everything pending")
	u.in(uartLSR)
	u.expect(uartIIR, 0xc4, "IIR after reading LSR")
	u.in(uartRX)
	u.expect(uartIIR, 0xc2, "IIR after reading RBR")
	u.expect(uartIIR, 0xc0, "IIR after the THRE interrupt was read")
	u.in(uartMSR)
	u.expect(uartIIR, 0xc1, "IIR after reading MSR")
	if u.irqs.Load() != 0 {
		t.Fatalf("%d pulses while the line only fell", u.irqs.Load())
	}
}

func TestSerialOverrun(t *testing.T) {
	u := newUART(t)
	u.outb(uartIER, ierRLSI)
	u.outb(uartMCR, mcrLoop)
	for range serialRxCap + 1 {
		u.outb(uartRX, 'o')
	}
	if u.irqs.Load() != 1 {
		t.Fatalf("overrun: %d pulses, want 1", u.irqs.Load())
	}
	u.expect(uartIIR, 0x06, "IIR after an overrun")
	if lsr := u.in(uartLSR); lsr&(lsrOE|lsrDR) != lsrOE|lsrDR {
		t.Fatalf("LSR = %#x, want OE and DR", lsr)
	}
	if lsr := u.in(uartLSR); lsr&lsrOE != 0 {
		t.Fatalf("LSR = %#x: OE not cleared by reading LSR", lsr)
	}
}

func TestSerialFCRClearsReceiveFIFO(t *testing.T) {
	u := newUART(t)
	in := make([]byte, 20)
	for i := range in {
		in[i] = byte('a' + i)
	}
	u.s.Input(in)
	u.outb(uartIIR, fcrEnable|fcrClrRX)
	// The 16 bytes in the FIFO are gone; the rest had not arrived yet.
	u.expect(uartRX, 'a'+16, "RBR after clearing the receive FIFO")
}

func TestSerialStateRoundTrip(t *testing.T) {
	u := newUART(t)
	u.outb(uartLCR, 0x80)
	u.outb(uartRX, 0x03)
	u.outb(uartIER, 0x01)
	u.outb(uartLCR, 0x1b)
	u.outb(uartIIR, 0xc7)
	u.outb(uartMCR, 0x1a) // loopback: MSR deltas appear
	u.outb(uartSCR, 0x42)
	u.outb(uartIER, ierTHRI|ierRDI)
	u.s.Input([]byte("queued"))
	st := u.s.State()

	v := newUART(t)
	v.s.SetState(st)
	if got := v.s.State(); !reflect.DeepEqual(got, st) {
		t.Fatalf("state after round trip:\n got %+v\nwant %+v", got, st)
	}
	if v.irqs.Load() != 0 {
		t.Fatal("SetState pulsed the interrupt")
	}
	// Both UARTs now behave the same from the guest's side.
	for _, off := range []uint64{uartIIR, uartLSR, uartMSR, uartRX, uartRX, uartIER, uartLCR, uartMCR, uartSCR, uartIIR} {
		if a, b := u.in(off), v.in(off); a != b {
			t.Fatalf("register %d: original %#x, restored %#x", off, a, b)
		}
	}
}

func TestSerialAnyAccessSize(t *testing.T) {
	u := newUART(t)
	for _, off := range []uint64{0, 1, 5, 7, 8, 100, ^uint64(0), ^uint64(0) - 3} {
		for _, n := range []int{0, 1, 2, 3, 4, 8, 16} {
			data := bytes.Repeat([]byte{0x5a}, n)
			u.s.Write(off, data)
			u.s.Read(off, data)
		}
	}
	got := make([]byte, 4)
	u.s.Read(6, got)
	if got[2] != 0xff || got[3] != 0xff {
		t.Fatalf("bytes past the register block read %#x, want 0xff", got[2:])
	}
}

// TestSerialConcurrent drives the UART from several vCPU-like goroutines and
// a console-input goroutine at once; run with -race.
func TestSerialConcurrent(t *testing.T) {
	var s *Serial
	out := &syncBuffer{}
	var inHandler atomic.Bool
	s = NewSerial(out, func() {
		// An interrupt handler may touch any register, THR included (once:
		// its own THRE edge would otherwise recurse forever).
		if inHandler.CompareAndSwap(false, true) {
			var b [1]byte
			s.Read(uartRX, b[:])
			s.Write(uartRX, []byte{'!'})
			inHandler.Store(false)
		}
	})
	s.Write(uartIER, []byte{ierRDI | ierTHRI})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 200 {
			if _, err := s.Input([]byte("in")); err != nil {
				return
			}
		}
	}()
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := make([]byte, 1)
			for i := range 500 {
				s.Write(uartRX, []byte{byte('a' + g)})
				s.Read(uint64(i%SerialSize), b)
			}
		}()
	}
	// Drain whatever the readers left so Input cannot stay blocked.
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	b := make([]byte, 1)
	for {
		select {
		case <-done:
			if n := strings.Count(out.String(), "a"); n != 500 {
				t.Fatalf("goroutine a transmitted %d bytes, want 500", n)
			}
			return
		default:
			s.Read(uartRX, b)
		}
	}
}
