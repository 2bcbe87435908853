package boot

import (
	"reflect"
	"testing"
)

func TestLowMemSize(t *testing.T) {
	for _, tt := range []struct{ mem, want uint64 }{
		{0, 0}, {128 * mib, 128 * mib}, {3 * gib, 3 * gib}, {3*gib + 1, 3 * gib}, {16 * gib, 3 * gib},
	} {
		if got := LowMemSize(tt.mem); got != tt.want {
			t.Errorf("LowMemSize(%#x) = %#x, want %#x", tt.mem, got, tt.want)
		}
	}
}

func TestE820(t *testing.T) {
	base := E820Entry{0, EBDAStart, E820RAM}
	hole := E820Entry{EBDAStart, HighMemStart - EBDAStart, E820Reserved}
	tests := []struct {
		mem  uint64
		want []E820Entry
	}{
		{0, nil},
		{0x1000, []E820Entry{{0, 0x1000, E820RAM}}},
		{EBDAStart, []E820Entry{base}},
		{mib, []E820Entry{base, hole}},
		{128 * mib, []E820Entry{base, hole, {mib, 127 * mib, E820RAM}}},
		{3 * gib, []E820Entry{base, hole, {mib, 3*gib - mib, E820RAM}}},
		{4 * gib, []E820Entry{base, hole, {mib, 3*gib - mib, E820RAM}, {4 * gib, gib, E820RAM}}},
		{8*gib + 4096, []E820Entry{base, hole, {mib, 3*gib - mib, E820RAM}, {4 * gib, 5*gib + 4096, E820RAM}}},
	}
	for _, tt := range tests {
		if got := E820(tt.mem); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("E820(%#x) = %+v, want %+v", tt.mem, got, tt.want)
		}
	}
}

// The fixed structures below 1 MiB do not overlap each other.
func TestLayoutDisjoint(t *testing.T) {
	type area struct {
		name       string
		start, end uint64
	}
	areas := []area{
		{"GDT", GDTAddr, GDTAddr + gdtSize},
		{"TSS", BootTSSAddr, BootTSSAddr + tssLimit + 1},
		{"zero page", ZeroPageAddr, ZeroPageAddr + zpSize},
		{"stack", BootStack - 0xff0, BootStack},
		{"page tables", PML4Addr, PML4Addr + pageTables},
		{"cmdline", CmdlineAddr, CmdlineAddr + CmdlineMax},
		{"MP table", MPTableAddr, MPTableAddr + mpFloatSize + mpHeaderSize + MaxCPUs*mpProcessorSize + (2+IOAPICPins+mpLocalInts)*mpEntrySize},
	}
	for i, a := range areas {
		if a.end > HighMemStart {
			t.Errorf("%s ends at %#x, above 1 MiB", a.name, a.end)
		}
		for _, b := range areas[:i] {
			if a.start < b.end && b.start < a.end {
				t.Errorf("%s [%#x,%#x) overlaps %s [%#x,%#x)", a.name, a.start, a.end, b.name, b.start, b.end)
			}
		}
	}
}
