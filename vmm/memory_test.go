package vmm

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestLayoutSplitsAroundMMIOGap(t *testing.T) {
	const mib, gib = 1 << 20, 1 << 30
	for _, tc := range []struct {
		size uint64
		want []Region
	}{
		{512 * mib, []Region{{0, 512 * mib, 0}}},
		{3 * gib, []Region{{0, 3 * gib, 0}}},
		{3*gib + 2*mib, []Region{{0, 3 * gib, 0}, {4 * gib, 2 * mib, 3 * gib}}},
		{8 * gib, []Region{{0, 3 * gib, 0}, {4 * gib, 5 * gib, 3 * gib}}},
	} {
		got := Layout(tc.size)
		if len(got) != len(tc.want) {
			t.Fatalf("Layout(%d) = %+v, want %+v", tc.size, got, tc.want)
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("Layout(%d)[%d] = %+v, want %+v", tc.size, i, got[i], tc.want[i])
			}
		}
	}
}

func TestMemorySliceBounds(t *testing.T) {
	m, err := NewMemory(32 << 20)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := m.Slice(0, 32<<20); err != nil {
		t.Errorf("whole RAM: %v", err)
	}
	b, err := m.Slice(0x1000, 4)
	if err != nil {
		t.Fatal(err)
	}
	copy(b, "abcd")
	if string(m.Mapping()[0x1000:0x1004]) != "abcd" {
		t.Error("Slice does not alias guest memory")
	}
	for _, tc := range []struct{ gpa, n uint64 }{
		{32 << 20, 1}, {32<<20 - 1, 2}, {0, 32<<20 + 1}, {1 << 63, 1 << 63}, {^uint64(0), 2},
	} {
		if _, err := m.Slice(tc.gpa, tc.n); err == nil {
			t.Errorf("Slice(%#x, %#x) succeeded outside RAM", tc.gpa, tc.n)
		}
	}
	if _, err := NewMemory(12345); err == nil {
		t.Error("NewMemory accepted a size that is not page-aligned")
	}
}

func TestBuildCmdline(t *testing.T) {
	got := buildCmdline(" console=ttyS0 ", false)
	if got != "console=ttyS0 sietch.poweroff=0x600" {
		t.Errorf("buildCmdline without compat = %q", got)
	}
	got = buildCmdline("console=ttyS0", true)
	for _, p := range append([]string{"sietch.poweroff=0x600"}, compatCmdline...) {
		if !slices.Contains(strings.Fields(got), p) {
			t.Errorf("buildCmdline with compat = %q lacks %q", got, p)
		}
	}
	// What start-up steps add comes last, in step order.
	got = buildCmdline("", false, "virtio_mmio.device=512@0xc0000000:5", "lpj=1")
	if got != "sietch.poweroff=0x600 virtio_mmio.device=512@0xc0000000:5 lpj=1" {
		t.Errorf("buildCmdline with added parameters = %q", got)
	}
}

func TestModeTimingDecision(t *testing.T) {
	for _, tc := range []struct {
		cpl0, cpl3 time.Duration
		want       bool
	}{
		{1, 1, false},     // hardware virtualization
		{3, 1, false},     // noisy hardware
		{900, 1, true},    // emulated kernel mode
		{900, 600, false}, // everything slow (e.g. TCG-like): not this profile
		{60, 0, true},     // user loop too fast to measure
	} {
		mt := ModeTiming{CPL0: tc.cpl0, CPL3: tc.cpl3}
		if got := mt.Emulated(); got != tc.want {
			t.Errorf("%+v.Emulated() = %v, want %v", mt, got, tc.want)
		}
	}
}

func TestProfileCache(t *testing.T) {
	dir := t.TempDir()
	oldCache, oldBoot := profileCachePath, bootIDPath
	t.Cleanup(func() { profileCachePath, bootIDPath = oldCache, oldBoot })
	profileCachePath = dir + "/sub/host-profile"
	bootIDPath = dir + "/boot_id"
	if _, ok := cachedProfile(); ok {
		t.Fatal("a verdict was cached before any probe")
	}
	os.WriteFile(bootIDPath, []byte("boot-1\n"), 0o644)
	recordProfile(true)
	if emulated, ok := cachedProfile(); !ok || !emulated {
		t.Fatalf("cachedProfile = %v, %v after recording emulated", emulated, ok)
	}
	recordProfile(false)
	if emulated, ok := cachedProfile(); !ok || emulated {
		t.Fatalf("cachedProfile = %v, %v after recording native", emulated, ok)
	}
	os.WriteFile(bootIDPath, []byte("boot-2\n"), 0o644)
	if _, ok := cachedProfile(); ok {
		t.Error("a verdict from another boot was used")
	}
	os.WriteFile(profileCachePath, []byte("garbage"), 0o644)
	if _, ok := cachedProfile(); ok {
		t.Error("a corrupt cache was used")
	}
}
