package devices

import (
	"reflect"
	"testing"
)

type kbc struct {
	t      *testing.T
	k      *I8042
	resets int
}

func newKBC(t *testing.T) *kbc {
	c := &kbc{t: t}
	c.k = NewI8042(func() {
		c.k.State() // must not deadlock: reset comes without the lock held
		c.resets++
	})
	return c
}

func (c *kbc) in(off uint64) byte {
	var b [1]byte
	c.k.Read(off, b[:])
	return b[0]
}

func (c *kbc) outb(off uint64, v byte) { c.k.Write(off, []byte{v}) }

// TestI8042LinuxReboot replays native_machine_emergency_restart's BOOT_KBD
// path: kb_wait() polls status bit 1, then outb(0xfe, 0x64).
func TestI8042LinuxReboot(t *testing.T) {
	c := newKBC(t)
	for i := 1; i <= 3; i++ {
		polls := 0
		for c.in(4)&0x02 != 0 {
			if polls++; polls == 0x10000 {
				t.Fatal("kb_wait: input buffer never empties")
			}
		}
		c.outb(4, 0xfe)
		if c.resets != i {
			t.Fatalf("after %d writes of 0xfe: %d resets", i, c.resets)
		}
	}
}

func TestI8042Commands(t *testing.T) {
	tests := []struct {
		name   string
		cmd    byte
		data   []byte // written to the data port after cmd
		want   int    // byte expected on the data port, or -1 for none
		resets int
	}{
		{"self test", 0xaa, nil, 0x55, 0},
		{"interface test", 0xab, nil, 0x00, 0},
		{"read command byte", 0x20, nil, 0x04, 0},
		{"disable keyboard", 0xad, nil, -1, 0},
		{"enable keyboard", 0xae, nil, -1, 0},
		{"disable aux", 0xa7, nil, -1, 0},
		{"enable aux", 0xa8, nil, -1, 0},
		{"write command byte", 0x60, []byte{0x45}, -1, 0},
		{"read output port", 0xd0, nil, 0x03, 0},
		{"write output port, reset low", 0xd1, []byte{0x02}, -1, 1},
		{"write output port, reset high", 0xd1, []byte{0x03}, -1, 0},
		{"pulse reset", 0xfe, nil, -1, 1},
		{"pulse all lines", 0xf0, nil, -1, 1},
		{"pulse nothing", 0xff, nil, -1, 0},
		{"unknown command", 0x12, nil, -1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newKBC(t)
			c.outb(4, tt.cmd)
			for _, d := range tt.data {
				c.outb(0, d)
			}
			obf := c.in(4)&0x01 != 0
			if obf != (tt.want >= 0) {
				t.Fatalf("status OBF = %v, want %v", obf, tt.want >= 0)
			}
			if tt.want >= 0 {
				if got := c.in(0); got != byte(tt.want) {
					t.Fatalf("data port = %#x, want %#x", got, tt.want)
				}
				if c.in(4)&0x01 != 0 {
					t.Fatal("OBF still set after reading the data port")
				}
			}
			if c.resets != tt.resets {
				t.Fatalf("resets = %d, want %d", c.resets, tt.resets)
			}
		})
	}
}

func TestI8042CommandByte(t *testing.T) {
	c := newKBC(t)
	c.outb(4, 0x60)
	c.outb(0, 0x61)
	c.outb(4, 0xad) // disable keyboard sets bit 4
	c.outb(4, 0x20)
	if got := c.in(0); got != 0x71 {
		t.Fatalf("command byte = %#x, want 0x71", got)
	}
	// A data byte with no command pending is for the (absent) keyboard and
	// must not change the command byte.
	c.outb(0, 0xff)
	c.outb(4, 0x20)
	if got := c.in(0); got != 0x71 {
		t.Fatalf("command byte after a keyboard write = %#x, want 0x71", got)
	}
}

func TestI8042StateRoundTrip(t *testing.T) {
	c := newKBC(t)
	c.outb(4, 0x60)
	c.outb(0, 0x47)
	c.outb(4, 0xaa)
	c.outb(4, 0xd1) // leaves a command waiting for its data byte
	st := c.k.State()

	d := newKBC(t)
	d.k.SetState(st)
	if got := d.k.State(); !reflect.DeepEqual(got, st) {
		t.Fatalf("state after round trip = %+v, want %+v", got, st)
	}
	d.outb(0, 0x00) // completes the pending 0xd1: reset low
	if d.resets != 1 {
		t.Fatalf("restored pending output-port write: %d resets, want 1", d.resets)
	}
	if got := d.in(0); got != 0x55 {
		t.Fatalf("restored output byte = %#x, want 0x55", got)
	}
}

func TestI8042WideAccess(t *testing.T) {
	c := newKBC(t)
	// One 5-byte write covers the data and command ports once each: at most
	// one reset.
	c.k.Write(0, []byte{0, 0, 0, 0, 0xfe})
	if c.resets != 1 {
		t.Fatalf("resets = %d, want 1", c.resets)
	}
	for _, off := range []uint64{1, 5, 1 << 40, ^uint64(0)} {
		buf := make([]byte, 8)
		c.k.Read(off, buf)
		c.k.Write(off, buf)
	}
}
