package api

import (
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sietch-vm/sietch/api/model"
	"github.com/sietch-vm/sietch/sandbox"
)

// BenchmarkCreateFromSnapshot measures, over real HTTP against real vmm
// processes (the counter test guest halted after its count: idle, 64 MiB),
// the latency of
// POST /v1/sandboxes {"snapshot": …} until the 201 answer with a running
// sandbox (p50, p99 over the rounds), the rate of creates with 4 clients at
// once, and sietchd's memory per idle sandbox (Go heap and RSS growth of
// this process, which is the server, per sandbox held).
func BenchmarkCreateFromSnapshot(b *testing.B) {
	e := newEnv(b, func(c *sandbox.Config) {
		c.Images = append(c.Images, sandbox.ImageSpec{Name: "idle", Kind: sandbox.KindTestguest, Kernel: counterELF, Cmdline: "n=1000 idle=1", MemMiB: 64})
	})
	src := e.create(model.CreateRequest{Image: "idle"})
	e.waitFor(src.ID, "running", func(sb model.Sandbox) bool { return sb.State == model.StateRunning })
	time.Sleep(200 * time.Millisecond) // let it count and halt
	var snap model.Snapshot
	e.call("POST", "/v1/sandboxes/"+src.ID+"/snapshots", "", http.StatusCreated, &snap)

	const rounds = 40
	var lat []time.Duration
	var ids []string
	heap0, rss0 := memNow()
	for i := 0; i < b.N; i++ {
		for range rounds {
			t := time.Now()
			sb := e.create(model.CreateRequest{Snapshot: snap.ID})
			lat = append(lat, time.Since(t))
			if sb.State != model.StateRunning {
				b.Fatalf("created sandbox is %s, want running", sb.State)
			}
			ids = append(ids, sb.ID)
		}
	}
	heap1, rss1 := memNow()
	perHeap := float64(heap1-heap0) / float64(len(ids)) / 1024
	perRSS := float64(rss1-rss0) / float64(len(ids)) / 1024
	for _, id := range ids {
		e.call("DELETE", "/v1/sandboxes/"+id, nil, http.StatusNoContent, nil)
	}

	// Throughput: 4 clients creating (and then deleting) 8 sandboxes each.
	start := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var made []string
	for range 4 {
		wg.Go(func() {
			for range 8 {
				sb := e.create(model.CreateRequest{Snapshot: snap.ID})
				mu.Lock()
				made = append(made, sb.ID)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	rate := float64(len(made)) / time.Since(start).Seconds()
	for _, id := range append(made, src.ID) {
		e.call("DELETE", "/v1/sandboxes/"+id, nil, http.StatusNoContent, nil)
	}

	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1e3
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(rate, "creates/s")
	b.ReportMetric(perHeap, "heap-KiB/sandbox")
	b.ReportMetric(perRSS, "rss-KiB/sandbox")
}

// memNow is this process's live Go heap after a GC and its VmRSS, bytes.
func memNow() (heap, rss int64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return int64(ms.HeapAlloc), 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			rss = kb * 1024
		}
	}
	return int64(ms.HeapAlloc), rss
}
