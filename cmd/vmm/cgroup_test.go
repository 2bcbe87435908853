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
	requireKVM(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root to make cgroups")
	}
	l, err := cgroups.Probe("sietch-vmm-test/" + strconv.Itoa(os.Getpid()))
	if err != nil {
		t.Skip(err)
	}
	g := l.Group("vm")
	if err := g.Create(cgroups.ForSandbox(1, 64)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		g.Remove()
		for _, d := range l.ParentDirs() {
			os.Remove(d)
			os.Remove(filepath.Dir(d))
		}
	})
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
