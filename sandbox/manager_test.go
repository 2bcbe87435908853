package sandbox

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sietch-vm/sietch/wire/control"
)

// fakeVMM is the testdata/fakevmm binary: the control protocol without a
// VM, so the manager's supervision, store and lifecycle run without KVM.
var fakeVMM string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sandbox-test-")
	if err != nil {
		panic(err)
	}
	fakeVMM = filepath.Join(dir, "fakevmm")
	if out, err := exec.Command("go", "build", "-o", fakeVMM, "./testdata/fakevmm").CombinedOutput(); err != nil {
		os.Stderr.Write(out)
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// openFake opens a manager on a new state directory (short: sockets live
// under it) with the fake vmm and one test-guest image "tg".
func openFake(t *testing.T, state string) *Manager {
	t.Helper()
	if state == "" {
		var err error
		if state, err = os.MkdirTemp("", "sbx-"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(state) })
	}
	m, err := Open(Config{StateDir: state, VMMPath: fakeVMM, Defaults: Limits{MemoryMiB: 64},
		Images: []ImageSpec{{Name: "tg", Kind: KindTestguest, Kernel: fakeVMM}}})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func waitState(t *testing.T, m *Manager, id string, want State) Sandbox {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		sb, err := m.Get(id)
		if err == nil && sb.State == want {
			return sb
		}
		if time.Now().After(deadline) {
			t.Fatalf("sandbox %s did not become %s: %+v %v", id, want, sb, err)
		}
	}
}

func alive(pid int) bool { return pid > 0 && syscall.Kill(pid, 0) == nil }

// Create, pause, snapshot, fork, a vmm killed, a restart that takes the
// others up again, delete: the manager's lifecycle against the control
// protocol, with no VM.
func TestLifecycleWithFakeVMM(t *testing.T) {
	m := openFake(t, "")
	ctx := context.Background()
	a, err := m.Create(ctx, CreateSpec{Image: "tg"})
	if err != nil || a.State != StateRunning || !alive(a.VMMPID) {
		t.Fatalf("Create: %+v %v", a, err)
	}
	if _, err := m.Pause(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Pause(ctx, a.ID); !errors.Is(err, ErrWrongState) {
		t.Errorf("pause twice: %v, want ErrWrongState", err)
	}
	if sb, err := m.Resume(ctx, a.ID); err != nil || sb.State != StateRunning {
		t.Fatalf("Resume: %+v %v", sb, err)
	}
	snap, err := m.Snapshot(ctx, a.ID, control.SnapshotFull)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(m.cfg.StateDir, "snapshots", snap.ID, "state")); err != nil {
		t.Errorf("snapshot files: %v", err)
	}
	forks, err := m.Fork(ctx, a.ID, snap.ID, 2)
	if err != nil || len(forks) != 2 {
		t.Fatalf("Fork: %+v %v", forks, err)
	}
	if err := m.DeleteSnapshot(snap.ID); !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), forks[0].ID) {
		t.Errorf("delete a snapshot two forks run from: %v", err)
	}

	syscall.Kill(forks[0].VMMPID, syscall.SIGKILL)
	failed := waitState(t, m, forks[0].ID, StateFailed)
	if !strings.Contains(failed.Reason, "SIGKILL") || failed.VMMPID != 0 {
		t.Errorf("killed vmm: %+v", failed)
	}

	// A restart: the running vmm processes are taken up again.
	state := m.cfg.StateDir
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if !alive(a.VMMPID) {
		t.Fatal("Close stopped a vmm; it must leave them running")
	}
	m = openFake(t, state)
	defer m.Close()
	if sb, err := m.Get(a.ID); err != nil || sb.State != StateRunning || sb.VMMPID != a.VMMPID {
		t.Errorf("after a restart: %+v %v; want running with vmm %d", sb, err, a.VMMPID)
	}
	if _, err := m.Pause(ctx, forks[1].ID); err != nil {
		t.Errorf("pause after a restart: %v", err)
	}
	for _, id := range []string{a.ID, forks[0].ID, forks[1].ID} {
		if err := m.Delete(ctx, id); err != nil {
			t.Errorf("Delete %s: %v", id, err)
		}
	}
	for _, pid := range []int{a.VMMPID, forks[1].VMMPID} {
		for deadline := time.Now().Add(5 * time.Second); alive(pid) && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		}
		if alive(pid) {
			t.Errorf("vmm %d still runs after its sandbox was deleted", pid)
		}
	}
	if err := m.DeleteSnapshot(snap.ID); err != nil {
		t.Errorf("delete the snapshot nothing needs now: %v", err)
	}
}

