package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sietch-vm/sietch/internal/qemupeer"
	"github.com/sietch-vm/sietch/testguest"
)

// The interop tests pair our vhost-user code with QEMU's, both ways:
// our vmm as the front-end of qemu-storage-daemon's vhost-user-blk export,
// and QEMU as the front-end of our blk device process (DESIGN.md,
// "Processes": both directions are tested against those real peers).

// lockedBuffer collects a child's output while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// shortTempDir is a temporary directory with a short path: unix socket
// paths must fit in 108 bytes.
func shortTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "interop-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// startQSD starts qemu-storage-daemon exporting img as vhost-user-blk on
// sock and waits for the socket. The daemon is killed at cleanup.
func startQSD(t testing.TB, img, sock string) {
	t.Helper()
	qsd, err := exec.LookPath("qemu-storage-daemon")
	if err != nil {
		t.Skip("qemu-storage-daemon not installed (Debian package qemu-system-common, pulled in by qemu-system-x86)")
	}
	cmd := exec.Command(qsd,
		"--blockdev", "driver=file,node-name=f,filename="+img,
		"--export", "type=vhost-user-blk,id=e,node-name=f,addr.type=unix,addr.path="+sock+",writable=on")
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start qemu-storage-daemon: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("qemu-storage-daemon output:\n%s", out)
		}
	})
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(sock); err == nil {
			return
		}
		select {
		case <-done:
			t.Fatalf("qemu-storage-daemon exited before listening:\n%s", out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("qemu-storage-daemon did not create %s within 30 s:\n%s", sock, out)
		}
	}
}

// checkPatternImage checks that img holds the guest's seeded pattern in
// its first sectors and zeros after them, as TestVirtioBlk does.
func checkPatternImage(t *testing.T, img string, seed uint64, sectors, imageSize int) {
	t.Helper()
	got, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != imageSize {
		t.Fatalf("image is %d bytes after the run, want %d", len(got), imageSize)
	}
	want := testguest.Pattern(seed, sectors*512)
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
}

// TestInteropQSDBackend: our vmm's vhost-user front-end drives
// qemu-storage-daemon's vhost-user-blk export (libvhost-user) with the
// virtio-blk test guest's whole sequence.
func TestInteropQSDBackend(t *testing.T) {
	t.Parallel()
	requireKVM(t)
	requireRunFlag(t, "vhost-user-blk")
	const sectors, seed, imageSize = 256, 11, 1 << 20
	dir := shortTempDir(t)
	img, sock := filepath.Join(dir, "disk.raw"), filepath.Join(dir, "qsd.sock")
	if err := os.WriteFile(img, make([]byte, imageSize), 0o644); err != nil {
		t.Fatal(err)
	}
	startQSD(t, img, sock)

	r := startGuest(t, "virtio-blk", "--vhost-user-blk", sock, "--cmdline", fmt.Sprintf("sectors=%d seed=%d", sectors, seed)).wait(t)
	r.expectOK(t, "virtio-blk", fmt.Sprintf("virtio-blk: start sectors=%d seed=%d", sectors, seed),
		"virtio-blk: flushed", fmt.Sprintf("virtio-blk: checksum 0x%016x", testguest.FNV1a(testguest.FNVOffset, testguest.Pattern(seed, sectors*512))),
		"virtio-blk: read past the end: IOERR", "virtio-blk: unknown request: UNSUPP")
	if !strings.Contains(r.stdout, fmt.Sprintf("capacity %d sectors", imageSize/512)) {
		t.Errorf("guest did not see the image's %d sectors through qemu-storage-daemon\n%s", imageSize/512, r.dump())
	}
	checkPatternImage(t, img, seed, sectors, imageSize)
}

// vmmCmdline asks the vmm which kernel command line it boots with on this
// host (the compatibility profile's, on an emulated-CPL0 KVM), from its
// debug log, so that QEMU boots the project kernel the same way.
func vmmCmdline(t *testing.T) string {
	t.Helper()
	r := runVMM(t, "run", "--kernel", testguest.Path(t, "poweroff"), "--mem", "64M", "--log-level", "debug")
	m := regexp.MustCompile(`msg=booting cmdline="([^"]*)"`).FindStringSubmatch(r.stderr)
	if m == nil {
		t.Fatalf("vmm run --log-level debug logged no booting cmdline:\n%s", r.dump())
	}
	var keep []string
	for _, f := range strings.Fields(m[1]) {
		if !strings.HasPrefix(f, "sietch.poweroff=") { // our power port; QEMU has none
			keep = append(keep, f)
		}
	}
	return strings.Join(keep, " ")
}

var (
	vdaLine      = regexp.MustCompile(`virtio_blk virtio\d+: \[vda\] (\d+) 512-byte logical blocks`)
	ackedLine    = regexp.MustCompile(`msg="virtio features acked".* features=(0x[0-9a-f]+) version1=(true|false)`)
	memTableLine = regexp.MustCompile(`msg="vhost-user memory table set".* regions=(\d+)`)
)

