package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sietch-vm/sietch/testguest"
)

// Benchmarks of the virtio devices as a guest sees them (issue 3). The
// guests' drivers run at CPL3 and poll, so what is measured is the device
// path: transport, vhost-user back-end, host file or socket. The results
// and the commands that produce them are in docs/PERFORMANCE.md, "virtio
// devices (issue 3)".

// stampedLine is one line of guest serial output and when the host read it.
type stampedLine struct {
	at   time.Time
	text string
}

// stampWriter timestamps each serial line as the vmm writes it.
type stampWriter struct {
	mu      sync.Mutex
	partial []byte
	lines   []stampedLine
}

func (w *stampWriter) Write(p []byte) (int, error) {
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		w.lines = append(w.lines, stampedLine{now, strings.TrimRight(string(w.partial[:i]), "\r")})
		w.partial = w.partial[i+1:]
	}
}

// find returns the first line starting with prefix.
func (w *stampWriter) find(prefix string) (stampedLine, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, l := range w.lines {
		if strings.HasPrefix(l.text, prefix) {
			return l, true
		}
	}
	return stampedLine{}, false
}

func (w *stampWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var sb strings.Builder
	for _, l := range w.lines {
		sb.WriteString(l.text + "\n")
	}
	return sb.String() + string(w.partial)
}

// benchRun is one vmm run of a test guest during a benchmark.
type benchRun struct {
	cmd    *exec.Cmd
	out    stampWriter
	stderr lockedBuffer
	done   chan struct{}
	err    error
}

func startBenchGuest(b *testing.B, name string, args ...string) *benchRun {
	b.Helper()
	return startBenchGuestIn(b, "", name, args...)
}

// startBenchGuestIn runs the vmm in network namespace netns when it is set.
func startBenchGuestIn(b *testing.B, netns, name string, args ...string) *benchRun {
	b.Helper()
	ctx, cancel := context.WithTimeout(b.Context(), runTimeout)
	args = append([]string{"run", "--kernel", testguest.Path(b, name), "--mem", "64M"}, args...)
	r := &benchRun{done: make(chan struct{})}
	r.cmd = exec.CommandContext(ctx, vmmBin, args...)
	if netns != "" {
		r.cmd = exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", netns, vmmBin}, args...)...)
	}
	r.cmd.Stdout, r.cmd.Stderr = &r.out, &r.stderr
	r.cmd.WaitDelay = 5 * time.Second
	if err := r.cmd.Start(); err != nil {
		cancel()
		b.Fatalf("start vmm: %v", err)
	}
	go func() {
		r.err = r.cmd.Wait()
		cancel()
		close(r.done)
	}()
	b.Cleanup(func() { cancel(); <-r.done })
	return r
}

func (r *benchRun) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// wait waits for the guest and fails b unless it ended with "<name>: ok".
func (r *benchRun) wait(b *testing.B, name string) {
	b.Helper()
	<-r.done
	if _, ok := r.out.find(name + ": ok"); r.err != nil || !ok {
		b.Fatalf("vmm run %s: %v\nstdout:\n%s\nstderr:\n%s", name, r.err, r.out.String(), r.stderr.String())
	}
}

// blkPhases are the virtio-blk guest's bench=1 phases, in its order.
var blkPhases = []string{"seqwrite", "seqread", "randwrite", "randread"}

var blkPhaseEnd = regexp.MustCompile(`^virtio-blk: bench (\w+) end: (\d+) requests, (\d+) bytes, (\d+) ticks$`)

// blkResult is one bench=1 run: per phase, requests and bytes per second.
type blkResult map[string]struct{ iops, bps float64 }

// blkBench runs the virtio-blk guest's benchmark against a disk given by
// the vmm flags diskArgs. The guest counts TSC ticks per phase; the TSC
// rate comes from the same phases' serial lines timed on the host (their
// sum spans long enough for the ~0.2 ms a serial line costs not to matter).
func blkBench(b *testing.B, mib, ops, qd int, diskArgs ...string) blkResult {
	b.Helper()
	args := append(diskArgs, "--cmdline", fmt.Sprintf("bench=1 bench_mib=%d ops=%d qd=%d", mib, ops, qd))
	r := startBenchGuest(b, "virtio-blk", args...)
	r.wait(b, "virtio-blk")
	type phase struct {
		reqs, bytes, ticks float64
	}
	phases := map[string]phase{}
	var ticks float64
	var wall time.Duration
	for _, name := range blkPhases {
		begin, ok1 := r.out.find("virtio-blk: bench " + name + " begin")
		end, ok2 := r.out.find("virtio-blk: bench " + name + " end:")
		m := blkPhaseEnd.FindStringSubmatch(end.text)
		if !ok1 || !ok2 || m == nil {
			b.Fatalf("virtio-blk guest did not report phase %s:\n%s", name, r.out.String())
		}
		var p phase
		p.reqs, _ = strconv.ParseFloat(m[2], 64)
		p.bytes, _ = strconv.ParseFloat(m[3], 64)
		p.ticks, _ = strconv.ParseFloat(m[4], 64)
		phases[name] = p
		ticks += p.ticks
		wall += end.at.Sub(begin.at)
	}
	hz := ticks / wall.Seconds()
	res := blkResult{}
	for name, p := range phases {
		sec := p.ticks / hz
		res[name] = struct{ iops, bps float64 }{p.reqs / sec, p.bytes / sec}
	}
	return res
}

