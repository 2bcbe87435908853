package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/pflag"

	"github.com/sietch-vm/sietch/api/model"
)

var cmdStats = &command{
	synopsis: "stats ID",
	summary: "Show a running sandbox's resource use (its vmm and device processes, from its cgroup) against its limits: " +
		"CPU seconds and throttling, memory now and at most, tasks, disk and network bytes. Counters count from its vmm's start.",
	example: "  sietch stats sb-1\n  sietch stats --json sb-1 | jq .memory_bytes\n",
	run: func(c *cli, ctx context.Context, fs *pflag.FlagSet, args []string) int {
		err := fs.Parse(args)
		if err == nil && fs.NArg() != 1 {
			err = errors.New("want one sandbox ID")
		}
		if rc, done := c.parsed("stats", fs, err); done {
			return rc
		}
		api, err := c.connect(true)
		if err != nil {
			return c.fail("stats", err)
		}
		st, err := api.Stats(ctx, fs.Arg(0))
		if err != nil {
			return c.fail("stats", err)
		}
		if c.g.json {
			printJSON(c.stdout, st)
			return exitOK
		}
		statsTable(c.stdout, st)
		return exitOK
	},
}

// statsTable prints one row per resource: what it uses, and its limit.
func statsTable(w io.Writer, st model.SandboxStats) error {
	orNone := func(v string, ok bool) string {
		if !ok {
			return "none"
		}
		return v
	}
	secs := func(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) + " s" }
	cgroup := st.Cgroup
	if cgroup == "" {
		cgroup = "none (usage from /proc)"
	}
	peak := ""
	if st.MemoryPeakBytes > 0 {
		peak = ", peak " + humanBytes(st.MemoryPeakBytes)
	}
	rows := [][]string{
		{"cgroup", cgroup, ""},
		{"cpu", fmt.Sprintf("user %s, system %s", secs(st.CPUUserS), secs(st.CPUSystemS)),
			orNone(strconv.FormatFloat(st.CPULimit, 'g', -1, 64)+" CPUs", st.CPULimit > 0)},
		{"cpu throttled", fmt.Sprintf("%d of %d periods, %s", st.CPUThrottledPeriods, st.CPUPeriods, secs(st.CPUThrottledS)), ""},
		{"memory", humanBytes(st.MemoryBytes) + peak, orNone(humanBytes(st.MemoryLimitBytes), st.MemoryLimitBytes > 0)},
		{"oom kills", strconv.FormatInt(st.MemoryOOMKills, 10), ""},
		{"tasks", strconv.FormatInt(st.Pids, 10), orNone(strconv.FormatInt(st.PidsLimit, 10), st.PidsLimit > 0)},
		{"disk", fmt.Sprintf("read %s, written %s", humanBytes(st.DiskReadBytes), humanBytes(st.DiskWriteBytes)), ""},
	}
	if st.NetRxBytes != nil && st.NetTxBytes != nil {
		rows = append(rows, []string{"network", fmt.Sprintf("sent %s, received %s", humanBytes(*st.NetRxBytes), humanBytes(*st.NetTxBytes)), ""})
	}
	return table(w, []string{"RESOURCE", "USED", "LIMIT"}, rows)
}
