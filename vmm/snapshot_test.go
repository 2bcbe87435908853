package vmm

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sietch-vm/sietch/snapshot"
	"github.com/sietch-vm/sietch/wire/control"
)

// snapCounterN makes the counter guest run for a couple of seconds here.
const snapCounterN = "n=1000000000"

// runAsync runs m in the background; the returned function waits for and
// returns its exit.
func runAsync(t *testing.T, m *Machine) func() Exit {
	t.Helper()
	done := make(chan struct{})
	var exit Exit
	go func() {
		defer close(done)
		e, err := m.Run(context.Background())
		if err != nil {
			e = Exit{Kind: ExitCrash, VCPU: -1, Reason: err.Error()}
		}
		exit = e
	}()
	t.Cleanup(func() {
		m.Stop("test over")
		<-done
	})
	return func() Exit {
		select {
		case <-done:
		case <-time.After(2 * time.Minute):
			t.Fatal("the VM did not end within 2 minutes")
		}
		return exit
	}
}

// snapshotMidRun starts the counter guest, pauses it after its first
// progress line, snapshots it into dir and stops it. It returns the console
// output up to the snapshot.
func snapshotMidRun(t *testing.T, dir string, cpus int) string {
	t.Helper()
	console := &syncBuffer{}
	m := newGuest(t, "counter", snapCounterN, cpus, console)
	wait := runAsync(t, m)
	waitFor(t, console, "counter: 100000000\n")
	if err := m.Pause(); err != nil {
		t.Fatal(err)
	}
	before := console.String()
	if err := m.Snapshot(dir); err != nil {
		t.Fatal(err)
	}
	if st := m.State(); st != control.StatePaused {
		t.Errorf("state after snapshotting a paused VM = %s, want paused", st)
	}
	m.Stop("snapshot taken")
	if e := wait(); e.Kind != ExitStopped {
		t.Fatalf("original VM ended with %v, want stopped", e)
	}
	if after := console.String(); after != before {
		t.Fatalf("the original printed after its snapshot: %q", strings.TrimPrefix(after, before))
	}
	return before
}

func referenceRun(t *testing.T, cpus int) string {
	t.Helper()
	ref := &syncBuffer{}
	if exit, err := newGuest(t, "counter", snapCounterN, cpus, ref).Run(context.Background()); err != nil || exit.Kind != ExitPowerOff {
		t.Fatalf("reference run: %v %v", exit, err)
	}
	if !strings.Contains(ref.String(), "counter: ok") {
		t.Fatalf("reference run did not finish:\n%s", ref)
	}
	return ref.String()
}

// A counter guest snapshotted mid-run and restored continues from the exact
// count: output before plus after equals an uninterrupted run. A snapshot
// of the restored VM before it runs holds the same registers and memory.
// With two vCPUs the second waits for a SIPI that never comes, and must
// still be waiting after the restore.
func TestSnapshotRestoreCounter(t *testing.T) {
	needKVM(t)
	for _, cpus := range []int{1, 2} {
		t.Run(fmt.Sprintf("%dcpu", cpus), func(t *testing.T) {
			ref := referenceRun(t, cpus)
			dir := filepath.Join(t.TempDir(), "snap")
			before := snapshotMidRun(t, dir, cpus)

			after := &syncBuffer{}
			start := time.Now()
			r, err := Restore(dir, RestoreConfig{Console: after})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("restore of a %d MiB guest took %v", r.cfg.MemSize>>20, time.Since(start))
			t.Cleanup(func() { r.Close() })
			if st := r.State(); st != control.StateCreated {
				t.Errorf("restored VM state = %s, want created", st)
			}

			again := filepath.Join(t.TempDir(), "again")
			if err := r.Snapshot(again); err != nil {
				t.Fatal(err)
			}
			compareSnapshots(t, dir, again)

			wait := runAsync(t, r)
			if e := wait(); e.Kind != ExitPowerOff {
				t.Fatalf("restored VM ended with %v; console after restore:\n%s", e, after)
			}
			if got := before + after.String(); got != ref {
				t.Errorf("output across snapshot/restore differs from an uninterrupted run:\nbefore %q\nafter  %q\nwant   %q", before, after, ref)
			}
		})
	}
}

