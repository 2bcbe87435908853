package cgroups

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// This host's kind (hybrid: v1 hierarchies, cgroup2 with hugetlb only).
const hybridMountinfo = `25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 25 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:28 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
33 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
34 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:32 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
37 31 0:33 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
38 31 0:34 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
`

const hybridSelf = `9:name=systemd:/
8:pids:/
7:blkio:/
4:memory:/process_api/abc
2:cpuacct:/
1:cpu:/
0::/
`

func TestProbe(t *testing.T) {
	noFile := func(string) ([]byte, error) { return nil, os.ErrNotExist }
	hugetlbOnly := func(p string) ([]byte, error) {
		if p == "/sys/fs/cgroup/unified/cgroup.controllers" {
			return []byte("hugetlb\n"), nil
		}
		return nil, os.ErrNotExist
	}
	all := func(p string) ([]byte, error) { return []byte("cpuset cpu io memory hugetlb pids rdma misc\n"), nil }
	for _, tc := range []struct {
		name      string
		mountinfo string
		self      string
		read      func(string) ([]byte, error)
		want      Layout
		err       string
	}{
		{
			name: "hybrid host: v1, nested under our own memory group", mountinfo: hybridMountinfo, self: hybridSelf, read: hugetlbOnly,
			want: Layout{V1: map[string]string{
				"cpu":     "/sys/fs/cgroup/cpu/sietch/h",
				"cpuacct": "/sys/fs/cgroup/cpuacct/sietch/h",
				"memory":  "/sys/fs/cgroup/memory/process_api/abc/sietch/h",
				"pids":    "/sys/fs/cgroup/pids/sietch/h",
				"blkio":   "/sys/fs/cgroup/blkio/sietch/h",
			}},
		},
		{
			name: "hybrid host whose unified mount has the controllers: v2", mountinfo: hybridMountinfo, self: hybridSelf, read: all,
			want: Layout{V2: "/sys/fs/cgroup/unified/sietch/h"},
		},
		{
			name:      "pure v2, in a service's group",
			mountinfo: "30 25 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
			self:      "0::/system.slice/sietchd.service\n", read: all,
			want: Layout{V2: "/sys/fs/cgroup/system.slice/sietchd.service/sietch/h"},
		},
		{
			name:      "v2 in a container: the mount's root is our group",
			mountinfo: "30 25 0:26 /kubepods/pod1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
			self:      "0::/kubepods/pod1\n", read: all,
			want: Layout{V2: "/sys/fs/cgroup/sietch/h"},
		},
		{
			name:      "v1 with cpu and cpuacct mounted together",
			mountinfo: "33 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n35 31 0:31 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n36 31 0:32 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n",
			self:      "", read: noFile,
			want: Layout{V1: map[string]string{
				"cpu": "/sys/fs/cgroup/cpu,cpuacct/sietch/h", "cpuacct": "/sys/fs/cgroup/cpu,cpuacct/sietch/h",
				"memory": "/sys/fs/cgroup/memory/sietch/h", "pids": "/sys/fs/cgroup/pids/sietch/h",
			}},
		},
		{
			name:      "no pids controller anywhere",
			mountinfo: "33 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n35 31 0:31 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n",
			read:      noFile, err: "pids",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := probe(strings.NewReader(tc.mountinfo), tc.self, "sietch/h", tc.read)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("probe = %+v, %v; want an error naming %q", got, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("probe =\n%+v\nwant\n%+v", got, tc.want)
			}
		})
	}
}

func TestForSandbox(t *testing.T) {
	for _, tc := range []struct {
		cpus, mem int
		want      Limits
	}{
		{1, 128, Limits{CPUPeriodUS: 100000, CPUQuotaUS: 125000, MemoryBytes: (128 + OverheadMiB) << 20, Pids: BasePids + 8, IOWeight: 100}},
		{4, 2048, Limits{CPUPeriodUS: 100000, CPUQuotaUS: 425000, MemoryBytes: (2048 + OverheadMiB) << 20, Pids: BasePids + 32, IOWeight: 100}},
	} {
		if got := ForSandbox(tc.cpus, tc.mem); got != tc.want {
			t.Errorf("ForSandbox(%d, %d) = %+v, want %+v", tc.cpus, tc.mem, got, tc.want)
		}
	}
}

// fakeV2 is a unified hierarchy in a temporary directory: the root
// offers the controllers, as cgroupfs would show them.
func fakeV2(t *testing.T) (root string, l Layout) {
	root = t.TempDir()
	put(t, root, "cgroup.controllers", "cpuset cpu io memory pids")
	put(t, root, "cgroup.subtree_control", "")
	return root, Layout{V2: filepath.Join(root, "sietch", "h")}
}

