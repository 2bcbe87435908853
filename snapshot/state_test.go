package snapshot

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// TestRoundTripRealVCPU captures a real VM's state with package kvm, writes
// it, reads it back and expects every field unchanged.
func TestRoundTripRealVCPU(t *testing.T) {
	want := captureState(t)
	dir := snapshotDir(t, want)
	got, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	want.Version = FormatVersion
	if !reflect.DeepEqual(got, want) {
		gj, _ := json.MarshalIndent(got, "", " ")
		wj, _ := json.MarshalIndent(want, "", " ")
		t.Fatalf("state changed in a round trip:\n%s", firstDiff(gj, wj))
	}
	// The quirks restore depends on survive: MXCSR lives in XSAVE (bytes
	// 24-27 of the legacy area, SDM Vol. 1 §10.5.1), not in kvm_fpu.
	if got.VCPUs[0].XSave.Region[24/4] != want.VCPUs[0].XSave.Region[24/4] || got.VCPUs[0].XSave.Region[24/4] == 0 {
		t.Errorf("MXCSR in XSAVE = %#x, want %#x (non-zero)", got.VCPUs[0].XSave.Region[24/4], want.VCPUs[0].XSave.Region[24/4])
	}
	if len(got.VCPUs[1].MSRs) < 10 {
		t.Errorf("only %d MSRs captured", len(got.VCPUs[1].MSRs))
	}
}

// TestRoundTripEveryField fills every field with distinct values, so that an
// encoder that drops or swaps a field fails.
func TestRoundTripEveryField(t *testing.T) {
	var want State
	fill(reflect.ValueOf(&want).Elem(), rand.New(rand.NewPCG(1, 2)))
	// Make it consistent enough to be written.
	want.Version = FormatVersion
	want.Machine.CPUs = len(want.VCPUs)
	for i := range want.VCPUs {
		want.VCPUs[i].ID = i
		want.VCPUs[i].XCRS.NrXCRs = 1
	}
	want.VM.PICMaster.ChipID, want.VM.PICSlave.ChipID, want.VM.IOAPIC.ChipID = 0, 1, 2
	want.Machine.MemSize = 3 << 20
	want.Machine.Net.MAC = "02:11:22:33:44:55"
	want.Machine.Vsock.CID = 42
	for i := range want.Devices.Virtio {
		want.Devices.Virtio[i].Name = string(rune('a' + i))
	}
	want.Memory = Memory{File: "mem", Size: 3 << 20, Kind: KindDiff, Base: "../base", DirtyPages: make(Bitmap, BitmapWords(3<<20)),
		Regions: []Region{{GPA: 0, Size: 1 << 20}, {GPA: 1 << 32, Size: 2 << 20, Offset: 1 << 20}}}
	want.Memory.DirtyPages.Set(0)
	want.Memory.DirtyPages.Set(700)
	dir := snapshotDir(t, &want)
	got, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*got, want) {
		gj, _ := json.MarshalIndent(got, "", " ")
		wj, _ := json.MarshalIndent(&want, "", " ")
		t.Fatalf("state changed in a round trip:\n%s", firstDiff(gj, wj))
	}
}

// TestStateFileIsCompact keeps the big register blocks out of JSON number
// arrays: a two-vCPU state stays small and readable.
func TestStateFileIsCompact(t *testing.T) {
	dir := snapshotDir(t, captureState(t))
	fi, err := os.Stat(filepath.Join(dir, StateFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > 64<<10 {
		t.Errorf("two-vCPU state file is %d bytes; want under 64 KiB", fi.Size())
	}
}

func TestWriteRefusesIncomplete(t *testing.T) {
	s := captureState(t)
	s.VCPUs = nil
	err := Write(t.TempDir(), s)
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("no vCPUs")) {
		t.Fatalf("Write with no vCPUs: %v; want a refusal naming it", err)
	}
}

func firstDiff(a, b []byte) string {
	al, bl := bytes.Split(a, []byte("\n")), bytes.Split(b, []byte("\n"))
	for i := range min(len(al), len(bl)) {
		if !bytes.Equal(al[i], bl[i]) {
			return fmt.Sprintf("line %d: got  %s\n         want %s", i+1, al[i], bl[i])
		}
	}
	return "(the JSON is identical; a field JSON does not show differs)"
}
