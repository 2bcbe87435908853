package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sietch-vm/sietch/testguest"
)

// Benchmarks of the vmm binary as a user runs it; `make bench` runs them and
// docs/PERFORMANCE.md records and explains the numbers.

func benchKVM(b *testing.B) {
	b.Helper()
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		b.Skipf("needs a usable /dev/kvm: %v", err)
	}
	f.Close()
}

// BenchmarkStartToFirstSerialByte execs the vmm with the hello guest and
// times exec to the first byte on its stdout: process start, VM set-up,
// guest entry and the first UART write. It also times exec to the vmm's
// "booting" debug line, logged just before the vCPUs start, which splits
// the figure into the vmm's share and the guest's. compat=on skips the host
// probe (the CPL0/CPL3 timing loop), so the difference shows its cost.
func BenchmarkStartToFirstSerialByte(b *testing.B) {
	for _, compat := range []string{"auto", "on"} {
		b.Run("compat="+compat, func(b *testing.B) {
			benchKVM(b)
			kernel := testguest.Path(b, "hello")
			var first, ready time.Duration
			for b.Loop() {
				f, r := firstByte(b, kernel, compat)
				first += f
				ready += r
			}
			ms := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(b.N) / 1e6 }
			b.ReportMetric(ms(first), "ms/first-byte")
			b.ReportMetric(ms(ready), "ms/vmm-ready")
			b.ReportMetric(ms(first-ready), "ms/guest-to-byte")
		})
	}
}

// firstByte runs one vmm to completion and returns exec → first stdout byte
// and exec → the "booting" log line (vCPUs about to run).
func firstByte(b *testing.B, kernel, compat string) (first, ready time.Duration) {
	b.Helper()
	ctx, cancel := context.WithTimeout(b.Context(), runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, vmmBin, "run", "--kernel", kernel, "--mem", "64M", "--compat", compat, "--log-level", "debug")
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	var stderr bytes.Buffer
	readyc := make(chan time.Time, 1)
	done := make(chan struct{})
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatalf("start vmm: %v", err)
	}
	go func() {
		defer close(done)
		sc := bufio.NewScanner(errPipe)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "msg=booting") {
				readyc <- time.Now()
			}
			stderr.Write(append(sc.Bytes(), '\n'))
		}
	}()
	var one [1]byte
	_, rerr := io.ReadFull(out, one[:])
	first = time.Since(start)
	rest, _ := io.ReadAll(out)
	<-done
	werr := cmd.Wait()
	if rerr != nil || werr != nil {
		b.Fatalf("vmm run hello: read %v, exit %v\nstdout:\n%s%s\nstderr:\n%s", rerr, werr, one[:], rest, &stderr)
	}
	select {
	case t := <-readyc:
		ready = t.Sub(start)
	default:
		b.Fatalf("vmm run --log-level debug never logged \"booting\"; stderr:\n%s", &stderr)
	}
	return first, ready
}

// BenchmarkRSSOverhead runs the counter guest (CPU-bound at CPL3, it touches
// almost no memory) and reads the vmm's resident memory once the guest is
// running: RssAnon+RssFile is what the vmm itself costs, RssShmem is guest
// RAM the guest has touched (the memfd). Variants show the cheap knobs.
func BenchmarkRSSOverhead(b *testing.B) {
	for _, bc := range []struct {
		name string
		env  []string
	}{
		{name: "default"},
		{name: "GOMAXPROCS=1", env: []string{"GOMAXPROCS=1"}},
		{name: "GOGC=20", env: []string{"GOGC=20"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			benchKVM(b)
			kernel := testguest.Path(b, "counter")
			var sum rssSample
			for b.Loop() {
				s := sampleRSS(b, kernel, bc.env)
				sum.anon += s.anon
				sum.file += s.file
				sum.shmem += s.shmem
				sum.pss += s.pss
			}
			n := float64(b.N) * 1024 // kB → MiB
			b.ReportMetric(float64(sum.anon+sum.file)/n, "overhead-MiB")
			b.ReportMetric(float64(sum.anon)/n, "anon-MiB")
			b.ReportMetric(float64(sum.file)/n, "file-MiB")
			b.ReportMetric(float64(sum.shmem)/n, "guest-MiB")
			b.ReportMetric(float64(sum.pss)/n, "pss-MiB")
		})
	}
}

// rssSample is one reading, in kB as /proc reports them.
type rssSample struct{ anon, file, shmem, pss uint64 }

// sampleRSS starts the vmm with a counter guest that runs for minutes, reads
// its memory once the guest has printed its first line, and kills it.
func sampleRSS(b *testing.B, kernel string, env []string) rssSample {
	b.Helper()
	ctx, cancel := context.WithTimeout(b.Context(), runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, vmmBin, "run", "--kernel", kernel, "--mem", "64M", "--cmdline", "n=100000000000")
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatalf("start vmm: %v", err)
	}
	defer func() {
		// SIGKILL: the vmm cannot block on a full pipe on its way out.
		cmd.Process.Kill()
		cmd.Wait()
	}()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "counter: start") {
		b.Fatalf("counter guest did not start: first line %q, %v\nstderr:\n%s", line, err, &stderr)
	}
	pid := cmd.Process.Pid
	status, err := procFields(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	rollup, err := procFields(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		b.Fatal(err)
	}
	return rssSample{anon: status["RssAnon"], file: status["RssFile"], shmem: status["RssShmem"], pss: rollup["Pss"]}
}

// procFields parses "Name:   123 kB" lines of a /proc file into kB values.
func procFields(path string) (map[string]uint64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read vmm memory figures: %w", err)
	}
	fields := map[string]uint64{}
	for _, l := range strings.Split(string(data), "\n") {
		name, rest, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			continue
		}
		if v, err := strconv.ParseUint(f[0], 10, 64); err == nil {
			fields[name] = v
		}
	}
	return fields, nil
}
