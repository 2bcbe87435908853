package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sietch-vm/sietch/testguest"
)

// The virtio tests boot the testguest virtio-* guests against real device
// processes: the guests' drivers run at CPL3 and poll; the tests check on
// the host side what the devices did (image contents, socket traffic,
// frames on a tap).

// requireRunFlag skips t when `vmm run` does not know --flag yet.
func requireRunFlag(t *testing.T, flag string) {
	t.Helper()
	out, _ := exec.Command(vmmBin, "run", "--help").CombinedOutput()
	if !regexp.MustCompile(`--` + flag + `[ =\[]`).Match(out) {
		t.Skipf("vmm run has no --%s flag yet", flag)
	}
}

// skipUnknownFlag skips when a run failed on a usage error about a flag
// (the feature is not wired into `vmm run` yet).
func skipUnknownFlag(t *testing.T, r result) {
	t.Helper()
	if r.code == exitUsage && strings.Contains(r.stderr, "unknown flag") {
		t.Skipf("vmm run does not implement this device's flag yet:\n%s", r.stderr)
	}
}

// lineValue returns what follows prefix on the first serial line with it.
func (r result) lineValue(prefix string) (string, bool) {
	for _, l := range r.lines() {
		if v, ok := strings.CutPrefix(l, prefix); ok {
			return v, true
		}
	}
	return "", false
}

func TestVirtioBlk(t *testing.T) {
	t.Parallel()
	requireKVM(t)
	requireRunFlag(t, "disk")
	const sectors, seed = 256, 7
	const imageSize = 1 << 20

	t.Run("read-write", func(t *testing.T) {
		t.Parallel()
		img := filepath.Join(t.TempDir(), "disk.raw")
		if err := os.WriteFile(img, make([]byte, imageSize), 0o644); err != nil {
			t.Fatal(err)
		}
		r := startGuest(t, "virtio-blk", "--disk", img, "--cmdline", fmt.Sprintf("sectors=%d seed=%d", sectors, seed)).wait(t)
		skipUnknownFlag(t, r)
		want := testguest.Pattern(seed, sectors*512)
		sum := fmt.Sprintf("virtio-blk: checksum 0x%016x", testguest.FNV1a(testguest.FNVOffset, want))
		r.expectOK(t, "virtio-blk", "virtio-blk: start sectors=256 seed=7",
			"virtio-blk: flushed", sum,
			"virtio-blk: read past the end: IOERR", "virtio-blk: unknown request: UNSUPP")
		if !strings.Contains(r.stdout, fmt.Sprintf("capacity %d sectors", imageSize/512)) {
			t.Errorf("guest did not report the image's %d sectors as its capacity\n%s", imageSize/512, r.dump())
		}
		if id, ok := r.lineValue("virtio-blk: id "); !ok {
			t.Errorf("guest printed no GET_ID string\n%s", r.dump())
		} else {
			t.Logf("device id %s", id)
		}

		got, err := os.ReadFile(img)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != imageSize {
			t.Fatalf("image is %d bytes after the run, want %d", len(got), imageSize)
		}
		if !bytes.Equal(got[:len(want)], want) {
			i := 0
			for i < len(want) && got[i] == want[i] {
				i++
			}
			t.Errorf("image differs from the guest's pattern at byte %d (sector %d)", i, i/512)
		}
		if !bytes.Equal(got[len(want):], make([]byte, imageSize-len(want))) {
			t.Errorf("the guest's writes reached beyond sector %d", sectors)
		}
	})

	t.Run("read-only", func(t *testing.T) {
		t.Parallel()
		img := filepath.Join(t.TempDir(), "disk.raw")
		orig := testguest.Pattern(99, imageSize)
		if err := os.WriteFile(img, orig, 0o644); err != nil {
			t.Fatal(err)
		}
		r := startGuest(t, "virtio-blk", "--disk", img+",ro", "--cmdline", fmt.Sprintf("sectors=%d seed=%d", sectors, seed)).wait(t)
		skipUnknownFlag(t, r)
		r.expectOK(t, "virtio-blk", "virtio-blk: start sectors=256 seed=7",
			fmt.Sprintf("virtio-blk: %d writes refused with IOERR", sectors/8),
			fmt.Sprintf("virtio-blk: read checksum 0x%016x", testguest.FNV1a(testguest.FNVOffset, orig[:sectors*512])),
			"virtio-blk: read past the end: IOERR")
		if !strings.Contains(r.stdout, "read-only") {
			t.Errorf("the device did not offer VIRTIO_BLK_F_RO for a ,ro disk\n%s", r.dump())
		}
		got, err := os.ReadFile(img)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, orig) {
			t.Errorf("a read-only image changed during the run")
		}
	})
}

