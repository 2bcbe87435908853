package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sietch-vm/sietch/internal/cgroups"
	"github.com/sietch-vm/sietch/testguest"
)

// vmm run --cgroup joins the groups before it starts anything: its device
// processes are born in them.
func TestCgroupJoin(t *testing.T) {
	g := testGroup(t, "vm", cgroups.ForSandbox(1, 64))
	ctx, cancel := context.WithTimeout(t.Context(), runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, vmmBin, "run", "--kernel", testguest.Path(t, "counter"), "--mem", "64M",
		"--cmdline", "n=100000000000", "--rng", "--cgroup", strings.Join(g.Dirs(), ","))
	var stdout, stderr syncOutput
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	waitOutput(t, &stdout, done, "counter: start")
	var pids []int
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if pids, err = g.Procs(); err != nil {
			t.Fatal(err)
		}
		if len(pids) >= 2 {
			break
		}
	}
	if !slices.Contains(pids, cmd.Process.Pid) {
		t.Fatalf("the vmm (pid %d) is not in its group: %v", cmd.Process.Pid, pids)
	}
	rng := false
	for _, p := range pids {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(p) + "/cmdline")
		rng = rng || strings.Contains(string(b), "device\x00rng")
	}
	if !rng {
		t.Fatalf("no rng device process among the group's %v", pids)
	}
	st, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cgroup v%d, processes %v: %+v", g.Version(), pids, st)
	cancel()
	<-done
	if err := g.Remove(); err != nil {
		t.Fatal(err)
	}
}

// A guest that would use more CPU than its group allows meets the limit:
// the counter guest spins its vCPU flat out in a group whose quota is a
// fifth of a CPU, and the kernel's own counters say the group was held
// back (throttled periods and time). Meanwhile another VM, outside the
// group, runs its count to the end: the hog takes no more than its share.
func TestCgroupHoldsCPUHog(t *testing.T) {
	lim := cgroups.ForSandbox(1, 64)
	lim.CPUQuotaUS = cgroups.CPUPeriodUS / 5
	g := testGroup(t, "hog", lim)
	ctx, cancel := context.WithTimeout(t.Context(), runTimeout)
	defer cancel()
	hog := exec.CommandContext(ctx, vmmBin, "run", "--kernel", testguest.Path(t, "counter"), "--mem", "64M",
		"--cmdline", "n=100000000000", "--cgroup", strings.Join(g.Dirs(), ","))
	var stdout syncOutput
	hog.Stdout = &stdout
	if err := hog.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { hog.Wait(); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	waitOutput(t, &stdout, done, "counter: start")

	// The other VM counts to the end while the hog spins.
	if r := runGuest(t, "counter", "--cmdline", "n=300000000"); !strings.Contains(r.stdout, "counter: ok") {
		t.Fatalf("the VM beside the hog did not finish its count: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	var st cgroups.Stats
	var err error
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if st, err = g.Stats(); err != nil {
			t.Fatal(err)
		}
		if st.CPUThrottled > 0 || time.Now().After(deadline) {
			break
		}
	}
	t.Logf("the hog's group: %d periods, %d throttled (%.2fs held back), %.2fs of CPU", st.CPUPeriods, st.CPUThrottled, st.CPUThrottledSec, st.CPUUserSec+st.CPUSystemSec)
	if st.CPUThrottled == 0 || st.CPUThrottledSec <= 0 {
		t.Errorf("a vCPU spinning in a group of a fifth of a CPU was never throttled: %+v", st)
	}
}

// testGroup makes the cgroup name with limits lim for a test's vmm
// (skipping the test where groups cannot be made) and removes it and its
// parents when the test ends.
func testGroup(t *testing.T, name string, lim cgroups.Limits) *cgroups.Group {
	t.Helper()
	requireKVM(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root to make cgroups")
	}
	l, err := cgroups.Probe("sietch-vmm-test/" + strconv.Itoa(os.Getpid()))
	if err != nil {
		t.Skip(err)
	}
	g := l.Group(name)
	if err := g.Create(lim); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		g.Remove()
		for _, d := range l.ParentDirs() {
			os.Remove(d)
			os.Remove(filepath.Dir(d))
		}
	})
	return g
}