// compareSnapshots checks that two snapshots hold the same vCPU registers
// and byte-identical memory files.
func compareSnapshots(t *testing.T, a, b string) {
	t.Helper()
	sa, err := snapshot.Read(a)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := snapshot.Read(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(sa.VCPUs) != len(sb.VCPUs) {
		t.Fatalf("%d vCPUs, then %d", len(sa.VCPUs), len(sb.VCPUs))
	}
	for i := range sa.VCPUs {
		va, vb := &sa.VCPUs[i], &sb.VCPUs[i]
		if va.Regs != vb.Regs {
			t.Errorf("vCPU %d regs differ:\n%+v\n%+v", i, va.Regs, vb.Regs)
		}
		if va.Sregs != vb.Sregs {
			t.Errorf("vCPU %d sregs differ:\n%+v\n%+v", i, va.Sregs, vb.Sregs)
		}
		if (va.XSave == nil) != (vb.XSave == nil) || va.XSave != nil && *va.XSave != *vb.XSave {
			t.Errorf("vCPU %d XSAVE areas differ", i)
		}
		if va.MPState != vb.MPState || va.Events != vb.Events || va.DebugRegs != vb.DebugRegs {
			t.Errorf("vCPU %d MP state, events or debug registers differ:\n%+v %+v %+v\n%+v %+v %+v",
				i, va.MPState, va.Events, va.DebugRegs, vb.MPState, vb.Events, vb.DebugRegs)
		}
	}
	if sa.Devices.Serial.IER != sb.Devices.Serial.IER || sa.Devices.I8042 != sb.Devices.I8042 {
		t.Errorf("device state differs: %+v %+v", sa.Devices, sb.Devices)
	}
	ma, err := os.ReadFile(filepath.Join(a, sa.Memory.File))
	if err != nil {
		t.Fatal(err)
	}
	mb, err := os.ReadFile(filepath.Join(b, sb.Memory.File))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ma, mb) {
		for i := 0; i < len(ma) && i < len(mb); i += 4096 {
			if !bytes.Equal(ma[i:i+4096], mb[i:i+4096]) {
				t.Errorf("memory files differ, first at page %#x", i)
				break
			}
		}
		t.Errorf("memory files differ (%d and %d bytes)", len(ma), len(mb))
	}
}

// Corrupted snapshots are refused with a message naming the problem, and
// no VM is left behind.
func TestRestoreRefusesCorruptSnapshots(t *testing.T) {
	needKVM(t)
	good := filepath.Join(t.TempDir(), "good")
	snapshotMidRun(t, good, 1)
	vmsBefore := kvmVMs(t)

	state := func(dir string) string { return filepath.Join(dir, snapshot.StateFile) }
	memory := func(dir string) string { return filepath.Join(dir, MemoryFile) }
	tests := []struct {
		name    string
		corrupt func(t *testing.T, dir string)
		want    error
		msg     string
	}{
		{"bad checksum", func(t *testing.T, dir string) {
			flipByte(t, state(dir), 200)
		}, snapshot.ErrChecksum, "checksum"},
		{"wrong version", func(t *testing.T, dir string) {
			b := readFile(t, state(dir))
			binary.LittleEndian.PutUint32(b[8:], 99)
			writeFile(t, state(dir), b)
		}, snapshot.ErrVersion, "version 99"},
		{"truncated state", func(t *testing.T, dir string) {
			b := readFile(t, state(dir))
			writeFile(t, state(dir), b[:len(b)/2])
		}, snapshot.ErrTruncated, "truncated"},
		{"memory file of the wrong size", func(t *testing.T, dir string) {
			if err := os.Truncate(memory(dir), 1<<20); err != nil {
				t.Fatal(err)
			}
		}, snapshot.ErrMemorySize, "1048576 bytes"},
		{"missing memory file", func(t *testing.T, dir string) {
			if err := os.Remove(memory(dir)); err != nil {
				t.Fatal(err)
			}
		}, snapshot.ErrIncomplete, "missing"},
		{"not a snapshot", func(t *testing.T, dir string) {
			if err := os.Remove(state(dir)); err != nil {
				t.Fatal(err)
			}
		}, snapshot.ErrNotSnapshot, "no state file"},
		{"registers KVM refuses", func(t *testing.T, dir string) {
			// A well-formed, checksummed state that fails half-way through
			// building the VM: paging without protected mode.
			st, err := snapshot.Read(dir)
			if err != nil {
				t.Fatal(err)
			}
			st.VCPUs[0].Sregs.CR0 = 1 << 31
			if err := snapshot.Write(dir, st); err != nil {
				t.Fatal(err)
			}
		}, nil, "KVM_SET_SREGS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "snap")
			copyDir(t, good, dir)
			tt.corrupt(t, dir)
			m, err := Restore(dir, RestoreConfig{})
			if err == nil {
				m.Close()
				t.Fatal("Restore accepted a corrupted snapshot")
			}
			if m != nil {
				t.Error("Restore returned a Machine with its error")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("error %q does not wrap %q", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not say %q", err, tt.msg)
			}
			if n := kvmVMs(t); n != vmsBefore {
				t.Errorf("%d KVM VMs open after the failed restore, %d before", n, vmsBefore)
			}
		})
	}
}