func TestVirtioRNG(t *testing.T) {
	t.Parallel()
	requireKVM(t)
	requireRunFlag(t, "rng")
	r := startGuest(t, "virtio-rng", "--rng").wait(t)
	skipUnknownFlag(t, r)
	r.expectOK(t, "virtio-rng", "virtio-rng: start")
}

// bgVMM is a vmm run in the background while the test talks to it.
type bgVMM struct {
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer
	done           chan struct{}
	err            error
}

// startGuest starts test guest name with extra flags; wait collects it.
func startGuest(t *testing.T, name string, args ...string) *bgVMM {
	t.Helper()
	return startGuestIn(t, "", name, args...)
}

// startGuestIn is startGuest with the vmm in network namespace netns
// (through `ip netns exec`, which execs it: the process is the vmm).
func startGuestIn(t *testing.T, netns, name string, args ...string) *bgVMM {
	t.Helper()
	kernel := testguest.Path(t, name)
	ctx, cancel := context.WithTimeout(t.Context(), runTimeout)
	args = append([]string{"run", "--kernel", kernel, "--mem", "64M"}, args...)
	cmd := exec.CommandContext(ctx, vmmBin, args...)
	if netns != "" {
		cmd = exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", netns, vmmBin}, args...)...)
	}
	b := &bgVMM{cmd: cmd, done: make(chan struct{})}
	b.cmd.Stdout, b.cmd.Stderr = &b.stdout, &b.stderr
	b.cmd.WaitDelay = 5 * time.Second
	if err := b.cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start vmm: %v", err)
	}
	go func() {
		b.err = b.cmd.Wait()
		cancel()
		close(b.done)
	}()
	t.Cleanup(func() {
		cancel()
		<-b.done
	})
	return b
}

func (b *bgVMM) exited() bool {
	select {
	case <-b.done:
		return true
	default:
		return false
	}
}

func (b *bgVMM) wait(t *testing.T) result {
	t.Helper()
	<-b.done
	r := result{stdout: strings.ReplaceAll(b.stdout.String(), "\r\n", "\n"), stderr: b.stderr.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(b.err, &ee):
		r.code = ee.ExitCode()
		if ee.ProcessState != nil && !ee.Exited() {
			t.Fatalf("vmm killed (%v), probably after %v\n%s", ee, runTimeout, r.dump())
		}
	case b.err != nil:
		t.Fatalf("run vmm: %v", b.err)
	}
	if strings.Contains(r.stderr, "panic:") || strings.Contains(r.stderr, "goroutine ") {
		t.Errorf("Go panic on stderr:\n%s", r.stderr)
	}
	return r
}

// vsockConnect dials the vmm's vsock socket and asks for guest port, as
// Firecracker's host side does ("CONNECT <port>\n" → "OK <port>\n"). It
// retries while the guest driver is not up yet.
func vsockConnect(vm *bgVMM, uds string, port int) (net.Conn, error) {
	var last error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if vm.exited() {
			return nil, fmt.Errorf("vmm exited before the guest accepted (last error: %v)", last)
		}
		c, err := net.Dial("unix", uds)
		if err != nil {
			last = err
			continue
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "CONNECT %d\n", port)
		line, err := bufio.NewReader(io.LimitReader(c, 64)).ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "OK ") {
			c.Close()
			last = fmt.Errorf("handshake answer %q: %v", line, err)
			continue
		}
		c.SetDeadline(time.Time{})
		return c, nil
	}
	return nil, fmt.Errorf("no vsock connection to guest port %d within 30 s: %v", port, last)
}

// vsockEcho sends data on a guest stream and checks the upper-cased echo.
func vsockEcho(vm *bgVMM, uds string, data []byte) error {
	c, err := vsockConnect(vm, uds, 1234)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		werr <- err
	}()
	got := make([]byte, len(data))
	if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("read echo of %d bytes: %w", len(data), err)
	}
	if err := <-werr; err != nil {
		return fmt.Errorf("write %d bytes: %w", len(data), err)
	}
	if want := bytes.ToUpper(data); !bytes.Equal(got, want) {
		i := 0
		for got[i] == want[i] {
			i++
		}
		return fmt.Errorf("echo of %d bytes differs at byte %d: got %q, want %q", len(data), i,
			got[i:min(i+16, len(got))], want[i:min(i+16, len(want))])
	}
	return nil
}

// vsockSink sends data to the guest's reading-only port: only credit
// updates from the guest let more than its buffer through.
func vsockSink(vm *bgVMM, uds string, port int, data []byte) error {
	c, err := vsockConnect(vm, uds, port)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := c.Write(data); err != nil {
		return fmt.Errorf("write %d bytes: %w", len(data), err)
	}
	return nil
}