// hostRead times the host reading the image itself, one pread at a time:
// sequential 1 MiB reads over the first mib MiB, then ops random 4 KiB
// reads there. Returns bytes per second and reads per second.
func hostRead(b *testing.B, img string, mib, ops int) (seqBps, randIOPS float64) {
	b.Helper()
	f, err := os.Open(img)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	start := time.Now()
	for i := 0; i < mib; i++ {
		if _, err := f.ReadAt(buf, int64(i)<<20); err != nil {
			b.Fatalf("host read of %s: %v", img, err)
		}
	}
	seqBps = float64(mib<<20) / time.Since(start).Seconds()
	x := uint64(0x9e3779b97f4a7c15)
	slots := uint64(mib) << 20 / 4096
	start = time.Now()
	for i := 0; i < ops; i++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		if _, err := f.ReadAt(buf[:4096], int64(x%slots*4096)); err != nil {
			b.Fatalf("host read of %s: %v", img, err)
		}
	}
	return seqBps, float64(ops) / time.Since(start).Seconds()
}

// preallocatedImage writes an image of mib MiB so that no backend pays
// for block allocation that another did not.
func preallocatedImage(b *testing.B, path string, mib int) {
	b.Helper()
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	chunk := bytes.Repeat([]byte{0xa5}, 1<<20)
	for i := 0; i < mib; i++ {
		if _, err := f.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVirtioBlk measures sequential 1 MiB and random 4 KiB reads and
// writes (16 in flight) from the CPL3 test guest, through our blk device
// process and through qemu-storage-daemon's export under the same vmm
// front-end, and the host's own reads of the same file. Metrics:
// sietch-/qsd- MB/s and kIOPS per phase, ratio-* (ours ÷ qsd's, goal ≥ 1),
// host-* and vs-host-* (the guest's reads ÷ the host's, goal ≥ 0.8).
func BenchmarkVirtioBlk(b *testing.B) {
	benchKVM(b)
	const mib, ops, qd = 128, 8192, 16
	dir := shortTempDir(b)
	ours, theirs, sock := filepath.Join(dir, "ours.raw"), filepath.Join(dir, "qsd.raw"), filepath.Join(dir, "qsd.sock")
	preallocatedImage(b, ours, mib)
	preallocatedImage(b, theirs, mib)
	startQSD(b, theirs, sock)

	sum := map[string]float64{}
	for b.Loop() {
		o := blkBench(b, mib, ops, qd, "--disk", ours)
		q := blkBench(b, mib, ops, qd, "--vhost-user-blk", sock)
		seq, rnd := hostRead(b, ours, mib, ops)
		for _, p := range blkPhases {
			sum["sietch-"+p+"-MB/s"] += o[p].bps / 1e6
			sum["qsd-"+p+"-MB/s"] += q[p].bps / 1e6
			sum["ratio-"+p] += o[p].bps / q[p].bps
		}
		sum["sietch-randread-kIOPS"] += o["randread"].iops / 1e3
		sum["sietch-randwrite-kIOPS"] += o["randwrite"].iops / 1e3
		sum["host-seqread-MB/s"] += seq / 1e6
		sum["host-randread-kIOPS"] += rnd / 1e3
		sum["vs-host-seqread"] += o["seqread"].bps / seq
		sum["vs-host-randread"] += o["randread"].iops / rnd
	}
	for unit, v := range sum {
		b.ReportMetric(v/float64(b.N), unit)
	}
}

// BenchmarkVirtioVsock measures, per iteration, 64-byte round trips
// host → guest → host through the vsock unix socket (the guest echoes),
// a host → guest stream into the guest's sink port, and a guest → host
// stream; the guest checksums what it sends and receives at CPL3.
func BenchmarkVirtioVsock(b *testing.B) {
	benchKVM(b)
	const rtts, bulk = 2000, 32 << 20
	var rtt time.Duration
	var in, out float64
	for b.Loop() {
		dir := shortTempDir(b)
		uds := filepath.Join(dir, "v.sock")

		// Round trips, then host → guest.
		r := startBenchGuest(b, "virtio-vsock", "--vsock", "3,"+uds, "--cmdline", "listen=1234 streams=1 sink=1235 sinks=1 connect=0")
		vm := &bgVMM{done: r.done} // vsockConnect only watches for the vmm's exit
		c, err := vsockConnect(vm, uds, 1234)
		if err != nil {
			b.Fatalf("%v\n%s", err, r.out.String())
		}
		msg, got := bytes.Repeat([]byte("x"), 64), make([]byte, 64)
		c.SetDeadline(time.Now().Add(60 * time.Second))
		start := time.Now()
		for range rtts {
			if _, err := c.Write(msg); err != nil {
				b.Fatal(err)
			}
			if _, err := io.ReadFull(c, got); err != nil {
				b.Fatal(err)
			}
		}
		rtt += time.Since(start) / rtts
		c.Close()
		data := testguest.Pattern(9, bulk)
		start = time.Now()
		if err := vsockSink(vm, uds, 1235, data); err != nil {
			b.Fatal(err)
		}
		r.wait(b, "virtio-vsock")
		line, ok := r.out.find("virtio-vsock: sink 1235<-")
		if !ok || !strings.HasSuffix(line.text, fmt.Sprintf(": %d bytes, checksum 0x%016x", bulk, testguest.FNV1a(testguest.FNVOffset, data))) {
			b.Fatalf("guest did not report the host's %d bytes:\n%s", bulk, r.out.String())
		}
		in += bulk / line.at.Sub(start).Seconds()

		// Guest → host.
		ln, err := net.Listen("unix", uds+"_5678")
		if err != nil {
			b.Fatal(err)
		}
		r = startBenchGuest(b, "virtio-vsock", "--vsock", "3,"+uds, "--cmdline", fmt.Sprintf("listen=0 connect=5678 vsock_bytes=%d", bulk))
		gc, err := ln.Accept()
		ln.Close()
		if err != nil {
			b.Fatal(err)
		}
		gc.SetDeadline(time.Now().Add(runTimeout))
		br := bufio.NewReaderSize(gc, 1<<20)
		if _, err := br.ReadString('\n'); err != nil {
			b.Fatalf("guest greeting: %v", err)
		}
		io.WriteString(gc, "hi guest\n")
		start = time.Now()
		n, err := io.Copy(io.Discard, br)
		d := time.Since(start)
		gc.Close()
		if err != nil || n != bulk {
			b.Fatalf("read %d bytes from the guest (want %d): %v", n, bulk, err)
		}
		out += bulk / d.Seconds()
		r.wait(b, "virtio-vsock")
	}
	b.ReportMetric(float64(rtt.Microseconds())/float64(b.N), "µs/rtt")
	b.ReportMetric(in/float64(b.N)/1e6, "host-to-guest-MB/s")
	b.ReportMetric(out/float64(b.N)/1e6, "guest-to-host-MB/s")
}

var floodEnd = regexp.MustCompile(`^virtio-net: flood end: (\d+) frames, (\d+) ticks$`)

// BenchmarkVirtioNetTx measures the packets per second the guest sends
// through virtio-net to the tap (small UDP broadcasts, a full tx queue in
// flight), and how many of them a UDP socket on the tap received.
func BenchmarkVirtioNetTx(b *testing.B) {
	benchKVM(b)
	tp := newTap(b)
	tapName, guestIP := tp.name, tp.guestIP
	const port, frames = 5556, 200000
	lc := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = errors.Join(unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, tapName),
				unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20))
		})
		return errors.Join(err, serr)
	}}
	var pc net.PacketConn
	if err := inNetns(tp.ns, func() (err error) {
		pc, err = lc.ListenPacket(b.Context(), "udp4", fmt.Sprintf(":%d", port))
		return err
	}); err != nil {
		b.Fatal(err)
	}
	defer pc.Close()
	var sent, received float64
	for b.Loop() {
		r := startBenchGuestIn(b, tp.ns, "virtio-net", "--net", tapName, "--cmdline",
			fmt.Sprintf("ip=%s port=%d flood=%d", guestIP, port, frames))
		count := 0
		buf := make([]byte, 2048)
		for {
			pc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				if r.exited() {
					break
				}
				continue
			}
			if string(buf[:n]) == "sietch virtio-net flood" {
				count++
			}
		}
		r.wait(b, "virtio-net")
		begin, ok1 := r.out.find("virtio-net: flood begin")
		end, ok2 := r.out.find("virtio-net: flood end:")
		if !ok1 || !ok2 || floodEnd.FindStringSubmatch(end.text) == nil {
			b.Fatalf("guest did not report its flood:\n%s", r.out.String())
		}
		sec := end.at.Sub(begin.at).Seconds()
		sent += frames / sec
		received += float64(count) / sec
	}
	b.ReportMetric(sent/float64(b.N)/1e3, "guest-sent-kpps")
	b.ReportMetric(received/float64(b.N)/1e3, "host-received-kpps")
}
