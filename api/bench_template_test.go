package api

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sietch-vm/sietch/api/model"
	"github.com/sietch-vm/sietch/sandbox"
)

// linuxImage is the default Linux image for benchmarks: the project
// kernel and root image from the build (or SIETCH_KERNEL, SIETCH_ROOTFS),
// and an initramfs of this tree's guest-init built here.
func linuxImage(b *testing.B) sandbox.ImageSpec {
	b.Helper()
	find := func(env, rel, target string) string {
		p := os.Getenv(env)
		if p == "" {
			p = filepath.Join("..", rel)
		}
		abs, err := filepath.Abs(p)
		if _, serr := os.Stat(abs); err != nil || serr != nil {
			b.Skipf("%s not built: run `make %s`", rel, target)
		}
		return abs
	}
	kernel := find("SIETCH_KERNEL", "build/kernel/vmlinux", "kernel")
	rootfs := find("SIETCH_ROOTFS", "build/rootfs.ext4", "image")
	dir := b.TempDir()
	init := filepath.Join(dir, "guest-init")
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", init, "../guest-init/cmd/guest-init")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build guest-init: %v\n%s", err, out)
	}
	initrd := filepath.Join(dir, "initramfs.cpio")
	if out, err := exec.Command("go", "run", "../guest-init/cmd/mkinitramfs", "-o", initrd, "--init", init).CombinedOutput(); err != nil {
		b.Fatalf("mkinitramfs: %v\n%s", err, out)
	}
	return sandbox.ImageSpec{Name: "default", Kind: sandbox.KindLinux, Kernel: kernel, Initrd: initrd, RootFS: rootfs,
		Cmdline: "console=ttyS0 reboot=k panic=-1 quiet", MemMiB: 256}
}

