package api

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sietch-vm/sietch/api/model"
	"github.com/sietch-vm/sietch/internal/cgroups"
	"github.com/sietch-vm/sietch/sandbox"
)

// A sandbox's vmm runs in a cgroup of its own with limits from its size;
// its stats grow while the counter guest spins; a lower quota throttles
// it (the group's own counters say so); deleting the sandbox removes the
// group.
func TestSandboxCgroup(t *testing.T) {
	requireKVM(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root to make cgroups")
	}
	if _, err := cgroups.Probe("probe"); err != nil {
		t.Skip(err)
	}
	e := newEnv(t, func(c *sandbox.Config) { c.Cgroups = sandbox.CgroupsOn })
	sb := e.create(model.CreateRequest{Image: "counter"})
	waitConsole(t, e, sb.ID, "counter: start n=")

	g, err := cgroups.Of(sb.VMMPID)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range g.Dirs() {
		if filepath.Base(d) != sb.ID {
			t.Fatalf("the vmm runs in group %s, not in one named for its sandbox %s", d, sb.ID)
		}
	}
	pids, err := g.Procs()
	if err != nil || len(pids) == 0 || pids[0] != sb.VMMPID {
		t.Fatalf("the group's processes: %v (%v); want the vmm %d alone (a test guest has no device processes)", pids, err, sb.VMMPID)
	}

	stats := func() model.SandboxStats {
		t.Helper()
		var st model.SandboxStats
		e.call("GET", "/v1/sandboxes/"+sb.ID+"/stats", nil, http.StatusOK, &st)
		return st
	}
	s1 := stats()
	want := cgroups.ForSandbox(1, 64)
	if s1.Cgroup != "v"+strconv.Itoa(g.Version()) || s1.CPULimit != 1.25 || s1.MemoryLimitBytes != want.MemoryBytes || s1.PidsLimit != want.Pids {
		t.Fatalf("stats show limits %+v; want %+v", s1, want)
	}
	if s1.Pids < 2 || s1.MemoryBytes == 0 || s1.NetRxBytes != nil {
		t.Fatalf("stats: %+v", s1)
	}
	time.Sleep(time.Second)
	s2 := stats()
	used := s2.CPUUserS + s2.CPUSystemS - s1.CPUUserS - s1.CPUSystemS
	if used <= 0 {
		t.Fatalf("CPU time did not grow while the counter guest ran: %+v then %+v", s1, s2)
	}
	t.Logf("cgroup v%d: counter guest at 1 vCPU used %.2f CPU s in ~1 s (limit %.2f CPUs); memory %d MiB (peak %d MiB) for 64 MiB of guest; %d tasks",
		g.Version(), used, s2.CPULimit, s2.MemoryBytes>>20, s2.MemoryPeakBytes>>20, s2.Pids)

	var metrics string
	{
		st, b := e.do("GET", "/metrics", nil)
		if st != http.StatusOK {
			t.Fatalf("metrics: %d", st)
		}
		metrics = string(b)
	}
	for _, line := range []string{
		fmt.Sprintf(`sietch_sandbox_cpu_seconds_total{sandbox=%q,mode="system"} `, sb.ID),
		fmt.Sprintf(`sietch_sandbox_memory_limit_bytes{sandbox=%q} %d`, sb.ID, want.MemoryBytes),
		fmt.Sprintf(`sietch_sandbox_cpu_limit{sandbox=%q} 1.25`, sb.ID),
	} {
		if !strings.Contains(metrics, line) {
			t.Errorf("metrics lack %q", line)
		}
	}

	// Drill: a fifth of a CPU for a guest that wants a whole one. The
	// group's own counters, not the clock, show it held back.
	quota := map[int]struct{ file, value string }{1: {"cpu.cfs_quota_us", "20000"}, 2: {"cpu.max", "20000 100000"}}[g.Version()]
	cpuDir := g.Dirs()[0]
	for _, d := range g.Dirs() {
		if _, err := os.Stat(filepath.Join(d, quota.file)); err == nil {
			cpuDir = d
		}
	}
	if err := os.WriteFile(filepath.Join(cpuDir, quota.file), []byte(quota.value), 0); err != nil {
		t.Fatal(err)
	}
	s3 := stats()
	time.Sleep(1500 * time.Millisecond)
	s4 := stats()
	if s4.CPUThrottledPeriods <= s3.CPUThrottledPeriods {
		t.Fatalf("at 0.2 CPUs the spinning guest was never throttled: %+v then %+v", s3, s4)
	}
	t.Logf("at a 0.2 CPU quota: %.2f CPU s in ~1.5 s, throttled in %d of %d periods",
		s4.CPUUserS+s4.CPUSystemS-s3.CPUUserS-s3.CPUSystemS, s4.CPUThrottledPeriods-s3.CPUThrottledPeriods, s4.CPUPeriods-s3.CPUPeriods)

	e.call("DELETE", "/v1/sandboxes/"+sb.ID, nil, http.StatusNoContent, nil)
	if g.Exists() {
		t.Fatalf("the sandbox's group %v is still there after delete", g.Dirs())
	}
	st, b := e.do("GET", "/v1/sandboxes/"+sb.ID+"/stats", nil)
	if st != http.StatusNotFound {
		t.Fatalf("stats of a deleted sandbox: %d %s", st, b)
	}
}