// kvmVMs counts this process's open KVM VM file descriptors.
func kvmVMs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && l == "anon_inode:kvm-vm" {
			n++
		}
	}
	return n
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func flipByte(t *testing.T, path string, off int) {
	t.Helper()
	b := readFile(t, path)
	b[off] ^= 0x20
	writeFile(t, path, b)
}

// copyDir copies the snapshot src to dst, keeping the memory file sparse.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if out, err := exec.Command("cp", "-r", "--sparse=always", "--reflink=auto", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("copy snapshot: %v\n%s", err, out)
	}
}

// A memory file damaged on disk is never run: an eager restore refuses it
// naming the file, and a lazy or on-demand restore stops the VM as a crash
// naming it at the first damaged chunk it would copy in (here every chunk
// with data is damaged, so the guest's first fault is on one).
func TestCorruptMemoryNeverRuns(t *testing.T) {
	needKVM(t)
	good := filepath.Join(t.TempDir(), "good")
	snapshotMidRun(t, good, 1)
	st, err := snapshot.Read(good)
	if err != nil {
		t.Fatal(err)
	}
	if st.Memory.Sums == nil {
		t.Fatal("a new snapshot carries no memory checksums")
	}
	dir := filepath.Join(t.TempDir(), "bad")
	copyDir(t, good, dir)
	mem := readFile(t, filepath.Join(dir, MemoryFile))
	damaged := 0
	for c := 0; c < len(mem); c += snapshot.SumChunk {
		chunk := mem[c : c+snapshot.SumChunk]
		if !bytes.Equal(chunk, make([]byte, len(chunk))) {
			chunk[len(chunk)/2] ^= 0x01
			damaged++
		}
	}
	writeFile(t, filepath.Join(dir, MemoryFile), mem)
	t.Logf("damaged %d chunks", damaged)

	if m, err := Restore(dir, RestoreConfig{Memory: MemoryEager}); err == nil {
		m.Close()
		t.Error("an eager restore accepted damaged memory")
	} else if !errors.Is(err, snapshot.ErrCorrupt) || !strings.Contains(err.Error(), MemoryFile) {
		t.Errorf("eager restore: %v; want ErrCorrupt naming the memory file", err)
	}
	for _, mode := range []string{MemoryLazy, MemoryOnDemand} {
		t.Run(mode, func(t *testing.T) {
			out := &syncBuffer{}
			m, err := Restore(dir, RestoreConfig{Console: out, Memory: mode})
			if err != nil {
				if errors.Is(err, snapshot.ErrCorrupt) {
					return // refused before running: as good
				}
				t.Skipf("no lazy restore here: %v", err)
			}
			t.Cleanup(func() { m.Close() })
			e := runAsync(t, m)()
			if e.Kind != ExitCrash || !strings.Contains(e.Reason, MemoryFile) || !strings.Contains(e.Reason, "CRC-32C") {
				t.Errorf("lazy restore of damaged memory ended with %v; want a crash naming the memory file's checksum", e)
			}
			if out.String() != "" {
				t.Errorf("the guest ran on damaged memory and printed %q", out)
			}
			// A snapshot of it is refused, not left waiting for pages
			// that will never come in.
			done := make(chan error, 1)
			go func() { done <- m.Snapshot(filepath.Join(t.TempDir(), "again")) }()
			select {
			case err := <-done:
				if err == nil {
					t.Error("a snapshot of the VM stopped for damaged memory was taken")
				}
			case <-time.After(time.Minute):
				t.Error("a snapshot of the VM stopped for damaged memory hangs")
			}
		})
	}
}