// BenchmarkTemplates measures templates on the default Linux image against
// cold boots, over real HTTP with real vmm processes, one run:
//
//   - cold-create-s, warm-create-s: POST /v1/sandboxes from the image (a
//     cold boot) and from the template (a resume with a fresh identity),
//     each until its 201 (running: the agent answered), and their ratio
//     create-speedup-x;
//   - cold-to-exec-s, warm-to-exec-s: the same until an exec of `true`
//     has answered, and exec-speedup-x; exec-next-s is a second exec in
//     the sandbox from the template;
//   - create-p50-ms, create-p99-ms: 20 creates from the template, each
//     until its 201 (running: the agent has answered with its identity);
//   - fork10-s: POST /fork {"count": 10} of a template sandbox until all
//     ten answer;
//   - idle-cpu-s: CPU seconds (vmm and device processes) of one sandbox
//     from the template over its first 10 s;
//   - pss1-MiB, pss10-MiB: summed PSS of that one sandbox alone, and of
//     ten idle sandboxes of the template together.
func BenchmarkTemplates(b *testing.B) {
	img := linuxImage(b)
	e := newEnv(b, func(c *sandbox.Config) { c.Images = []sandbox.ImageSpec{img} })
	execTrue := func(id string) {
		st, r, body := e.exec(id, model.ExecRequest{Cmd: "true"})
		if st != http.StatusOK || r.exit == nil || r.exit.Code != 0 {
			b.Fatalf("exec true in %s: %d %+v %s", id, st, r.exit, body)
		}
	}
	del := func(ids ...string) {
		for _, id := range ids {
			e.call("DELETE", "/v1/sandboxes/"+id, nil, http.StatusNoContent, nil)
		}
	}
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		cold := e.create(model.CreateRequest{Image: "default"})
		coldCreate := time.Since(t0).Seconds()
		execTrue(cold.ID)
		coldS := time.Since(t0).Seconds()
		del(cold.ID)

		tp := e.buildTemplate(model.TemplateRequest{Name: "bench", Image: "default", ReadyTimeoutS: 600})
		if tp.State != model.TemplateReady {
			b.Fatalf("template: %+v", tp)
		}
		t0 = time.Now()
		warm := e.create(model.CreateRequest{Template: "bench"})
		warmCreate := time.Since(t0).Seconds()
		execTrue(warm.ID)
		warmS := time.Since(t0).Seconds()
		t0 = time.Now()
		execTrue(warm.ID)
		execNext := time.Since(t0).Seconds()

		// One idle sandbox: CPU over its first 10 s, then its memory.
		t0 = time.Now()
		one := e.create(model.CreateRequest{Template: "bench"})
		cpu0 := treeCPU(one.VMMPID)
		time.Sleep(10*time.Second - time.Since(t0))
		idleCPU := treeCPU(one.VMMPID) - cpu0
		pss1 := treePSS(one.VMMPID)
		del(warm.ID)

		var lat []time.Duration
		for range 20 {
			t := time.Now()
			sb := e.create(model.CreateRequest{Template: "bench"})
			lat = append(lat, time.Since(t))
			del(sb.ID)
		}
		slices.Sort(lat)

		t0 = time.Now()
		var forks struct{ Sandboxes []model.Sandbox }
		e.call("POST", "/v1/sandboxes/"+one.ID+"/fork", model.ForkRequest{Count: 10}, http.StatusCreated, &forks)
		fork10 := time.Since(t0).Seconds()
		var ids []string
		pss10 := 0.0
		time.Sleep(10 * time.Second) // idle, as after a burst of creates
		for _, f := range forks.Sandboxes {
			ids = append(ids, f.ID)
			pss10 += treePSS(f.VMMPID)
		}
		del(ids...)
		del(one.ID)
		var snaps struct{ Snapshots []model.Snapshot }
		e.call("GET", "/v1/snapshots", nil, http.StatusOK, &snaps)
		for _, s := range snaps.Snapshots {
			if s.Role == "" {
				e.call("DELETE", "/v1/snapshots/"+s.ID, nil, http.StatusNoContent, nil)
			}
		}
		e.call("DELETE", "/v1/templates/bench", nil, http.StatusNoContent, nil)

		b.ReportMetric(coldCreate, "cold-create-s")
		b.ReportMetric(warmCreate, "warm-create-s")
		b.ReportMetric(coldCreate/warmCreate, "create-speedup-x")
		b.ReportMetric(coldS, "cold-to-exec-s")
		b.ReportMetric(warmS, "warm-to-exec-s")
		b.ReportMetric(coldS/warmS, "exec-speedup-x")
		b.ReportMetric(execNext, "exec-next-s")
		b.ReportMetric(ms(lat[len(lat)/2]), "create-p50-ms")
		b.ReportMetric(ms(lat[min(len(lat)-1, len(lat)*99/100)]), "create-p99-ms")
		b.ReportMetric(fork10, "fork10-s")
		b.ReportMetric(idleCPU, "idle-cpu-s")
		b.ReportMetric(pss1/1024, "pss1-MiB")
		b.ReportMetric(pss10/1024, "pss10-MiB")
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1e3 }

// tree is pid and its children (a vmm and its device processes).
func tree(pid int) []int {
	out := []int{pid}
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	for _, f := range strings.Fields(string(b)) {
		if c, err := strconv.Atoi(f); err == nil {
			out = append(out, c)
		}
	}
	return out
}

// treeCPU is the user and system CPU seconds of pid and its children.
func treeCPU(pid int) float64 {
	var ticks int64
	for _, p := range tree(pid) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		// Fields after the command name, which may hold spaces.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) > 12 {
			u, _ := strconv.ParseInt(f[11], 10, 64)
			s, _ := strconv.ParseInt(f[12], 10, 64)
			ticks += u + s
		}
	}
	return float64(ticks) / 100 // USER_HZ
}

// treePSS is the summed Pss, KiB, of pid and its children.
func treePSS(pid int) float64 {
	var kib float64
	for _, p := range tree(pid) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", p))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "Pss:" {
				v, _ := strconv.ParseFloat(f[1], 64)
				kib += v
			}
		}
	}
	return kib
}
