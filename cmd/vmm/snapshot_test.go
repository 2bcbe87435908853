package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sietch-vm/sietch/testguest"
)

// A counter guest paused and snapshotted through the control socket of one
// vmm process continues in a new `vmm restore` process from the exact
// count: the two consoles together equal an uninterrupted run's.
func TestSnapshotRestoreInNewProcess(t *testing.T) {
	requireKVM(t)
	const n = 1000000000
	cmdline := fmt.Sprintf("n=%d", n)
	ref := runGuest(t, "counter", "--cmdline", cmdline)
	ref.expectOK(t, "counter", fmt.Sprintf("counter: checksum 0x%016x", counterChecksum(n)))

	dir, err := os.MkdirTemp("", "vmmsnap-") // unix socket paths must fit 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "vm.sock")
	snap := filepath.Join(dir, "snap")

	before := snapshotRunning(t, sock, snap, fmt.Sprintf("counter: %d\n", n/10),
		"--kernel", testguest.Path(t, "counter"), "--mem", "64M", "--cmdline", cmdline)

	after := runVMM(t, "restore", "--from", snap)
	if after.code != exitPowerOff {
		t.Fatalf("vmm restore:\n%s", after.dump())
	}
	if got := before + after.stdout; got != ref.stdout {
		t.Errorf("output across snapshot and restore differs from an uninterrupted run:\nbefore %q\nafter  %q\nwant   %q", before, after.stdout, ref.stdout)
	}

	// The snapshot can be restored again: it is not consumed.
	if again := runVMM(t, "restore", "--from", snap); again.stdout != after.stdout {
		t.Errorf("a second restore printed %q, the first %q", again.stdout, after.stdout)
	}
}

// Diff snapshots through the CLI: a full snapshot, a diff one progress
// step later (its memory file far smaller), `vmm restore` of the diff, then
// `vmm flatten` and a restore of the flattened diff with its base deleted:
// both continue the count exactly.
func TestDiffSnapshotFlattenRestore(t *testing.T) {
	requireKVM(t)
	const n = 1000000000
	cmdline := fmt.Sprintf("n=%d", n)
	ref := runGuest(t, "counter", "--cmdline", cmdline)
	dir, err := os.MkdirTemp("", "vmmdiff-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock, full, diff := filepath.Join(dir, "vm.sock"), filepath.Join(dir, "full"), filepath.Join(dir, "diff")
	before := controlRunning(t, sock, fmt.Sprintf("counter: %d\n", n/10), [][]string{
		{"snapshot", "--api-sock", sock, "--dir", full},
		{"wait", fmt.Sprintf("counter: %d\n", 2*n/10)},
		{"pause", "--api-sock", sock},
		{"snapshot", "--api-sock", sock, "--dir", diff, "--kind", "diff"},
		{"stop", "--api-sock", sock},
	}, "--kernel", testguest.Path(t, "counter"), "--mem", "64M", "--cmdline", cmdline)

	var dst, fst unix.Stat_t
	if unix.Stat(filepath.Join(diff, "memory"), &dst) != nil || unix.Stat(filepath.Join(full, "memory"), &fst) != nil {
		t.Fatal("snapshot memory files missing")
	}
	t.Logf("full memory file %d KiB on disk, diff %d KiB", fst.Blocks/2, dst.Blocks/2)
	if dst.Blocks*4 > fst.Blocks {
		t.Errorf("diff memory file takes %d blocks, the full one %d: a diff of one step should be far smaller", dst.Blocks, fst.Blocks)
	}
	restore := func(what string) {
		t.Helper()
		r := runVMM(t, "restore", "--from", diff)
		if r.code != exitPowerOff {
			t.Fatalf("vmm restore --from %s (%s):\n%s", diff, what, r.dump())
		}
		if got := before + r.stdout; got != ref.stdout {
			t.Errorf("output across a %s snapshot and restore differs from an uninterrupted run:\ngot  %q\nwant %q", what, got, ref.stdout)
		}
	}
	restore("diff")
	if r := runVMM(t, "flatten", "--dir", diff); r.code != 0 {
		t.Fatalf("vmm flatten:\n%s", r.dump())
	}
	os.RemoveAll(full) // the flattened snapshot needs its base no more
	restore("flattened diff")
	if r := runVMM(t, "flatten"); r.code != exitUsage {
		t.Errorf("vmm flatten without --dir:\n%s", r.dump())
	}
}

func TestRestoreErrors(t *testing.T) {
	if r := runVMM(t, "restore"); r.code != exitUsage || !strings.Contains(r.stderr, "--from is required") {
		t.Errorf("vmm restore without --from:\n%s", r.dump())
	}
	if r := runVMM(t, "restore", "--from", "/x", "extra"); r.code != exitUsage || !strings.Contains(r.stderr, "Usage: vmm restore") {
		t.Errorf("vmm restore with an extra argument:\n%s", r.dump())
	}
	requireKVM(t)
	dir := t.TempDir()
	if r := runVMM(t, "restore", "--from", dir); r.code != exitError || !strings.Contains(r.stderr, "not a sietch snapshot") {
		t.Errorf("vmm restore of an empty directory:\n%s", r.dump())
	}
	if err := os.WriteFile(filepath.Join(dir, "state"), []byte("SIETCHSN\x01\x00"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := runVMM(t, "restore", "--from", dir); r.code != exitError || !strings.Contains(r.stderr, "truncated") {
		t.Errorf("vmm restore of a truncated state file:\n%s", r.dump())
	}
}

// snapshotRunning starts `vmm run ARGS… --api-sock SOCK` in the background,
// waits for line on its console, then pauses it, snapshots it into snap and
// stops it through the control socket (each client command must succeed,
// and the run must end with the stopped status). It returns the console
// output up to the snapshot.
func snapshotRunning(t *testing.T, sock, snap, line string, args ...string) string {
	t.Helper()
	return controlRunning(t, sock, line, [][]string{
		{"pause", "--api-sock", sock},
		{"snapshot", "--api-sock", sock, "--dir", snap},
		{"stop", "--api-sock", sock},
	}, args...)
}

// controlRunning starts `vmm run args… --api-sock sock`, waits for line on
// its console, then runs each step as a vmm client command; a step
// {"wait", S} waits for S on the console instead. The last step must stop
// the VM. It returns the console output.
func controlRunning(t *testing.T, sock, line string, steps [][]string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), runTimeout)
	cmd := exec.CommandContext(ctx, vmmBin, append(append([]string{"run"}, args...), "--api-sock", sock)...)
	var stdout, stderr syncOutput
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan struct{})
	var runErr error
	go func() {
		runErr = cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	waitOutput(t, &stdout, done, line)
	for _, a := range steps {
		if a[0] == "wait" {
			waitOutput(t, &stdout, done, a[1])
			continue
		}
		if r := runVMM(t, a...); r.code != 0 {
			t.Fatalf("vmm %s:\n%s", strings.Join(a, " "), r.dump())
		}
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("vmm run did not exit after vmm stop")
	}
	var ee *exec.ExitError
	if !errors.As(runErr, &ee) || ee.ExitCode() != exitStopped {
		t.Fatalf("vmm run ended with %v, want exit status %d\nstderr:\n%s", runErr, exitStopped, &stderr)
	}
	return strings.ReplaceAll(stdout.String(), "\r\n", "\n")
}
