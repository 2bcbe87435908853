package main

import (
	"github.com/sietch-vm/sietch/wire/agentproto"

	"bytes"
	"context"
	"crypto/rand"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// BenchmarkAgent boots the project kernel with the guest-init initramfs on
// the default root image (one boot per round; tens of seconds here) and
// reports: seconds from `vmm run` to the agent's ready line (ready-s) and
// to its first answer (health-s); the median round trip of an exec of
// `true` over vsock (exec-true-ms); upload and download of 16 MiB through
// the agent (MiB/s); and the initramfs size. docs/PERFORMANCE.md sets
// ready-s beside QEMU microvm booting the same kernel to its init.
func BenchmarkAgent(b *testing.B) {
	requireKVM(b)
	kernel := guestArtifact(b, "SIETCH_KERNEL", "build/kernel/vmlinux", "kernel")
	rootImg := guestArtifact(b, "SIETCH_ROOTFS", "build/rootfs.ext4", "image")
	dir := shortTempDir(b)
	_, initrd := buildGuestInitramfs(b, dir)
	fi, err := os.Stat(initrd)
	if err != nil {
		b.Fatal(err)
	}
	var ready, health, execTrue time.Duration
	var up, down float64
	for i := 0; i < b.N; i++ {
		upper := filepath.Join(dir, "upper.img")
		mkfsExt4(b, upper, 64, "")
		uds := filepath.Join(dir, "v.sock")
		ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
		vm := startLinux(b, ctx, vmmBin, "run", "--kernel", kernel, "--initrd", initrd, "--mem", "256M", "--cpus", "2",
			"--cmdline", "console=ttyS0 reboot=k panic=-1 quiet sietch.root=/dev/vda sietch.overlay=/dev/vdb",
			"--disk", rootImg+",ro", "--disk", upper, "--vsock", "3,"+uds, "--rng")
		ready += vm.waitReady(b, ctx)
		start := vm.started
		client := agentproto.NewClient(agentproto.DialUDS(uds, agentproto.Port))
		if _, err := client.Health(ctx); err != nil {
			b.Fatal(err)
		}
		health += time.Since(start)
		var rounds []time.Duration
		for range 10 {
			t := time.Now()
			if res, err := client.Exec(ctx, agentproto.ExecRequest{Cmd: "true"}, nil, nil, nil); err != nil || res.ExitCode != 0 {
				b.Fatalf("exec true: %+v %v", res, err)
			}
			rounds = append(rounds, time.Since(t))
		}
		slices.Sort(rounds)
		execTrue += rounds[len(rounds)/2]
		data := make([]byte, 16<<20)
		rand.Read(data)
		t := time.Now()
		if err := client.Upload(ctx, "/tmp/bench.bin", 0o644, bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
		up += 16 / time.Since(t).Seconds()
		t = time.Now()
		if _, err := client.Download(ctx, "/tmp/bench.bin", io.Discard); err != nil {
			b.Fatal(err)
		}
		down += 16 / time.Since(t).Seconds()
		client.Shutdown(ctx, true)
		vm.waitExit(b, ctx)
		cancel()
	}
	n := float64(b.N)
	b.ReportMetric(ready.Seconds()/n, "ready-s")
	b.ReportMetric(health.Seconds()/n, "health-s")
	b.ReportMetric(float64(execTrue.Microseconds())/1e3/n, "exec-true-ms")
	b.ReportMetric(up/n, "upload-MiB/s")
	b.ReportMetric(down/n, "download-MiB/s")
	b.ReportMetric(float64(fi.Size())/(1<<20), "initramfs-MiB")
}
