package devices

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// recorder is a Device that remembers its last access and fills reads with
// a marker byte.
type recorder struct {
	mu      sync.Mutex
	off     uint64
	n       int
	written []byte
	mark    byte
	count   atomic.Int64
}

func (r *recorder) Read(offset uint64, data []byte) {
	r.count.Add(1)
	r.mu.Lock()
	r.off, r.n = offset, len(data)
	r.mu.Unlock()
	for i := range data {
		data[i] = r.mark
	}
}

func (r *recorder) Write(offset uint64, data []byte) {
	r.count.Add(1)
	r.mu.Lock()
	r.off, r.n = offset, len(data)
	r.written = append([]byte(nil), data...)
	r.mu.Unlock()
}

func TestBusInsert(t *testing.T) {
	const max = ^uint64(0)
	tests := []struct {
		name       string
		base, size uint64
		wantErr    string // substring; "" means success
	}{
		{"identical", 0x100, 0x10, "overlaps a [0x100-0x10f]"},
		{"contained", 0x104, 0x4, "overlaps a"},
		{"containing", 0xf0, 0x40, "overlaps a"},
		{"straddles start", 0xf8, 0x10, "overlaps a"},
		{"straddles end", 0x10c, 0x10, "overlaps a"},
		{"straddles end of second", 0x21f, 0x2, "overlaps b [0x200-0x21f]"},
		{"adjacent below", 0xf0, 0x10, ""},
		{"adjacent above", 0x110, 0x10, ""},
		{"between", 0x120, 0xe0, ""},
		{"zero size", 0x400, 0, "size is 0"},
		{"overflow", max - 3, 0x10, "overflows"},
		{"ends at 2^64", max - 0xf, 0x10, "overflows"},
		{"last byte", max - 1, 1, ""},
		{"whole space", 0, max, "overlaps"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewBus("pio")
			if err := b.Insert(0x100, 0x10, "a", &recorder{}); err != nil {
				t.Fatal(err)
			}
			if err := b.Insert(0x200, 0x20, "b", &recorder{}); err != nil {
				t.Fatal(err)
			}
			err := b.Insert(tt.base, tt.size, "new", &recorder{})
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Insert(%#x, %#x) = %v, want success", tt.base, tt.size, err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("Insert(%#x, %#x) succeeded, want error containing %q", tt.base, tt.size, tt.wantErr)
			case err != nil:
				msg := err.Error()
				if !strings.Contains(msg, tt.wantErr) || !strings.HasPrefix(msg, "pio") {
					t.Fatalf("error %q: want prefix pio and %q", msg, tt.wantErr)
				}
				if strings.Contains(tt.wantErr, "overlaps") && !strings.Contains(msg, "new [") {
					t.Fatalf("error %q does not name the new device and its range", msg)
				}
				if n := len(b.Devices()); n != 2 {
					t.Fatalf("failed insert left %d devices, want 2", n)
				}
			}
		})
	}
}

func TestBusInsertNil(t *testing.T) {
	if err := NewBus("mmio").Insert(0, 1, "x", nil); err == nil {
		t.Fatal("Insert of a nil device succeeded")
	}
}

func TestBusLookup(t *testing.T) {
	b := NewBus("pio")
	lo, hi := &recorder{mark: 0xaa}, &recorder{mark: 0xbb}
	if err := b.Insert(0x3f8, 8, "serial", lo); err != nil {
		t.Fatal(err)
	}
	if err := b.Insert(0x400, 4, "next", hi); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		addr    uint64
		n       int
		want    *recorder
		wantOff uint64
	}{
		{0x3f8, 1, lo, 0},
		{0x3ff, 1, lo, 7},
		{0x3f8, 8, lo, 0},
		{0x3fc, 4, lo, 4},
		{0x400, 4, hi, 0},
		{0x403, 1, hi, 3},
		{0x3f7, 1, nil, 0}, // just below
		{0x3f7, 2, nil, 0}, // straddles the start
		{0x3fe, 4, nil, 0}, // straddles the end into the next device
		{0x3f8, 9, nil, 0}, // longer than the device
		{0x404, 1, nil, 0}, // just above
		{0x3f8, 0, nil, 0}, // empty access
		{^uint64(0), 1, nil, 0},
		{0, 1, nil, 0},
	}
	for _, tt := range tests {
		for _, write := range []bool{false, true} {
			lo.count.Store(0)
			hi.count.Store(0)
			data := make([]byte, tt.n)
			var ok bool
			if write {
				ok = b.Write(tt.addr, data)
			} else {
				ok = b.Read(tt.addr, data)
			}
			if ok != (tt.want != nil) {
				t.Errorf("write=%v addr %#x len %d: handled = %v, want %v", write, tt.addr, tt.n, ok, tt.want != nil)
				continue
			}
			if tt.want == nil {
				if lo.count.Load()+hi.count.Load() != 0 {
					t.Errorf("addr %#x len %d: a device was called for an unhandled access", tt.addr, tt.n)
				}
				continue
			}
			if tt.want.count.Load() != 1 || tt.want.off != tt.wantOff || tt.want.n != tt.n {
				t.Errorf("write=%v addr %#x: device saw offset %#x len %d, want %#x len %d",
					write, tt.addr, tt.want.off, tt.want.n, tt.wantOff, tt.n)
			}
			if !write && data[0] != tt.want.mark {
				t.Errorf("addr %#x: read %#x, want %#x", tt.addr, data[0], tt.want.mark)
			}
		}
	}
}

func TestBusDevices(t *testing.T) {
	b := NewBus("pio")
	for _, r := range []BusRange{{0x600, 1, "power"}, {0x60, 5, "i8042"}, {0x3f8, 8, "com1"}} {
		if err := b.Insert(r.Base, r.Size, r.Name, &recorder{}); err != nil {
			t.Fatal(err)
		}
	}
	got := b.Devices()
	want := []BusRange{{0x60, 5, "i8042"}, {0x3f8, 8, "com1"}, {0x600, 1, "power"}}
	if len(got) != len(want) {
		t.Fatalf("Devices() = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("Devices() = %v, want %v", got, want)
		}
	}
}

// TestBusConcurrent runs lookups from several goroutines while devices are
// inserted; run with -race.
func TestBusConcurrent(t *testing.T) {
	b := NewBus("mmio")
	devs := make([]*recorder, 8)
	for i := range devs {
		devs[i] = &recorder{mark: byte(i)}
		if err := b.Insert(uint64(i)*0x1000, 0x100, "d", devs[i]); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 4)
			for i := range 2000 {
				addr := uint64((g+i)%8)*0x1000 + uint64(i%0x100)&^3
				if i%2 == 0 {
					if !b.Read(addr, buf) || buf[0] != byte((g+i)%8) {
						t.Errorf("read %#x: got %v", addr, buf)
						return
					}
				} else if !b.Write(addr, buf) {
					t.Errorf("write %#x not handled", addr)
					return
				}
			}
		}()
	}
	for i := range 50 {
		if err := b.Insert(0x100000+uint64(i)*0x10, 0x10, "late", &recorder{}); err != nil {
			t.Error(err)
		}
		_ = b.Devices()
	}
	wg.Wait()
}

func BenchmarkBusRead(b *testing.B) {
	bus := NewBus("pio")
	for i := range 16 {
		if err := bus.Insert(uint64(i)*0x100, 8, "d", &recorder{}); err != nil {
			b.Fatal(err)
		}
	}
	buf := make([]byte, 1)
	for b.Loop() {
		bus.Read(0x805, buf)
	}
}
