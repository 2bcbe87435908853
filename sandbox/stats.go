package sandbox

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/sietch-vm/sietch/internal/cgroups"
)

// Stats is one running sandbox's resource use (its vmm and device
// processes together) and its limits.
type Stats struct {
	// Cgroup is "v2" or "v1" (the sandbox's own group says all of this),
	// or "" when sandboxes run without one: then usage is summed from
	// /proc over the vmm and its device processes, and there are no
	// limits beyond the guest's size.
	Cgroup string

	CPUUserS   float64 // CPU time in user mode, seconds
	CPUSystemS float64 // in the kernel: a vCPU's guest time is counted here
	CPULimit   float64 // CPUs' worth of time per period it may use; 0: none
	// CPU bandwidth: periods it had runnable tasks in, those whose quota
	// ran out, and the time its tasks waited for the next.
	CPUPeriods    uint64
	CPUThrottled  uint64
	CPUThrottledS float64

	MemoryBytes      int64 // now: guest memory it has touched, the processes' own, page cache it caused
	MemoryPeakBytes  int64 // the most since its vmm started; 0 where the kernel does not say
	MemoryLimitBytes int64 // 0: none
	OOMKills         uint64

	Pids      int64 // tasks (threads)
	PidsLimit int64 // 0: none

	// Bytes the guest read from and wrote to its disks (the blk device
	// processes' reads and writes of the disk files, since this vmm
	// started).
	DiskReadBytes  int64
	DiskWriteBytes int64

	// Net is nil while the sandbox has no TAP.
	Net *NetStats
}

// NetStats are a sandbox's TAP counters, as the host sees them: rx is
// what the guest sent.
type NetStats struct {
	RxBytes, TxBytes int64
}

// Stats returns the resource use of sandbox id, which must have a vmm
// (running, paused or being snapshotted).
func (m *Manager) Stats(id string) (Stats, error) {
	sb, err := m.lookup(id)
	if err != nil {
		return Stats{}, err
	}
	m.mu.Lock()
	st, pid := sb.rec.State, sb.rec.VMMPID
	tap := ""
	if n := sb.rec.Network; n != nil {
		tap = n.Interface
	}
	m.mu.Unlock()
	if !active(st) || pid <= 0 {
		return Stats{}, fmt.Errorf("%w: sandbox %s is %s: only a sandbox with a vmm (running or paused) has stats", ErrWrongState, id, st)
	}
	var out Stats
	var pids []int
	if g := m.cgroup(sb); g != nil {
		cs, err := g.Stats()
		if err != nil {
			return Stats{}, fmt.Errorf("sandbox %s: %w", id, err)
		}
		out = statsOf(cs, g.Version())
		if pids, err = g.Procs(); err != nil {
			return Stats{}, fmt.Errorf("sandbox %s: %w", id, err)
		}
	} else {
		pids = processTree(pid)
		out = procStats(pids)
	}
	for _, p := range pids {
		if isDevice(p, "blk") {
			r, w := processIO(p)
			out.DiskReadBytes += r
			out.DiskWriteBytes += w
		}
	}
	if tap != "" {
		out.Net = tapStats(tap)
	}
	return out, nil
}

// tapStats are the counters of the host's end of a sandbox's TAP (nil
// if it has none): its rx is what the guest sent.
func tapStats(name string) *NetStats {
	read := func(what string) (int64, bool) {
		b, err := os.ReadFile("/sys/class/net/" + name + "/statistics/" + what)
		if err != nil {
			return 0, false
		}
		v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		return v, err == nil
	}
	rx, ok1 := read("rx_bytes")
	tx, ok2 := read("tx_bytes")
	if !ok1 || !ok2 {
		return nil
	}
	return &NetStats{RxBytes: rx, TxBytes: tx}
}

func statsOf(cs cgroups.Stats, version int) Stats {
	s := Stats{
		Cgroup:   "v" + strconv.Itoa(version),
		CPUUserS: cs.CPUUserSec, CPUSystemS: cs.CPUSystemSec,
		CPUPeriods: cs.CPUPeriods, CPUThrottled: cs.CPUThrottled, CPUThrottledS: cs.CPUThrottledSec,
		MemoryBytes: cs.MemoryBytes, MemoryPeakBytes: cs.MemoryPeakBytes, MemoryLimitBytes: cs.MemoryLimitBytes, OOMKills: cs.OOMKills,
		Pids: cs.Pids, PidsLimit: cs.PidsLimit,
	}
	if cs.CPUQuotaUS > 0 && cs.CPUPeriodUS > 0 {
		s.CPULimit = float64(cs.CPUQuotaUS) / float64(cs.CPUPeriodUS)
	}
	return s
}

// processTree is pid and its descendants (the jailed vmm its keeper
// started, and the device processes).
func processTree(pid int) []int {
	parent := map[int]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil || p == pid {
			continue
		}
		if f := procStatFields(p); len(f) > 1 {
			if pp, err := strconv.Atoi(f[1]); err == nil {
				parent[p] = pp
			}
		}
	}
	// Descendants: the keeper's jailed vmm, and its device processes.
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		for p, pp := range parent {
			if pp == out[i] {
				out = append(out, p)
			}
		}
	}
	return out
}

// procStatFields are /proc/PID/stat's fields after the command name:
// state, ppid, … (field 3 onwards of proc(5)).
func procStatFields(pid int) []string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(b[i+1:]))
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

// procStats sums CPU time, memory and tasks over pids from /proc. Guest
// memory is shared by all of them, so it counts once (the largest
// RssShmem), and each process's own (RssAnon) is added.
func procStats(pids []int) Stats {
	var s Stats
	var shmem int64
	for _, p := range pids {
		if f := procStatFields(p); len(f) > 17 {
			u, _ := strconv.ParseInt(f[11], 10, 64) // utime, field 14
			k, _ := strconv.ParseInt(f[12], 10, 64) // stime, field 15
			n, _ := strconv.ParseInt(f[17], 10, 64) // num_threads, field 20
			s.CPUUserS += float64(u) / clockTicks
			s.CPUSystemS += float64(k) / clockTicks
			s.Pids += n
		}
		st := statusFields(p)
		s.MemoryBytes += st["RssAnon"]
		shmem = max(shmem, st["RssShmem"])
	}
	s.MemoryBytes += shmem
	return s
}

// statusFields reads the kB fields of /proc/PID/status, in bytes.
func statusFields(pid int) map[string]int64 {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	out := map[string]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		f := strings.Fields(v)
		if ok && len(f) == 2 && f[1] == "kB" {
			n, _ := strconv.ParseInt(f[0], 10, 64)
			out[k] = n << 10
		}
	}
	return out
}

// isDevice says whether pid is a device process of kind (`vmm device
// KIND …`).
func isDevice(pid int, kind string) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	argv := strings.Split(string(b), "\x00")
	return len(argv) > 2 && argv[1] == "device" && argv[2] == kind
}

// processIO is what pid has read and written through system calls
// (rchar, wchar in /proc/PID/io): for a blk device process, the guest's
// disk traffic (the descriptor and eventfd traffic beside it is a few
// bytes per request).
func processIO(pid int) (read, written int64) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/io")
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		switch k {
		case "rchar":
			read = n
		case "wchar":
			written = n
		}
	}
	return read, written
}
