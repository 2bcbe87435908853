package snapshot

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadRefuses corrupts a real snapshot in each way the format guards
// against and expects a refusal that names the problem.
func TestReadRefuses(t *testing.T) {
	good := captureState(t)
	reframe := func(edit func(s *State)) func(t *testing.T, dir string, b []byte) []byte {
		return func(t *testing.T, dir string, b []byte) []byte {
			var s State // a deep copy, so edits do not leak into good
			if j, err := json.Marshal(good); err != nil || json.Unmarshal(j, &s) != nil {
				t.Fatalf("copy state: %v", err)
			}
			s.Version = FormatVersion
			edit(&s)
			p, err := json.Marshal(&s)
			if err != nil {
				t.Fatal(err)
			}
			return frame(p)
		}
	}
	// edit replaces old with new in the payload and frames it again.
	edit := func(old, new string) func(t *testing.T, dir string, b []byte) []byte {
		return func(t *testing.T, _ string, b []byte) []byte {
			p := bytes.Replace(b[headerSize:], []byte(old), []byte(new), 1)
			if bytes.Equal(p, b[headerSize:]) {
				t.Fatalf("payload has no %s", old)
			}
			return frame(p)
		}
	}
	for _, tc := range []struct {
		name   string
		mutate func(t *testing.T, dir string, b []byte) []byte // returns the new state file; nil removes it
		want   error
		msg    string
	}{
		{"no state file", func(*testing.T, string, []byte) []byte { return nil }, ErrNotSnapshot, "no state file"},
		{"wrong magic", func(_ *testing.T, _ string, b []byte) []byte { b[0] = 'X'; return b }, ErrNotSnapshot, `does not start with "SIETCHSN"`},
		{"not a snapshot at all", func(*testing.T, string, []byte) []byte { return []byte("{\"hello\": 1}\n") }, ErrNotSnapshot, "SIETCHSN"},
		{"version+1", func(_ *testing.T, _ string, b []byte) []byte {
			binary.LittleEndian.PutUint32(b[8:], FormatVersion+1)
			return b
		}, ErrVersion, "snapshot format version 2, this vmm reads version 1"},
		{"payload byte flipped", func(_ *testing.T, _ string, b []byte) []byte { b[headerSize+100] ^= 0x20; return b }, ErrChecksum, "SHA-256"},
		{"last payload byte flipped", func(_ *testing.T, _ string, b []byte) []byte { b[len(b)-1] ^= 1; return b }, ErrChecksum, "SHA-256"},
		{"checksum byte flipped", func(_ *testing.T, _ string, b []byte) []byte { b[30] ^= 1; return b }, ErrChecksum, "SHA-256"},
		{"trailing garbage", func(_ *testing.T, _ string, b []byte) []byte { return append(b, 0) }, ErrChecksum, "1 bytes after"},
		{"truncated payload", func(_ *testing.T, _ string, b []byte) []byte { return b[:len(b)-1] }, ErrTruncated, "payload bytes"},
		{"truncated header", func(_ *testing.T, _ string, b []byte) []byte { return b[:20] }, ErrTruncated, "header"},
		{"empty file", func(*testing.T, string, []byte) []byte { return []byte{} }, ErrTruncated, "0 bytes"},
		{"length says more", func(_ *testing.T, _ string, b []byte) []byte {
			binary.LittleEndian.PutUint64(b[12:], 1<<62)
			return b
		}, ErrTruncated, "payload bytes"},
		{"memory file wrong size", func(t *testing.T, dir string, b []byte) []byte {
			if err := os.Truncate(filepath.Join(dir, "memory"), 12345); err != nil {
				t.Fatal(err)
			}
			return b
		}, ErrMemorySize, "memory file memory is 12345 bytes, the state says 67108864"},
		{"memory file missing", func(t *testing.T, dir string, b []byte) []byte {
			if err := os.Remove(filepath.Join(dir, "memory")); err != nil {
				t.Fatal(err)
			}
			return b
		}, ErrIncomplete, "memory file memory is missing"},
		{"zero vCPUs", reframe(func(s *State) { s.VCPUs = nil }), ErrIncomplete, "no vCPUs"},
		{"vCPU IDs out of order", reframe(func(s *State) { s.VCPUs[0].ID, s.VCPUs[1].ID = 1, 0 }), ErrIncomplete, "vCPU 0 has ID 1"},
		{"CPU count disagrees", reframe(func(s *State) { s.Machine.CPUs = 3 }), ErrIncomplete, "machine has 3 vCPUs, the state holds 2"},
		{"regions do not cover memory", reframe(func(s *State) { s.Memory.Regions = []Region{{Size: 32 << 20}} }), ErrIncomplete, "memory regions cover 33554432 bytes, the memory is 67108864"},
		{"memory size disagrees", reframe(func(s *State) { s.Memory.Size = 32 << 20; s.Memory.Regions[0].Size = 32 << 20 }), ErrIncomplete, "memory is 33554432 bytes, the machine has 67108864"},
		{"memory file escapes", reframe(func(s *State) { s.Memory.File = "../memory" }), ErrIncomplete, "inside the snapshot directory"},
		{"diff without bitmap", reframe(func(s *State) { s.Memory.Kind, s.Memory.Base = KindDiff, "../base" }), ErrIncomplete, "bitmap has 0 words"},
		{"disk without identity", reframe(func(s *State) { s.Machine.Disks = []Disk{{Path: "/d.img"}} }), ErrIncomplete, "neither a content hash nor a clone"},
		{"payload version disagrees", reframe(func(s *State) { s.Version = 9 }), ErrVersion, "format version 9 inside a version 1 file"},
		{"LAPIC block short", func(t *testing.T, _ string, b []byte) []byte {
			p := bytes.Replace(b[headerSize:], []byte(`"LAPIC":"`), []byte(`"LAPIC":"AAAA`), 1)
			p = bytes.Replace(p, []byte(`AAAA`), nil, 2) // keep base64 valid, change the length
			return frame(p)
		}, ErrIncomplete, "LAPIC"},
		{"unknown field", func(t *testing.T, _ string, b []byte) []byte {
			return frame(bytes.Replace(b[headerSize:], []byte(`{"Version":1,`), []byte(`{"Version":1,"Extra":true,`), 1))
		}, ErrIncomplete, "Extra"},
		// A field renamed since the snapshot was written must be refused at
		// any depth, not read as zero.
		{"unknown field in a vCPU", edit(`"Regs":{"RAX"`, `"Regs":{"RAXX":1,"RAX"`), ErrIncomplete, `vCPU: json: unknown field "RAXX"`},
		{"unknown field in the PIT", edit(`"PIT":{`, `"PIT":{"Junk":1,`), ErrIncomplete, `VM: json: unknown field "Junk"`},
		{"unknown field in a transport", edit(`"Transport":{`, `"Transport":{"Junk":1,`), ErrIncomplete, `devices: json: unknown field "Junk"`},
		{"data after the state", func(_ *testing.T, _ string, b []byte) []byte {
			return frame(append(bytes.Clone(b[headerSize:]), '}'))
		}, ErrIncomplete, "data after the state"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := snapshotDir(t, good)
			path := filepath.Join(dir, StateFile)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if nb := tc.mutate(t, dir, b); nb == nil {
				os.Remove(path)
			} else if err := os.WriteFile(path, nb, 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := Read(dir)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Read = %v, %v; want %v", s, err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("Read error %q does not say %q", err, tc.msg)
			}
		})
	}
}

// TestReadTruncatedEverywhere cuts a state file at every length and expects
// ErrTruncated each time.
func TestReadTruncatedEverywhere(t *testing.T) {
	dir := snapshotDir(t, captureState(t))
	b, err := os.ReadFile(filepath.Join(dir, StateFile))
	if err != nil {
		t.Fatal(err)
	}
	for n := range len(b) {
		if _, err := decode(bytes.NewReader(b[:n]), int64(n)); !errors.Is(err, ErrTruncated) {
			t.Fatalf("state cut to %d of %d bytes: %v; want ErrTruncated", n, len(b), err)
		}
	}
	if _, err := decode(bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatalf("whole file: %v", err)
	}
}

// TestWriteIsAtomic overwrites a snapshot and leaves no temporary files.
func TestWriteIsAtomic(t *testing.T) {
	s := captureState(t)
	dir := snapshotDir(t, s)
	s.Machine.Cmdline = "second"
	if err := Write(dir, s); err != nil {
		t.Fatal(err)
	}
	got, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.Machine.Cmdline != "second" {
		t.Fatalf("cmdline %q after rewrite", got.Machine.Cmdline)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Fatalf("snapshot dir holds %d entries (%v); want state and memory only", len(ents), ents)
	}
}