func put(t *testing.T, dir, name, v string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o644); err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestV2CreateStatsRemove(t *testing.T) {
	root, l := fakeV2(t)
	// cgroupfs gives each new group the files its parent hands down; in
	// the fake tree the groups above get cgroup.controllers from the test.
	put(t, filepath.Join(root, "sietch"), "cgroup.controllers", "cpu io memory pids")
	put(t, filepath.Join(root, "sietch", "h"), "cgroup.controllers", "cpu memory pids")
	put(t, filepath.Join(root, "sietch", "h", "sb-1"), "io.weight", "default 100")
	g := l.Group("sb-1")
	if err := g.Create(ForSandbox(2, 256)); err != nil {
		t.Fatal(err)
	}
	if got := g.Dirs(); !reflect.DeepEqual(got, []string{filepath.Join(root, "sietch/h/sb-1")}) {
		t.Fatalf("Dirs = %v", got)
	}
	for dir, want := range map[string]string{
		root:                            "+cpu +memory +pids +io",
		filepath.Join(root, "sietch"):   "+cpu +memory +pids +io",
		filepath.Join(root, "sietch/h"): "+cpu +memory +pids", // io is not offered there
	} {
		if got := get(t, dir, "cgroup.subtree_control"); got != want {
			t.Errorf("%s: subtree_control = %q, want %q", dir, got, want)
		}
	}
	d := g.Dirs()[0]
	for file, want := range map[string]string{
		"cpu.max":    "225000 100000",
		"memory.max": strconv.Itoa((256 + OverheadMiB) << 20),
		"pids.max":   strconv.Itoa(BasePids + 16),
		"io.weight":  "default 100",
	} {
		if got := get(t, d, file); got != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}
	if _, err := os.Stat(filepath.Join(d, "memory.swap.max")); err == nil {
		t.Error("memory.swap.max written on a host without swap accounting")
	}

	put(t, d, "cpu.stat", "usage_usec 3500000\nuser_usec 2500000\nsystem_usec 1000000\nnr_periods 40\nnr_throttled 7\nthrottled_usec 250000\n")
	put(t, d, "memory.current", "150000000\n")
	put(t, d, "memory.peak", "160000000\n")
	put(t, d, "memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
	put(t, d, "pids.current", "42\n")
	put(t, d, "io.stat", "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n8:16 rbytes=1 wbytes=2 rios=1 wios=1\n")
	st, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	want := Stats{CPUUserSec: 2.5, CPUSystemSec: 1, CPUPeriods: 40, CPUThrottled: 7, CPUThrottledSec: 0.25,
		CPUQuotaUS: 225000, CPUPeriodUS: 100000, MemoryBytes: 150000000, MemoryPeakBytes: 160000000,
		MemoryLimitBytes: (256 + OverheadMiB) << 20, OOMKills: 1, Pids: 42, PidsLimit: BasePids + 16,
		IO: true, IOReadBytes: 4097, IOWriteBytes: 8194}
	if st != want {
		t.Fatalf("Stats =\n%+v\nwant\n%+v", st, want)
	}
	put(t, d, "cgroup.procs", "")
	if err := g.Remove(); err != nil {
		t.Fatal(err)
	}
	if g.Exists() {
		t.Fatal("the group is still there after Remove")
	}
}

func TestV2Unlimited(t *testing.T) {
	_, l := fakeV2(t)
	g := l.Group("sb-2")
	if err := g.Create(Limits{CPUPeriodUS: 100000}); err != nil {
		t.Fatal(err)
	}
	d := g.Dirs()[0]
	if got := get(t, d, "cpu.max"); got != "max 100000" {
		t.Errorf("cpu.max = %q", got)
	}
	put(t, d, "cpu.stat", "user_usec 1\nsystem_usec 1\n")
	put(t, d, "memory.current", "1")
	put(t, d, "pids.current", "1")
	st, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.CPUQuotaUS != 0 || st.MemoryLimitBytes != 0 || st.PidsLimit != 0 || st.IO {
		t.Fatalf("unlimited group: %+v", st)
	}
}

// fakeV1 is v1 hierarchies in a temporary directory.
func fakeV1(t *testing.T) Layout {
	root := t.TempDir()
	l := Layout{V1: map[string]string{}}
	for _, c := range []string{"cpu", "cpuacct", "memory", "pids", "blkio"} {
		l.V1[c] = filepath.Join(root, c, "sietch", "h")
	}
	return l
}

func TestV1FakeCreateStats(t *testing.T) {
	l := fakeV1(t)
	g := l.Group("sb-1")
	if len(g.Dirs()) != 5 {
		t.Fatalf("Dirs = %v", g.Dirs())
	}
	if err := g.Create(ForSandbox(1, 128)); err != nil {
		t.Fatal(err)
	}
	at := func(c string) string { return filepath.Join(l.V1[c], "sb-1") }
	for _, f := range []struct{ ctrl, file, want string }{
		{"cpu", "cpu.cfs_period_us", "100000"},
		{"cpu", "cpu.cfs_quota_us", "125000"},
		{"memory", "memory.limit_in_bytes", strconv.Itoa((128 + OverheadMiB) << 20)},
		{"pids", "pids.max", strconv.Itoa(BasePids + 8)},
	} {
		if got := get(t, at(f.ctrl), f.file); got != f.want {
			t.Errorf("%s = %q, want %q", f.file, got, f.want)
		}
	}
	if _, err := os.Stat(filepath.Join(at("blkio"), "blkio.weight")); err == nil {
		t.Error("blkio.weight written where the scheduler offers none")
	}
	put(t, at("cpuacct"), "cpuacct.usage_user", "1500000000")
	put(t, at("cpuacct"), "cpuacct.usage_sys", "500000000")
	put(t, at("cpu"), "cpu.stat", "nr_periods 10\nnr_throttled 3\nthrottled_time 2000000000\n")
	put(t, at("memory"), "memory.usage_in_bytes", "1000")
	put(t, at("memory"), "memory.max_usage_in_bytes", "2000")
	put(t, at("memory"), "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
	put(t, at("pids"), "pids.current", "9")
	put(t, at("blkio"), "blkio.throttle.io_service_bytes_recursive", "8:0 Read 100\n8:0 Write 200\n8:0 Sync 300\n8:0 Total 300\nTotal 300\n")
	st, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	want := Stats{CPUUserSec: 1.5, CPUSystemSec: 0.5, CPUPeriods: 10, CPUThrottled: 3, CPUThrottledSec: 2,
		CPUQuotaUS: 125000, CPUPeriodUS: 100000, MemoryBytes: 1000, MemoryPeakBytes: 2000,
		MemoryLimitBytes: (128 + OverheadMiB) << 20, OOMKills: 2, Pids: 9, PidsLimit: BasePids + 8,
		IO: true, IOReadBytes: 100, IOWriteBytes: 200}
	if st != want {
		t.Fatalf("Stats =\n%+v\nwant\n%+v", st, want)
	}
	if got := l.Children(); !reflect.DeepEqual(got, []string{"sb-1"}) {
		t.Fatalf("Children = %v", got)
	}
}

// TestReal makes a group in this host's real hierarchies (v2 where it
// has the controllers, else v1), runs a process in it through Join,
// reads its stats, and removes it with the process still inside.
func TestReal(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make cgroups")
	}
	l, err := Probe("sietch-test/" + strconv.Itoa(os.Getpid()))
	if err != nil {
		t.Skip(err)
	}
	t.Logf("cgroup v%d: %+v", l.Version(), l)
	g := l.Group("sb-real")
	if err := g.Create(ForSandbox(1, 64)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		g.Remove()
		for _, d := range l.ParentDirs() {
			os.Remove(d)
			os.Remove(filepath.Dir(d))
		}
	})
	// A child joins the way `vmm run --cgroup` does, then spins.
	cmd := exec.Command("/bin/sh", "-c", `for d in "$@"; do echo $$ > "$d/cgroup.procs" || exit 1; done; while :; do :; done`, "sh")
	cmd.Args = append(cmd.Args, g.Dirs()...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var st Stats
	for deadline := time.Now().Add(10 * time.Second); ; {
		st, err = g.Stats()
		if err != nil {
			t.Fatal(err)
		}
		if st.CPUUserSec+st.CPUSystemSec > 0.05 && st.Pids >= 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("stats: %+v", st)
	if st.Pids < 1 || st.CPUUserSec+st.CPUSystemSec == 0 || st.MemoryBytes == 0 {
		t.Fatalf("the spinning child does not show in its group: %+v", st)
	}
	if st.CPUQuotaUS != 125000 || st.MemoryLimitBytes != (64+OverheadMiB)<<20 || st.PidsLimit != BasePids+8 {
		t.Fatalf("limits read back: %+v", st)
	}
	if err := g.Remove(); err != nil {
		t.Fatal(err)
	}
	if g.Exists() {
		t.Fatal("the group is still there after Remove")
	}
	if err := cmd.Wait(); err == nil {
		t.Fatal("the process in the group was not killed by Remove")
	}
}

func TestJoin(t *testing.T) {
	d := t.TempDir()
	if err := Join([]string{d}); err != nil {
		t.Fatal(err)
	}
	if got := get(t, d, "cgroup.procs"); got != strconv.Itoa(os.Getpid()) {
		t.Fatalf("cgroup.procs = %q", got)
	}
	if err := Join([]string{filepath.Join(d, "missing")}); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("Join of a missing group: %v", err)
	}
	if err := Join(nil); err != nil {
		t.Fatal(err)
	}
}

func TestUnescape(t *testing.T) {
	if got := unescape(`/a\040b\\c`); got != `/a b\\c` {
		t.Fatalf("unescape = %q", got)
	}
}
