package cgroups

import (
	"errors"
	"math"
	"strconv"
	"strings"
)

// Stats is a group's usage and limits as its control files say.
type Stats struct {
	CPUUserSec   float64
	CPUSystemSec float64
	// CFS bandwidth: periods with runnable tasks, those in which the
	// quota ran out, and the time tasks waited for the next period.
	CPUPeriods      uint64
	CPUThrottled    uint64
	CPUThrottledSec float64
	CPUQuotaUS      int64 // 0: none
	CPUPeriodUS     int64

	MemoryBytes      int64
	MemoryPeakBytes  int64 // 0 where the kernel does not keep it (v2 before Linux 5.19)
	MemoryLimitBytes int64 // 0: none
	OOMKills         uint64

	Pids      int64
	PidsLimit int64 // 0: none

	// IO: bytes read and written to block devices, when the group has an
	// I/O controller (false otherwise). Page-cache writes are counted at
	// writeback, and on v1 not per group at all.
	IO                        bool
	IOReadBytes, IOWriteBytes int64
}

// Stats reads the group's usage.
func (g *Group) Stats() (Stats, error) {
	if g.v2 {
		return g.stats2()
	}
	return g.stats1()
}

func (g *Group) stats2() (Stats, error) {
	var s Stats
	d := g.dir[""]
	cpu, err := readKV(d, "cpu.stat")
	if err != nil {
		return s, err
	}
	s.CPUUserSec = float64(cpu["user_usec"]) / 1e6
	s.CPUSystemSec = float64(cpu["system_usec"]) / 1e6
	s.CPUPeriods, s.CPUThrottled = uint64(cpu["nr_periods"]), uint64(cpu["nr_throttled"])
	s.CPUThrottledSec = float64(cpu["throttled_usec"]) / 1e6
	if max, err := readFile(d, "cpu.max"); err == nil {
		f := strings.Fields(max)
		if len(f) == 2 {
			s.CPUQuotaUS = parseLimit(f[0])
			s.CPUPeriodUS = parseLimit(f[1])
		}
	}
	if s.MemoryBytes, err = readInt(d, "memory.current"); err != nil {
		return s, err
	}
	s.MemoryPeakBytes, _ = readInt(d, "memory.peak")
	if v, err := readFile(d, "memory.max"); err == nil {
		s.MemoryLimitBytes = parseLimit(v)
	}
	if ev, err := readKV(d, "memory.events"); err == nil {
		s.OOMKills = uint64(ev["oom_kill"])
	}
	if s.Pids, err = readInt(d, "pids.current"); err != nil {
		return s, err
	}
	if v, err := readFile(d, "pids.max"); err == nil {
		s.PidsLimit = parseLimit(v)
	}
	if io, err := readFile(d, "io.stat"); err == nil {
		s.IO = true
		// MAJ:MIN rbytes=N wbytes=N rios=N wios=N ...
		for _, line := range strings.Split(io, "\n") {
			for _, kv := range strings.Fields(line) {
				k, v, _ := strings.Cut(kv, "=")
				n, _ := strconv.ParseInt(v, 10, 64)
				switch k {
				case "rbytes":
					s.IOReadBytes += n
				case "wbytes":
					s.IOWriteBytes += n
				}
			}
		}
	}
	return s, nil
}

func (g *Group) stats1() (Stats, error) {
	var s Stats
	var err error
	if d := g.at("cpuacct"); d != "" {
		u, err := readInt(d, "cpuacct.usage_user")
		if err != nil {
			return s, err
		}
		k, err := readInt(d, "cpuacct.usage_sys")
		if err != nil {
			return s, err
		}
		s.CPUUserSec, s.CPUSystemSec = float64(u)/1e9, float64(k)/1e9
	}
	d := g.at("cpu")
	cpu, err := readKV(d, "cpu.stat")
	if err != nil {
		return s, err
	}
	s.CPUPeriods, s.CPUThrottled = uint64(cpu["nr_periods"]), uint64(cpu["nr_throttled"])
	s.CPUThrottledSec = float64(cpu["throttled_time"]) / 1e9
	if q, err := readInt(d, "cpu.cfs_quota_us"); err == nil && q > 0 {
		s.CPUQuotaUS = q
	}
	s.CPUPeriodUS, _ = readInt(d, "cpu.cfs_period_us")

	d = g.at("memory")
	if s.MemoryBytes, err = readInt(d, "memory.usage_in_bytes"); err != nil {
		return s, err
	}
	s.MemoryPeakBytes, _ = readInt(d, "memory.max_usage_in_bytes")
	if v, err := readFile(d, "memory.limit_in_bytes"); err == nil {
		s.MemoryLimitBytes = parseLimit(v)
	}
	if oc, err := readKV(d, "memory.oom_control"); err == nil {
		s.OOMKills = uint64(oc["oom_kill"])
	}

	d = g.at("pids")
	if s.Pids, err = readInt(d, "pids.current"); err != nil {
		return s, err
	}
	if v, err := readFile(d, "pids.max"); err == nil {
		s.PidsLimit = parseLimit(v)
	}

	if d := g.at("blkio"); d != "" {
		if io, err := readFile(d, "blkio.throttle.io_service_bytes_recursive"); err == nil {
			s.IO = true
			// MAJ:MIN Read|Write|Sync|Async|Discard|Total N, then Total N
			for _, line := range strings.Split(io, "\n") {
				f := strings.Fields(line)
				if len(f) != 3 {
					continue
				}
				n, _ := strconv.ParseInt(f[2], 10, 64)
				switch f[1] {
				case "Read":
					s.IOReadBytes += n
				case "Write":
					s.IOWriteBytes += n
				}
			}
		}
	}
	return s, nil
}

// parseLimit reads a limit file's value: "max", v1's "-1" and v1's page-
// rounded int64 maximum all mean none (0).
func parseLimit(v string) int64 {
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n < 0 || n >= math.MaxInt64&^0xfffff {
		return 0
	}
	return n
}

func readInt(dir, name string) (int64, error) {
	v, err := readFile(dir, name)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, errors.New("cgroup " + dir + ": " + name + ": " + err.Error())
	}
	return n, nil
}

// readKV reads a flat-keyed file ("key value" per line).
func readKV(dir, name string) (map[string]int64, error) {
	v, err := readFile(dir, name)
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, line := range strings.Split(v, "\n") {
		f := strings.Fields(line)
		if len(f) == 2 {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			out[f[0]] = n
		}
	}
	return out, nil
}
