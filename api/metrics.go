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
}

func histogram(w io.Writer, name, help string, h sandbox.Histogram) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name)
	for i, b := range h.Bounds {
		fmt.Fprintf(w, "%s_bucket{le=%q} %d\n", name, strconv.FormatFloat(b, 'g', -1, 64), h.Cumulative[i])
	}
	fmt.Fprintf(w, "%s_bucket{le=\"+Inf\"} %d\n", name, h.Count)
	fmt.Fprintf(w, "%s_sum %s\n%s_count %d\n", name, strconv.FormatFloat(h.Sum, 'g', -1, 64), name, h.Count)
}
