package main

import (
	"github.com/sietch-vm/sietch/wire/agentproto"

	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// e2eTimeout bounds the whole end-to-end run: boot (~25 s here, most of it
// the emulated kernel unpacking the initramfs), python3's first start from
// the root disk (seconds), and shutdown; other packages' tests share the
// two cores under `make test`.
const e2eTimeout = 10 * time.Minute

// stampedWriter records when each chunk of output arrived.
type stampedWriter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	chunks []time.Time
}

func (w *stampedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.chunks = append(w.chunks, time.Now())
	return w.buf.Write(p)
}

// TestLinuxEndToEnd is the whole stack on the project kernel, in one boot
// (each costs tens of seconds here, so this one test does much):
// guest-init from the initramfs switches to the default Debian image (read
// only, with an ext4 overlay disk), with virtio-blk, virtio-net (a tap in a
// network namespace of the test's), virtio-vsock and virtio-rng in their
// jailed device processes. Through the agent it runs `uname -a` and a
// python3 one-liner whose output must arrive while it runs, writes a file
// and reads it back, serves it from a guest HTTP server reached through a
// host port forwarded over vsock; the host pings the guest over the tap;
// after a clean shutdown the file is on the overlay disk, which fsck finds
// clean.
func TestLinuxEndToEnd(t *testing.T) {
	requireKVM(t)
	kernel := guestArtifact(t, "SIETCH_KERNEL", "build/kernel/vmlinux", "kernel")
	rootImg := guestArtifact(t, "SIETCH_ROOTFS", "build/rootfs.ext4", "image")
	for _, tool := range []string{"mkfs.ext4", "debugfs", "e2fsck", "ping"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found: run `make deps`", tool)
		}
	}
	requireRunFlag(t, "net")
	tp := newTap(t)
	dir := shortTempDir(t)
	_, initrd := buildGuestInitramfs(t, dir)
	upperImg := filepath.Join(dir, "upper.img")
	mkfsExt4(t, upperImg, 64, "")

	uds := filepath.Join(dir, "v.sock")
	ctx, cancel := context.WithTimeout(t.Context(), e2eTimeout)
	defer cancel()
	cmdline := fmt.Sprintf("console=ttyS0 reboot=k panic=-1 quiet sietch.hostname=sietch-e2e sietch.root=/dev/vda "+
		"sietch.overlay=/dev/vdb sietch.ip=%s/24 sietch.gw=%s sietch.dns=%s", tp.guestIP, tp.hostIP, tp.hostIP)
	args := []string{"netns", "exec", tp.ns, vmmBin, "run", "--kernel", kernel, "--initrd", initrd, "--mem", "256M",
		"--cpus", "2", "--cmdline", cmdline, "--disk", rootImg + ",ro", "--disk", upperImg,
		"--net", tp.name + ",mac=52:54:00:e2:e2:01", "--vsock", "3," + uds, "--rng"}
	vm := startLinux(t, ctx, "ip", args...)
	t.Logf("agent ready %v after vmm start", vm.waitReady(t, ctx).Round(time.Millisecond))
	client := agentproto.NewClient(agentproto.DialUDS(uds, agentproto.Port))
	if _, err := client.Health(ctx); err != nil {
		t.Fatalf("agent health: %v", err)
	}

	run := func(name string, req agentproto.ExecRequest, stdout, stderr io.Writer) agentproto.ExecResult {
		t.Helper()
		t0 := time.Now()
		res, err := client.Exec(ctx, req, nil, stdout, stderr)
		if err != nil {
			t.Fatalf("exec %s: %v", name, err)
		}
		t.Logf("exec %s: exit %d in %v", name, res.ExitCode, time.Since(t0).Round(time.Millisecond))
		return res
	}
	// guest-init's own view (PID 1's binary, reached through /proc): the
	// hostname, the mount plan, the environment programs get.
	var out, errOut bytes.Buffer
	if res := run("guest-init info", agentproto.ExecRequest{Cmd: "/proc/1/exe", Args: []string{"info"}}, &out, &errOut); res.ExitCode != 0 {
		t.Fatalf("guest-init info: exit %d\n%s%s", res.ExitCode, &out, &errOut)
	}
	info := "\n" + out.String()
	want := []string{
		"\nhostname sietch-e2e\n", "\nmount / overlay rw,",
		"\nmount /proc proc ", "\nmount /sys sysfs ", "\nmount /dev devtmpfs ",
		"\nmount /dev/pts devpts ", "\nmount /dev/shm tmpfs ", "\nmount /run tmpfs ", "\nmount /tmp tmpfs ",
		"\nenv PATH=/usr/local/sbin:", "\nenv HOME=/root\n", "\nenv TERM=linux\n", "\nenv LANG=C.UTF-8\n",
		"ptmxmode=666",
	}
	if strings.Contains(info, " sietch.compat") {
		want = append(want, "\nenv GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX,", "\nenv GODEBUG=cpu.avx=off,")
	}
	for _, w := range want {
		if !strings.Contains(info, w) {
			t.Errorf("guest-init info lacks %q:\n%s", strings.TrimSpace(w), info)
		}
	}
	out.Reset()
	errOut.Reset()
	if res := run("uname -a", agentproto.ExecRequest{Cmd: "uname", Args: []string{"-a"}}, &out, &errOut); res.ExitCode != 0 ||
		!strings.HasPrefix(out.String(), "Linux sietch-e2e ") {
		t.Errorf("uname -a: exit %d, stdout %q, stderr %q; want Linux sietch-e2e …", res.ExitCode, &out, &errOut)
	}

	// Output streams while the program runs: the first line arrives well
	// before the program's last second.
	py := &stampedWriter{}
	errOut.Reset()
	t0 := time.Now()
	res := run("python3", agentproto.ExecRequest{Cmd: "python3", Args: []string{"-c",
		"import sys, time\nfor i in range(3):\n    print('tick', i, flush=True)\n    time.sleep(1)\nprint('clock', time.time())\nsys.exit(7)"}}, py, &errOut)
	end := time.Now()
	ticks, clock, _ := strings.Cut(py.buf.String(), "clock ")
	if res.ExitCode != 7 || ticks != "tick 0\ntick 1\ntick 2\n" {
		t.Errorf("python3: exit %d, stdout %q, stderr %q; want exit 7 after three ticks", res.ExitCode, py.buf.String(), &errOut)
	} else if first := py.chunks[0]; end.Sub(first) < 1500*time.Millisecond {
		t.Errorf("python3's first line reached the host %v before it exited (%v after the start): output was not streamed",
			end.Sub(first), first.Sub(t0))
	}
	// The wall clock came from the CMOS RTC at boot (nothing set it since).
	if secs, err := strconv.ParseFloat(strings.TrimSpace(clock), 64); err != nil {
		t.Errorf("python3 printed no clock: %q", py.buf.String())
	} else if skew := end.Sub(time.Unix(0, int64(secs*1e9))); skew > 30*time.Second || skew < -30*time.Second {
		t.Errorf("the guest's clock, read from the RTC at boot, is %v off the host's", skew.Round(time.Second))
	}

	// A file through the agent, both ways.
	content := make([]byte, 1<<20)
	rand.Read(content)
	if err := client.Upload(ctx, "/root/hello.bin", 0o640, bytes.NewReader(content)); err != nil {
		t.Fatalf("upload: %v", err)
	}
	var back bytes.Buffer
	mode, err := client.Download(ctx, "/root/hello.bin", &back)
	if err != nil || !bytes.Equal(back.Bytes(), content) || mode.Perm() != 0o640 {
		t.Fatalf("download: %d bytes, mode %v, %v; want the 1 MiB uploaded with mode 0640", back.Len(), mode, err)
	}

	// A guest HTTP server, reached through a host port forwarded over vsock.
	srvCtx, stopSrv := context.WithCancel(ctx)
	srvDone := make(chan struct{})
	go func() {
		defer close(srvDone)
		client.Exec(srvCtx, agentproto.ExecRequest{Cmd: "python3", Args: []string{"-m", "http.server", "8000", "--bind", "127.0.0.1", "--directory", "/root"}}, nil, io.Discard, io.Discard)
	}()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go forwardPort(ctx, ln, client, 8000)
	var body []byte
	// python3's start takes tens of seconds here, minutes when the host
	// is busy (the Go tests run two packages at once).
	for deadline := time.Now().Add(5 * time.Minute); ; {
		resp, err := http.Get("http://" + ln.Addr().String() + "/hello.bin")
		if err == nil {
			body, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the guest HTTP server never answered through the forwarded port: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if !bytes.Equal(body, content) {
		t.Errorf("HTTP through the forwarded port returned %d bytes, want the 1 MiB file", len(body))
	}
	stopSrv()
	<-srvDone

	// The guest answers ICMP echo on its tap.
	if out, err := exec.CommandContext(ctx, "ip", "netns", "exec", tp.ns, "ping", "-c", "3", "-W", "10", tp.guestIP.String()).CombinedOutput(); err != nil {
		t.Errorf("ping %s over the tap: %v\n%s", tp.guestIP, err, out)
	}

	t0 = time.Now()
	if err := client.Shutdown(ctx, true); err != nil {
		t.Fatalf("agent shutdown: %v", err)
	}
	runErr := vm.waitExit(t, ctx)
	t.Logf("shutdown to vmm exit: %v", time.Since(t0).Round(time.Millisecond))
	if runErr != nil {
		t.Fatalf("vmm: %v, want exit status 0 (the guest powered off)", runErr)
	}
	if !strings.Contains(vm.stdout.String(), `sietch-init: level=INFO msg="shutting down" then="power off"`) {
		t.Errorf("the console does not show guest-init's shutdown")
	}
	// What init wrote went through the overlay onto the disk.
	if got, err := exec.Command("debugfs", "-R", "cat /upper/etc/resolv.conf", upperImg).Output(); err != nil ||
		!strings.Contains(string(got), "nameserver "+tp.hostIP.String()+"\n") {
		t.Errorf("upper layer's /etc/resolv.conf = %q, %v; want a nameserver %s line", got, err, tp.hostIP)
	}
	dump := filepath.Join(dir, "hello.dump")
	if out, err := exec.Command("debugfs", "-R", "dump /upper/root/hello.bin "+dump, upperImg).CombinedOutput(); err != nil {
		t.Fatalf("debugfs: %v\n%s", err, out)
	}
	if got, err := os.ReadFile(dump); err != nil || !bytes.Equal(got, content) {
		t.Errorf("the overlay disk holds %d bytes at /upper/root/hello.bin (%v); want the uploaded 1 MiB", len(got), err)
	}
	if out, err := exec.Command("e2fsck", "-fn", upperImg).CombinedOutput(); err != nil {
		t.Errorf("e2fsck of the overlay disk after shutdown: %v\n%s", err, out)
	}
}

// forwardPort relays each connection to ln to guestPort through the agent,
// as sietchd's port forwarding does.
func forwardPort(ctx context.Context, ln net.Listener, client *agentproto.Client, guestPort int) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			g, err := client.ConnectPort(ctx, guestPort)
			if err != nil {
				return
			}
			defer g.Close()
			go func() {
				io.Copy(g, bufio.NewReader(c))
				if cw, ok := g.(interface{ CloseWrite() error }); ok {
					cw.CloseWrite()
				}
			}()
			io.Copy(c, g)
		}()
	}
}