// letters returns n random lower-case letters and digits.
func letters(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	const set = "abcdefghijklmnopqrstuvwxyz0123456789 "
	for i := range b {
		b[i] = set[int(b[i])%len(set)]
	}
	return b
}

func TestVirtioVsock(t *testing.T) {
	t.Parallel()
	requireKVM(t)
	requireRunFlag(t, "vsock")
	const seed, bulk, sinkBytes = 5, 1 << 20, 2 << 20
	sizes := []int{100, 64 << 10, 1 << 20} // one echo stream each, concurrently

	dir, err := os.MkdirTemp("", "vsock-") // unix socket paths must be short
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	uds := filepath.Join(dir, "v.sock")

	// The guest connects to host port 5678: the device dials <uds>_5678.
	ln, err := net.Listen("unix", uds+"_5678")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type inbound struct {
		greeting string
		n        int
		sum      uint64
		data     []byte
		err      error
	}
	fromGuest := make(chan inbound, 1)
	go func() {
		var in inbound
		defer func() { fromGuest <- in }()
		c, err := ln.Accept()
		if err != nil {
			in.err = err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(runTimeout))
		br := bufio.NewReader(c)
		if in.greeting, in.err = br.ReadString('\n'); in.err != nil {
			return
		}
		if _, in.err = io.WriteString(c, "hi guest\n"); in.err != nil {
			return
		}
		in.data, in.err = io.ReadAll(br)
		in.n, in.sum = len(in.data), testguest.FNV1a(testguest.FNVOffset, in.data)
	}()

	vm := startGuest(t, "virtio-vsock", "--vsock", "3,"+uds, "--cmdline",
		fmt.Sprintf("listen=1234 streams=%d sink=1235 connect=5678 vsock_bytes=%d seed=%d", len(sizes), bulk, seed))

	var wg sync.WaitGroup
	errs := make([]error, len(sizes))
	for i, n := range sizes {
		data := letters(t, n)
		wg.Go(func() { errs[i] = vsockEcho(vm, uds, data) })
	}
	sinkData := testguest.Pattern(seed+1, sinkBytes)
	var sinkErr error
	wg.Go(func() { sinkErr = vsockSink(vm, uds, 1235, sinkData) })
	wg.Wait()
	r := vm.wait(t)
	skipUnknownFlag(t, r)
	for i, err := range errs {
		if err != nil {
			t.Errorf("stream %d (%d bytes): %v", i, sizes[i], err)
		}
	}
	if sinkErr != nil {
		t.Errorf("stream to the guest's sink port: %v", sinkErr)
	}
	want := testguest.Pattern(seed, bulk)
	r.expectOK(t, "virtio-vsock", "virtio-vsock: slot 0, cid 3", "virtio-vsock: host says: hi guest",
		fmt.Sprintf("virtio-vsock: sent %d bytes, checksum 0x%016x", bulk, testguest.FNV1a(testguest.FNVOffset, want)))
	if got := strings.Count(r.stdout, "echoed\n"); got != len(sizes) {
		t.Errorf("guest closed %d echo streams, want %d\n%s", got, len(sizes), r.dump())
	}
	sinkLine := fmt.Sprintf(": %d bytes, checksum 0x%016x", sinkBytes, testguest.FNV1a(testguest.FNVOffset, sinkData))
	if !regexp.MustCompile(`(?m)^virtio-vsock: sink 1235<-\d+ closed \(.*\)` + regexp.QuoteMeta(sinkLine) + `$`).MatchString(r.stdout) {
		t.Errorf("guest did not report receiving the host's %d bytes on its sink port (want a line ending %q)\n%s",
			sinkBytes, sinkLine, r.dump())
	}

	ln.Close() // unblocks Accept if the guest never connected
	in := <-fromGuest
	switch {
	case in.err != nil:
		t.Errorf("host side of the guest's connection: %v", in.err)
	case in.greeting != "hello from cid 3\n":
		t.Errorf("guest greeted with %q, want %q", in.greeting, "hello from cid 3\n")
	case in.n != bulk || !bytes.Equal(in.data, want):
		t.Errorf("host received %d bytes (checksum %#x) from the guest, want the %d-byte pattern (checksum %#x)",
			in.n, in.sum, bulk, testguest.FNV1a(testguest.FNVOffset, want))
	}
}

// tap is a tap interface the test creates with an address from the
// benchmarking range 198.18.0.0/15 (RFC 2544), which is never routed.
type tap struct {
	ns              string // the test's network namespace, holding the tap
	name            string
	hostIP, guestIP net.IP
}

