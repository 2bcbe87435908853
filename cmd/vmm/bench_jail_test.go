package main

import (
	"bufio"
	"context"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/sietch-vm/sietch/testguest"
)

// BenchmarkVMMJail measures what confining the whole vmm costs, against
// --no-jail in the same run: start to the guest's first console byte
// (start-ms, the device jails and the vmm's policy included), and the MMIO
// exit round trip the pingpong guest times in TSC ticks (mmio-tsc), which
// with the policy crosses two seccomp filters per KVM_RUN instead of one.
// Medians of b.N runs each.
func BenchmarkVMMJail(b *testing.B) {
	requireKVM(b)
	guest := testguest.Path(b, "pingpong")
	tscRE := regexp.MustCompile(`mmio \d+ round trips, (\d+) tsc each`)
	for _, mode := range []struct {
		name  string
		extra []string
	}{{"jailed", nil}, {"nojail", []string{"--no-jail"}}} {
		var starts, tscs []float64
		for range b.N {
			ctx, cancel := context.WithTimeout(b.Context(), runTimeout)
			args := append([]string{"run", "--kernel", guest, "--mem", "64M", "--cmdline", "n=20000 mode=mmio"}, mode.extra...)
			cmd := exec.CommandContext(ctx, vmmBin, args...)
			out, _ := cmd.StdoutPipe()
			t0 := time.Now()
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			r := bufio.NewReader(out)
			if _, err := r.ReadByte(); err != nil {
				b.Fatalf("%s: no console output: %v", mode.name, err)
			}
			starts = append(starts, float64(time.Since(t0).Microseconds())/1e3)
			for {
				line, err := r.ReadString('\n')
				if m := tscRE.FindStringSubmatch(line); m != nil {
					v, _ := strconv.ParseFloat(m[1], 64)
					tscs = append(tscs, v)
				}
				if err != nil {
					break
				}
			}
			cmd.Wait()
			cancel()
		}
		if len(tscs) != b.N {
			b.Fatalf("%s: %d of %d runs printed their round trip", mode.name, len(tscs), b.N)
		}
		slices.Sort(starts)
		slices.Sort(tscs)
		b.ReportMetric(starts[len(starts)/2], mode.name+"-start-ms")
		b.ReportMetric(tscs[len(tscs)/2], mode.name+"-mmio-tsc")
	}
}