// Each sandbox's vmm gets a jail uid of its own, the lowest free one from
// the base, on its command line; a deleted sandbox's uid is free again.
func TestJailUIDs(t *testing.T) {
	state, err := os.MkdirTemp("", "sbx-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(state) })
	const base = 1_900_000_000
	m, err := Open(Config{StateDir: state, VMMPath: fakeVMM, Defaults: Limits{MemoryMiB: 64}, JailUIDBase: base,
		Images: []ImageSpec{{Name: "tg", Kind: KindTestguest, Kernel: fakeVMM}}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := context.Background()
	uidOf := func(id string) string {
		b, err := os.ReadFile(filepath.Join(state, "sandboxes", id, "fakevmm.args"))
		if err != nil {
			t.Fatal(err)
		}
		args := strings.Split(string(b), "\n")
		for i, a := range args {
			if a == "--jail-uid" && i+1 < len(args) {
				return args[i+1]
			}
		}
		t.Fatalf("sandbox %s: no --jail-uid in %q", id, args)
		return ""
	}
	var ids []string
	for range 3 {
		sb, err := m.Create(ctx, CreateSpec{Image: "tg"})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, sb.ID)
	}
	for i, id := range ids {
		if got, want := uidOf(id), strconv.Itoa(base+i); got != want {
			t.Errorf("sandbox %d (%s): --jail-uid %s, want %s", i, id, got, want)
		}
	}
	if err := m.Delete(ctx, ids[1]); err != nil {
		t.Fatal(err)
	}
	sb, err := m.Create(ctx, CreateSpec{Image: "tg"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := uidOf(sb.ID), strconv.Itoa(base+1); got != want {
		t.Errorf("after a delete: --jail-uid %s, want the freed %s", got, want)
	}
	for _, id := range []string{ids[0], ids[2], sb.ID} {
		m.Delete(ctx, id)
	}
}

// A record that does not decode is skipped with a warning; the others
// load.
func TestStoreSkipsBadRecords(t *testing.T) {
	m := openFake(t, "")
	sb, err := m.Create(context.Background(), CreateSpec{Image: "tg"})
	if err != nil {
		t.Fatal(err)
	}
	state := m.cfg.StateDir
	m.Close()
	db, err := bolt.Open(filepath.Join(state, "sietch.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSandboxes).Put([]byte("sb-garbage"), []byte("{not json"))
	})
	db.Close()
	m = openFake(t, state)
	defer m.Close()
	if _, err := m.Get(sb.ID); err != nil {
		t.Errorf("the good record: %v", err)
	}
	if _, err := m.Get("sb-garbage"); !errors.Is(err, ErrNotFound) {
		t.Errorf("the bad record: %v", err)
	}
	m.Delete(context.Background(), sb.ID)
}

// A template of a test-guest image: built, resumed, kept while a sandbox
// runs from it.
func TestTemplateWithFakeVMM(t *testing.T) {
	m := openFake(t, "")
	defer m.Close()
	ctx := context.Background()
	if _, err := m.BuildTemplate(TemplateSpec{Name: "t", Image: "tg"}); err != nil {
		t.Fatal(err)
	}
	tp, err := m.WaitTemplate(ctx, "t")
	if err != nil || tp.State != TemplateReady {
		t.Fatalf("template: %+v %v", tp, err)
	}
	// Warm contexts need a guest agent, and a language.
	for _, spec := range []TemplateSpec{
		{Name: "c1", Image: "tg", Contexts: []string{"python"}},
		{Name: "c2", Image: "tg", Contexts: []string{"cobol"}},
	} {
		if _, err := m.BuildTemplate(spec); !errors.Is(err, ErrInvalid) {
			t.Errorf("build %+v: %v, want ErrInvalid", spec, err)
		}
	}
	sb, err := m.Create(ctx, CreateSpec{Template: "t"})
	if err != nil || sb.Template != "t" || sb.Snapshot != tp.Snapshot {
		t.Fatalf("create from the template: %+v %v", sb, err)
	}
	if err := m.DeleteTemplate(ctx, "t"); !errors.Is(err, ErrInUse) {
		t.Errorf("delete the template a sandbox runs from: %v", err)
	}
	m.Delete(ctx, sb.ID)
	if err := m.DeleteTemplate(ctx, "t"); err != nil {
		t.Errorf("delete the template: %v", err)
	}
	if got := m.HostKVM(); !strings.Contains(got, "ok") {
		t.Errorf("HostKVM through vmm check --json: %q", got)
	}
}
