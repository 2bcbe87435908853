package sandbox

import (
	"sort"
)

// latencyBuckets are the upper bounds (seconds) of the boot and restore
// histograms: restores take milliseconds, Linux boots here seconds.
var latencyBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// histogram counts observations per bucket (not cumulative).
type histogram struct {
	counts []uint64
	sum    float64
	n      uint64
}

func newHistogram() histogram { return histogram{counts: make([]uint64, len(latencyBuckets)+1)} }

// observe adds one value; the caller holds m.mu.
func (h *histogram) observe(v float64) {
	i := sort.SearchFloat64s(latencyBuckets, v)
	h.counts[i]++
	h.sum += v
	h.n++
}

// Histogram is a latency distribution as Prometheus shows it.
type Histogram struct {
	Bounds     []float64 // upper bounds; +Inf is implied
	Cumulative []uint64  // observations ≤ each bound, then the total
	Sum        float64
	Count      uint64
}

func (h *histogram) export() Histogram {
	out := Histogram{Bounds: latencyBuckets, Sum: h.sum, Count: h.n, Cumulative: make([]uint64, len(h.counts))}
	var c uint64
	for i, n := range h.counts {
		c += n
		out.Cumulative[i] = c
	}
	return out
}

// Metrics is what GET /metrics shows.
type Metrics struct {
	States  map[State]int    // every state, zeros included
	Boot    Histogram        // create from an image until the vmm runs
	Restore Histogram        // create from a snapshot until the vmm runs
	RSS     map[string]int64 // vmm resident memory by sandbox id
	Usage   map[string]Stats // resource use by sandbox id, of those with a vmm
}

// Metrics returns the current counts, latencies and vmm memory.
func (m *Manager) Metrics() Metrics {
	m.mu.Lock()
	out := Metrics{States: map[State]int{}, Boot: m.boot.export(), Restore: m.restore.export(), RSS: map[string]int64{}, Usage: map[string]Stats{}}
	for _, s := range States {
		out.States[s] = 0
	}
	pids := map[string]int{}
	for id, sb := range m.sandboxes {
		out.States[sb.rec.State]++
		if sb.rec.VMMPID > 0 {
			pids[id] = sb.rec.VMMPID
		}
	}
	m.mu.Unlock()
	for id, pid := range pids {
		if rss, ok := vmmRSS(pid); ok {
			out.RSS[id] = rss
		}
		if st, err := m.Stats(id); err == nil {
			out.Usage[id] = st
		}
	}
	return out
}
