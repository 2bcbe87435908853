package kvm

import (
	"testing"
	"unsafe"
)

// fakeVCPU is a VCPU over ordinary memory, for testing the kvm_run
// accessors without KVM.
func fakeVCPU(size int) *VCPU {
	words := make([]uint64, (size+7)/8)
	mem := unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), size)
	return &VCPU{fd: -1, mem: mem, run: (*Run)(unsafe.Pointer(&mem[0]))}
}

func TestExitReasonString(t *testing.T) {
	for _, tc := range []struct {
		r    ExitReason
		want string
	}{
		{ExitIO, "IO"},
		{ExitMMIO, "MMIO"},
		{ExitHLT, "HLT"},
		{ExitInternalError, "INTERNAL_ERROR"},
		{ExitSystemEvent, "SYSTEM_EVENT"},
		{ExitReason(1000), "EXIT_1000"},
	} {
		if got := tc.r.String(); got != tc.want {
			t.Errorf("ExitReason(%d).String() = %q, want %q", uint32(tc.r), got, tc.want)
		}
	}
}

func setIOExit(c *VCPU, size uint8, count uint32, off uint64) {
	c.run.ExitReason = uint32(ExitIO)
	*union[exitIO](c.run) = exitIO{Direction: IODirIn, Size: size, Port: 0x3f8, Count: count, DataOffset: off}
}

func TestIODataBounds(t *testing.T) {
	const mapSize = 8192
	for _, tc := range []struct {
		name   string
		size   uint8
		count  uint32
		off    uint64
		wantOK bool
	}{
		{"one byte", 1, 1, 4096, true},
		{"rep insw", 2, 100, 4096, true},
		{"ends at map end", 4, 1, mapSize - 4, true},
		{"crosses map end", 4, 2, mapSize - 4, false},
		{"offset past end", 1, 1, mapSize + 1, false},
		{"huge count", 4, 1 << 31, 4096, false},
		{"offset overflow", 1, 2, ^uint64(0), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := fakeVCPU(mapSize)
			setIOExit(c, tc.size, tc.count, tc.off)
			data, err := c.IOData()
			if tc.wantOK != (err == nil) {
				t.Fatalf("IOData: %v, want ok=%v", err, tc.wantOK)
			}
			if err == nil && len(data) != int(tc.size)*int(tc.count) {
				t.Fatalf("IOData: %d bytes, want %d", len(data), int(tc.size)*int(tc.count))
			}
		})
	}
}

func FuzzIOData(f *testing.F) {
	f.Add(uint8(1), uint32(1), uint64(4096))
	f.Add(uint8(4), uint32(1024), uint64(4000))
	f.Add(uint8(255), uint32(1<<32-1), ^uint64(0))
	f.Fuzz(func(t *testing.T, size uint8, count uint32, off uint64) {
		c := fakeVCPU(8192)
		setIOExit(c, size, count, off)
		data, err := c.IOData()
		if err != nil {
			return
		}
		if len(data) != int(size)*int(count) || off+uint64(len(data)) > 8192 {
			t.Fatalf("IOData returned %d bytes at %d for size %d count %d", len(data), off, size, count)
		}
	})
}

func TestMMIODataClamped(t *testing.T) {
	c := fakeVCPU(4096)
	m := union[exitMMIO](c.run)
	*m = exitMMIO{PhysAddr: 0xd0000000, Len: 4000, IsWrite: 1}
	addr, data, write := c.run.MMIO()
	if addr != 0xd0000000 || !write || len(data) != 8 {
		t.Fatalf("MMIO() = %#x, %d bytes, write %v; want 0xd0000000, 8 bytes, true", addr, len(data), write)
	}
	m.Len = 2
	_, data, _ = c.run.MMIO()
	data[1] = 0x99
	if len(data) != 2 || m.Data[1] != 0x99 {
		t.Fatalf("MMIO data %d bytes does not alias kvm_run", len(data))
	}
}

func TestSystemEventAndInternalError(t *testing.T) {
	c := fakeVCPU(4096)
	*union[exitSystemEvent](c.run) = exitSystemEvent{Type: SystemEventReset, NData: 1, Data: [16]uint64{7}}
	if typ, flags := c.run.SystemEvent(); typ != SystemEventReset || flags != 7 {
		t.Errorf("SystemEvent() = %d, %d; want reset, 7", typ, flags)
	}
	*union[exitInternal](c.run) = exitInternal{Suberror: InternalErrorEmulation, NData: 99, Data: [16]uint64{1, 2}}
	sub, data := c.run.InternalError()
	if sub != InternalErrorEmulation || len(data) != 16 || data[1] != 2 {
		t.Errorf("InternalError() = %d, %v; want emulation, 16 words (ndata clamped)", sub, data)
	}
}

func TestImmediateExitByte(t *testing.T) {
	c := fakeVCPU(4096)
	c.run.RequestInterruptWindow = 1
	c.SetImmediateExit(true)
	if c.run.ImmediateExit != 1 || c.run.RequestInterruptWindow != 1 {
		t.Fatalf("immediate_exit %d request_interrupt_window %d; want 1 1", c.run.ImmediateExit, c.run.RequestInterruptWindow)
	}
	c.SetImmediateExit(false)
	if c.run.ImmediateExit != 0 || c.run.RequestInterruptWindow != 1 {
		t.Fatalf("immediate_exit %d request_interrupt_window %d; want 0 1", c.run.ImmediateExit, c.run.RequestInterruptWindow)
	}
}