func newTap(t testing.TB) *tap {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the virtio-net test creates a network namespace and a tap: needs root (CAP_NET_ADMIN)")
	}
	ipTool, err := exec.LookPath("ip")
	if err != nil {
		t.Skip("the virtio-net test needs the ip command (iproute2) to create a tap")
	}
	n, err := rand.Int(rand.Reader, big.NewInt(250))
	if err != nil {
		t.Fatal(err)
	}
	sub := int(n.Int64()) + 2
	tp := &tap{
		ns:      fmt.Sprintf("sietch-test-%d", os.Getpid()),
		name:    fmt.Sprintf("sietch%d", os.Getpid()%100000),
		hostIP:  net.IPv4(198, 18, byte(sub), 1),
		guestIP: net.IPv4(198, 18, byte(sub), 2),
	}
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(ipTool, args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// Everything lives in a network namespace of the test's own: the host's
	// interfaces and routes are never touched.
	ip("netns", "add", tp.ns)
	t.Cleanup(func() { exec.Command(ipTool, "netns", "del", tp.ns).Run() })
	ip("-n", tp.ns, "tuntap", "add", "dev", tp.name, "mode", "tap")
	ip("-n", tp.ns, "addr", "add", tp.hostIP.String()+"/24", "dev", tp.name)
	ip("-n", tp.ns, "link", "set", tp.name, "up")
	return tp
}

// inNetns runs f on a thread that has joined network namespace ns, so
// sockets f creates belong to it. The thread is never unlocked: it exits
// with the goroutine instead of going back to the runtime's pool.
func inNetns(ns string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		fd, err := unix.Open("/var/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("open netns %s: %w", ns, err)
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("join netns %s: %w", ns, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// bindToDevice is a net.ListenConfig.Control that binds to interface name.
func bindToDevice(name string) func(network, address string, c syscall.RawConn) error {
	return func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, name)
		})
		if err != nil {
			return err
		}
		return serr
	}
}

var netReceived = regexp.MustCompile(`^virtio-net: received from (\d+\.\d+\.\d+\.\d+):(\d+): (.*)$`)

func TestVirtioNet(t *testing.T) {
	t.Parallel()
	requireKVM(t)
	requireRunFlag(t, "net")
	tp := newTap(t)
	const port, mac = 5555, "52:54:00:12:34:56"

	// Bound to the tap, so the guest's broadcasts reach us and nothing else's.
	lc := net.ListenConfig{Control: bindToDevice(tp.name)}
	var pc net.PacketConn
	if err := inNetns(tp.ns, func() (err error) {
		pc, err = lc.ListenPacket(t.Context(), "udp4", fmt.Sprintf(":%d", port))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer pc.Close()

	vm := startGuestIn(t, tp.ns, "virtio-net", "--net", tp.name+",mac="+mac, "--cmdline",
		fmt.Sprintf("ip=%s port=%d", tp.guestIP, port))

	marker := "sietch virtio-net marker "
	reply := fmt.Sprintf("hello guest from %s", tp.hostIP)
	var got string
	var from net.Addr
	buf := make([]byte, 2048)
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline) && !vm.exited(); {
		pc.SetReadDeadline(time.Now().Add(time.Second))
		n, addr, err := pc.ReadFrom(buf)
		if err != nil {
			continue
		}
		if strings.HasPrefix(string(buf[:n]), marker) {
			got, from = string(buf[:n]), addr
			break
		}
	}
	if got != "" {
		// Unicast: the host ARPs for the guest, which must answer.
		if _, err := pc.WriteTo([]byte(reply), &net.UDPAddr{IP: tp.guestIP, Port: port}); err != nil {
			t.Errorf("send to the guest: %v", err)
		}
	}
	r := vm.wait(t)
	skipUnknownFlag(t, r)
	if got == "" {
		t.Fatalf("no marker datagram from the guest arrived on %s\n%s", tp.name, r.dump())
	}
	if want := marker; !strings.HasPrefix(got, want) || !strings.HasSuffix(got, "from "+mac) {
		t.Errorf("guest sent %q, want %q…%q", got, marker, "from "+mac)
	}
	if ua, ok := from.(*net.UDPAddr); !ok || !ua.IP.Equal(tp.guestIP) || ua.Port != port {
		t.Errorf("marker came from %v, want %s:%d", from, tp.guestIP, port)
	}
	r.expectOK(t, "virtio-net", "virtio-net: slot 0, mac "+mac, "virtio-net: answered ARP")
	m := []string(nil)
	for _, l := range r.lines() {
		if m = netReceived.FindStringSubmatch(l); m != nil {
			break
		}
	}
	if m == nil || m[1] != tp.hostIP.String() || m[2] != strconv.Itoa(port) || m[3] != reply {
		t.Errorf("guest did not print %q from %s:%d\n%s", reply, tp.hostIP, port, r.dump())
	}
}
