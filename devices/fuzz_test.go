package devices

import (
	"io"
	"testing"
)

// checkSerial asserts that LSR and IIR agree with each other and with the
// UART's state, as a guest driver assumes.
func checkSerial(t *testing.T, s *Serial) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	lsr, iir, r := s.lsr(), s.iir(), s.r
	if lsr&(lsrTHRE|lsrTEMT) != lsrTHRE|lsrTEMT {
		t.Fatalf("LSR %#x: transmitter not empty", lsr)
	}
	if (lsr&lsrDR != 0) != (s.rxLen > 0) {
		t.Fatalf("LSR %#x with %d bytes queued", lsr, s.rxLen)
	}
	if iir&0x30 != 0 || (iir&0xc0 == 0xc0) != (r.FCR&fcrEnable != 0) || (iir&0xc0 != 0 && iir&0xc0 != 0xc0) {
		t.Fatalf("IIR %#x with FCR %#x", iir, r.FCR)
	}
	if r.IER&^ierMask != 0 {
		t.Fatalf("IER %#x has bits above 3", r.IER)
	}
	if r.THREPending && r.IER&ierTHRI == 0 {
		t.Fatal("THRE pending with THRI disabled")
	}
	rls := r.IER&ierRLSI != 0 && lsr&lsrErrors != 0
	rdi := r.IER&ierRDI != 0 && lsr&lsrDR != 0
	thr := r.IER&ierTHRI != 0 && r.THREPending
	msi := r.IER&ierMSI != 0 && s.msr()&msrDeltas != 0
	var want byte
	switch {
	case rls:
		want = iirRLSI
	case rdi:
		want = iirRDI
	case thr:
		want = iirTHRI
	case msi:
		want = iirMSI
	default:
		want = iirNoInt
	}
	if iir&0x0f != want {
		t.Fatalf("IIR %#x, want id %#x (LSR %#x, IER %#x)", iir, want, lsr, r.IER)
	}
	if s.line != (want != iirNoInt) {
		t.Fatalf("interrupt line %v with IIR %#x", s.line, iir)
	}
}

// FuzzDevices feeds sequences of guest accesses (and host input) to a Serial
// and an I8042. Each op is 4 bytes: kind, offset, size, value.
func FuzzDevices(f *testing.F) {
	f.Add([]byte{1, 1, 1, 0x0f, 1, 2, 1, 0xc7, 2, 0, 3, 0, 0, 2, 1, 0, 0, 0, 4, 0})
	f.Add([]byte{1, 4, 1, 0x1a, 0, 6, 1, 0, 1, 0, 1, 'x', 0, 0, 1, 0, 0, 5, 1, 0})
	f.Add([]byte{1, 3, 1, 0x80, 1, 0, 2, 0x0c, 0, 0, 2, 0, 1, 3, 1, 0x03})
	f.Add([]byte{4, 4, 1, 0x60, 4, 0, 1, 0x45, 4, 4, 1, 0xfe, 3, 4, 1, 0, 3, 0, 1, 0})
	f.Add([]byte{0x81, 3, 8, 0xff, 0x80, 7, 8, 0, 5, 0, 0, 0})
	f.Fuzz(func(t *testing.T, ops []byte) {
		var s *Serial
		s = NewSerial(io.Discard, func() {
			if !s.mu.TryLock() {
				t.Fatal("serial interrupt pulsed with the lock held")
			}
			s.mu.Unlock()
		})
		resets := 0
		k := NewI8042(func() { resets++ })
		buf := make([]byte, 16)
		for len(ops) >= 4 {
			op := ops[:4]
			ops = ops[4:]
			off := uint64(op[1] % 12)
			if op[0]&0x80 != 0 {
				off = ^uint64(0) - uint64(op[1]%8)
			}
			data := buf[:op[2]%9]
			for i := range data {
				data[i] = op[3] + byte(i)
			}
			switch op[0] & 0x7f % 6 {
			case 0:
				s.Read(off, data)
			case 1:
				s.Write(off, data)
			case 2:
				if len(s.State().RX)+len(data) <= serialRxCap { // Input would block
					if n, err := s.Input(data); n != len(data) || err != nil {
						t.Fatalf("Input(%d bytes) = %d, %v", len(data), n, err)
					}
				}
			case 3:
				k.Read(off, data)
			case 4:
				before := resets
				k.Write(off, data)
				if resets > before+1 {
					t.Fatalf("one write reset %d times", resets-before)
				}
			case 5:
				st := s.State()
				s.SetState(st)
				k.SetState(k.State())
			}
			checkSerial(t, s)
			var st [1]byte
			k.Read(4, st[:])
			if st[0]&0x02 != 0 {
				t.Fatal("i8042 status shows the input buffer full")
			}
			if (st[0]&0x01 != 0) != k.State().OutputFull {
				t.Fatalf("i8042 status %#x disagrees with OutputFull", st[0])
			}
		}
	})
}
