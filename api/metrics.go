package api

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"

	"github.com/sietch-vm/sietch/sandbox"
)

// metrics writes the Prometheus text exposition format (version 0.0.4).
func (s *Server) metrics(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	writeMetrics(w, s.m.Metrics())
}

func writeMetrics(w io.Writer, m sandbox.Metrics) {
	fmt.Fprintln(w, "# HELP sietch_sandboxes Sandboxes by state.")
	fmt.Fprintln(w, "# TYPE sietch_sandboxes gauge")
	for _, st := range sandbox.States {
		fmt.Fprintf(w, "sietch_sandboxes{state=%q} %d\n", st, m.States[st])
	}
	histogram(w, "sietch_boot_seconds", "Time from a create from an image until its vmm runs.", m.Boot)
	histogram(w, "sietch_restore_seconds", "Time from a create from a snapshot (or fork) until its vmm runs.", m.Restore)
	fmt.Fprintln(w, "# HELP sietch_vmm_rss_bytes Resident memory of each sandbox's vmm process.")
	fmt.Fprintln(w, "# TYPE sietch_vmm_rss_bytes gauge")
	ids := make([]string, 0, len(m.RSS))
	for id := range m.RSS {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		fmt.Fprintf(w, "sietch_vmm_rss_bytes{sandbox=%q} %d\n", id, m.RSS[id])
	}
	usage(w, m.Usage)
}

// usage writes the per-sandbox resource series (GET /v1/sandboxes/{id}/stats).
func usage(w io.Writer, u map[string]sandbox.Stats) {
	ids := make([]string, 0, len(u))
	for id := range u {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	series := func(name, typ, help string, value func(sandbox.Stats) (string, bool)) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
		for _, id := range ids {
			if v, ok := value(u[id]); ok {
				fmt.Fprintf(w, "%s{sandbox=%q} %s\n", name, id, v)
			}
		}
	}
	num := func(v int64) (string, bool) { return strconv.FormatInt(v, 10), true }
	limit := func(v int64) (string, bool) { return strconv.FormatInt(v, 10), v > 0 }
	float := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	fmt.Fprintln(w, "# HELP sietch_sandbox_cpu_seconds_total CPU time of a sandbox's vmm and device processes (a vCPU's guest time is system time).")
	fmt.Fprintln(w, "# TYPE sietch_sandbox_cpu_seconds_total counter")
	for _, id := range ids {
		fmt.Fprintf(w, "sietch_sandbox_cpu_seconds_total{sandbox=%q,mode=\"user\"} %s\n", id, float(u[id].CPUUserS))
		fmt.Fprintf(w, "sietch_sandbox_cpu_seconds_total{sandbox=%q,mode=\"system\"} %s\n", id, float(u[id].CPUSystemS))
	}
	series("sietch_sandbox_cpu_limit", "gauge", "CPUs' worth of time a sandbox may use per period.", func(s sandbox.Stats) (string, bool) { return float(s.CPULimit), s.CPULimit > 0 })
	series("sietch_sandbox_cpu_throttled_periods_total", "counter", "CPU bandwidth periods in which a sandbox used up its quota.", func(s sandbox.Stats) (string, bool) { return num(int64(s.CPUThrottled)) })
	series("sietch_sandbox_memory_bytes", "gauge", "Memory charged to a sandbox's cgroup (guest memory touched, its processes' own, page cache).", func(s sandbox.Stats) (string, bool) { return num(s.MemoryBytes) })
	series("sietch_sandbox_memory_limit_bytes", "gauge", "A sandbox's memory limit: guest memory plus the vmm's overhead.", func(s sandbox.Stats) (string, bool) { return limit(s.MemoryLimitBytes) })
	series("sietch_sandbox_oom_kills_total", "counter", "Processes of a sandbox killed for going over its memory limit.", func(s sandbox.Stats) (string, bool) { return num(int64(s.OOMKills)) })
	series("sietch_sandbox_pids", "gauge", "Tasks (threads) of a sandbox's vmm and device processes.", func(s sandbox.Stats) (string, bool) { return num(s.Pids) })
	series("sietch_sandbox_disk_read_bytes_total", "counter", "Bytes a sandbox's guest read from its disks.", func(s sandbox.Stats) (string, bool) { return num(s.DiskReadBytes) })
	series("sietch_sandbox_disk_written_bytes_total", "counter", "Bytes a sandbox's guest wrote to its disks.", func(s sandbox.Stats) (string, bool) { return num(s.DiskWriteBytes) })
	series("sietch_sandbox_net_rx_bytes_total", "counter", "Bytes a sandbox's guest sent through its TAP.", func(s sandbox.Stats) (string, bool) {
		if s.Net == nil {
			return "", false
		}
		return num(s.Net.RxBytes)
	})
	series("sietch_sandbox_net_tx_bytes_total", "counter", "Bytes a sandbox's guest received through its TAP.", func(s sandbox.Stats) (string, bool) {
		if s.Net == nil {
			return "", false
		}
		return num(s.Net.TxBytes)
	})
}

func histogram(w io.Writer, name, help string, h sandbox.Histogram) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name)
	for i, b := range h.Bounds {
		fmt.Fprintf(w, "%s_bucket{le=%q} %d\n", name, strconv.FormatFloat(b, 'g', -1, 64), h.Cumulative[i])
	}
	fmt.Fprintf(w, "%s_bucket{le=\"+Inf\"} %d\n", name, h.Count)
	fmt.Fprintf(w, "%s_sum %s\n%s_count %d\n", name, strconv.FormatFloat(h.Sum, 'g', -1, 64), name, h.Count)
}
