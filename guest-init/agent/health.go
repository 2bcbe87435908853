package agent

import (
	"bufio"
	"bytes"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sietch-vm/sietch/wire/agentproto"
)

// handleHealth reports liveness and basic metrics: GET /v1/health.
func (a *Agent) handleHealth(w http.ResponseWriter, r *http.Request) {
	h := agentproto.Health{Status: "ok", CPUs: runtime.NumCPU(), UptimeS: time.Since(a.started).Seconds()}
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) == nil {
		unit := uint64(si.Unit)
		if unit == 0 {
			unit = 1
		}
		h.UptimeS = float64(si.Uptime) // the machine's, not the agent's
		h.Load1 = float64(si.Loads[0]) / (1 << unix.SI_LOAD_SHIFT)
		h.MemTotal = uint64(si.Totalram) * unit
		h.MemAvailable = (uint64(si.Freeram) + uint64(si.Bufferram)) * unit
	}
	if avail, ok := memAvailable(); ok {
		h.MemAvailable = avail
	}
	var st unix.Statfs_t
	if unix.Statfs(a.root, &st) == nil {
		h.DiskTotal = st.Blocks * uint64(st.Bsize)
		h.DiskFree = st.Bavail * uint64(st.Bsize)
	}
	a.mu.Lock()
	h.Execs = a.runningLocked()
	a.mu.Unlock()
	writeJSON(w, http.StatusOK, h)
}

// memAvailable reads MemAvailable from /proc/meminfo: the kernel's
// estimate, which counts reclaimable page cache that Sysinfo's freeram does not.
func memAvailable() (uint64, bool) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, false
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) >= 2 && string(f[0]) == "MemAvailable:" {
			kb, err := strconv.ParseUint(string(f[1]), 10, 64)
			return kb << 10, err == nil
		}
	}
	return 0, false
}

// handleShutdown replies, then calls Config.Shutdown: POST /v1/shutdown.
func (a *Agent) handleShutdown(w http.ResponseWriter, r *http.Request) {
	var req agentproto.ShutdownRequest
	if e := decodeJSON(r.Body, maxJSONBody, &req); e != nil {
		writeError(w, e)
		return
	}
	if a.cfg.Shutdown == nil {
		writeError(w, apiErr(codeNotImplemented, "this agent cannot shut the machine down (not running as guest-init)"))
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"status": "shutting down", "poweroff": req.Poweroff})
	http.NewResponseController(w).Flush()
	go func() {
		if err := a.cfg.Shutdown(req.Poweroff); err != nil {
			a.log.Error("agent: shutdown failed", "poweroff", req.Poweroff, "err", err)
		}
	}()
}