// TestInteropQEMUFrontend: QEMU's vhost-user-blk front-end drives our blk
// device process in server mode while QEMU boots the project kernel (QEMU
// sends SET_MEM_TABLE only once the guest driver sets DRIVER_OK). The
// test stops at the Linux driver's disk line: QEMU's guest never powers off.
func TestInteropQEMUFrontend(t *testing.T) {
	t.Parallel()
	requireKVM(t)
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 not installed (Debian package qemu-system-x86)")
	}
	kernel := guestArtifact(t, "SIETCH_KERNEL", "build/kernel/vmlinux", "kernel")
	cmdline := vmmCmdline(t)

	const imageSize = 2 << 20
	dir := shortTempDir(t)
	img, sock := filepath.Join(dir, "disk.raw"), filepath.Join(dir, "blk.sock")
	if err := os.WriteFile(img, testguest.Pattern(3, imageSize), 0o644); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	backendLog := &lockedBuffer{}
	backend := exec.CommandContext(ctx, vmmBin, "device", "blk", "--listen", sock, "--disk-path", img, "--no-jail")
	backend.Stdout, backend.Stderr = backendLog, backendLog
	if err := backend.Start(); err != nil {
		t.Fatalf("start the blk device in server mode: %v", err)
	}
	backendDone := make(chan struct{})
	go func() { backend.Wait(); close(backendDone) }()
	defer func() { backend.Process.Kill(); <-backendDone }()
	for !strings.Contains(backendLog.String(), "waiting for a vhost-user front-end") {
		select {
		case <-backendDone:
			t.Fatalf("vmm device blk --listen exited:\n%s", backendLog)
		case <-time.After(20 * time.Millisecond):
		}
	}

	// microvm without ACPI appends virtio_mmio.device= for each device to
	// the command line itself. force-legacy=false: a virtio 1.x transport
	// (libvhost-user and our back-end refuse legacy virtio).
	// The CPU model QEMU accepts differs between host kinds (-cpu host
	// aborts on the AMD hosts); a host that accepts none fails the test
	// with QEMU's own words, since the peer is part of what is tested.
	cpu, err := qemupeer.CPUModel(ctx, qemu)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("QEMU peer: -cpu %s", cpu)
	qemuOut := &lockedBuffer{}
	vm := exec.CommandContext(ctx, qemu,
		"-accel", "kvm", "-cpu", cpu, "-smp", "1", "-m", "128",
		"-M", "microvm,acpi=off", "-global", "virtio-mmio.force-legacy=false",
		"-object", "memory-backend-memfd,id=mem,size=128M,share=on", "-machine", "memory-backend=mem",
		"-chardev", "socket,id=c,path="+sock, "-device", "vhost-user-blk,chardev=c,num-queues=1",
		"-kernel", kernel, "-append", cmdline,
		"-nographic", "-nodefaults", "-no-reboot", "-serial", "stdio")
	vm.Stdout, vm.Stderr = qemuOut, qemuOut
	if err := vm.Start(); err != nil {
		t.Fatalf("start qemu: %v", err)
	}
	vmDone := make(chan struct{})
	go func() { vm.Wait(); close(vmDone) }()
	defer func() { vm.Process.Kill(); <-vmDone }()

	// Done when the backend took the memory table and served the request
	// after it (QEMU waits for the REPLY_ACK), and Linux printed the disk.
	finished := func() bool {
		l := backendLog.String()
		i := strings.Index(l, "vhost-user memory table set")
		return i >= 0 && strings.Contains(l[i:], `msg="vhost-user request"`) && vdaLine.MatchString(qemuOut.String())
	}
	for !finished() {
		select {
		case <-vmDone:
			t.Fatalf("qemu exited early\nqemu:\n%s\nbackend:\n%s", qemuOut, backendLog)
		case <-ctx.Done():
			t.Fatalf("no SET_MEM_TABLE and [vda] line within the deadline\nqemu:\n%s\nbackend:\n%s", qemuOut, backendLog)
		case <-time.After(200 * time.Millisecond):
		}
	}
	vm.Process.Kill()
	<-vmDone
	<-backendDone // the session ends when QEMU's socket closes
	blog, qout := backendLog.String(), qemuOut.String()

	if m := ackedLine.FindStringSubmatch(blog); m == nil || m[2] != "true" {
		t.Errorf("backend did not log SET_FEATURES with VIRTIO_F_VERSION_1 (got %q)", m)
	} else {
		t.Logf("QEMU acked features %s", m[1])
	}
	if m := memTableLine.FindStringSubmatch(blog); m == nil || m[1] == "0" {
		t.Errorf("backend did not map a memory table with regions (got %q)", m)
	} else {
		t.Logf("SET_MEM_TABLE: %s regions", m[1])
	}
	if strings.Contains(blog, "request refused") {
		t.Errorf("backend refused a request of QEMU's")
	}
	if strings.Contains(qout, "vhost_set_mem_table failed") || strings.Contains(qout, "vhost_set_features failed") {
		t.Errorf("QEMU reports a failed SET_FEATURES or SET_MEM_TABLE")
	}
	if m := vdaLine.FindStringSubmatch(qout); m == nil || m[1] != strconv.Itoa(imageSize/512) {
		t.Errorf("Linux in QEMU reported the disk as %q, want %d sectors", m, imageSize/512)
	}
	// Known gap (not asserted): QEMU's virtio-mmio offers QueueNumMax 1024
	// whatever queue-size says, and our back-end refuses queues over 256.
	if strings.Contains(blog, "is not a power of two in 1..") {
		t.Logf("known gap: the backend refused QEMU's queue size, so no I/O ran:\n%s",
			regexp.MustCompile(`(?m)^.*is not a power of two in 1\.\..*$`).FindString(blog))
	}
	if t.Failed() {
		t.Logf("qemu:\n%s\nbackend:\n%s", qout, blog)
	}
}
