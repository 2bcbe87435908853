// Command sietchd is the sandbox manager: it runs one vmm per sandbox and serves the HTTP API.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/sietch-vm/sietch/api"
	"github.com/sietch-vm/sietch/internal/hostnet"
	"github.com/sietch-vm/sietch/sandbox"
)

// Exit statuses.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// shutdownGrace is how long requests in flight get at SIGTERM.
const shutdownGrace = 10 * time.Second

const usage = `sietchd runs sandboxes (one vmm process each) and serves the sietch HTTP API.

Usage:
  sietchd [--state-dir DIR] [--listen ADDR] [--vmm PATH] [--image SPEC]... [limits]

Examples:
  sietchd --state-dir build/state     (the image "default" from build/: make kernel initramfs image)
  sietchd --image default:kind=linux,kernel=build/kernel/vmlinux,initrd=build/initramfs/initramfs.cpio,rootfs=build/rootfs.ext4,cmdline=console=ttyS0

Images come from --image, else from DIR/images.json
  {"images": [{"name": "py", "kind": "linux", "kernel": "vmlinux", "initrd": "initramfs.cpio",
               "rootfs": "py.ext4", "cmdline": "console=ttyS0", "memory_mib": 256}]}
(paths relative to DIR), else the image "default" from the build directory.

The API token is DIR/token (made at first start, mode 0600). SIGTERM or
SIGINT stops serving and leaves the sandboxes' vmm processes running: the
next sietchd on the same state directory takes them up again.

Sandbox networking (a TAP and a /30 from --net-pool each, NAT out of the
uplink, the nftables table "inet sietch", a DNS forwarder per sandbox) is
set up at start when this host allows it (root, tun, nf_tables); one
sietchd per host manages it, so give others --net-pool off.

Flags:
`

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	fs := pflag.NewFlagSet("sietchd", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	stateDir := fs.String("state-dir", "/var/lib/sietch", "directory for sandboxes, snapshots, the state database, the token and the socket")
	listen := fs.String("listen", "", "API address: a unix socket path (default DIR/sietchd.sock), unix:///path or tcp://host:port")
	vmmPath := fs.String("vmm", "", "the vmm binary (default: vmm next to sietchd, else in PATH)")
	images := fs.StringArray("image", nil, "an image: NAME:kind=linux|testguest,kernel=PATH[,initrd=PATH][,rootfs=PATH][,mem=MiB][,cmdline=ARGS (last; may hold commas)] (repeatable; default: DIR/images.json, else the image \"default\" from --build-dir)")
	buildDir := fs.String("build-dir", "", "where the default image's kernel, initramfs and root image are built (default: build/ beside the bin/ holding sietchd)")
	maxSandboxes := fs.Int("max-sandboxes", 64, "host limit: sandboxes with a vmm at once (0: none)")
	maxMemory := fs.Int("max-memory-mib", 0, "host limit: guest memory of all sandboxes, MiB (0: none)")
	maxCPUs := fs.Int("max-cpus", 0, "host limit: vCPUs of all sandboxes (0: none)")
	defCPUs := fs.Int("default-cpus", 1, "vCPUs of a sandbox that asks for none")
	defMemory := fs.Int("default-memory-mib", 128, "memory of a sandbox that asks for none (an image's mem= comes first)")
	defDisk := fs.Int("default-disk-mib", 0, "writable disk of a Linux sandbox that asks for none (0: in memory)")
	defTimeout := fs.Int("default-timeout-s", 0, "lifetime of a sandbox that asks for none (0: unlimited)")
	perCPUs := fs.Int("sandbox-max-cpus", 0, "per-sandbox limit on vCPUs (0: none)")
	perMemory := fs.Int("sandbox-max-memory-mib", 0, "per-sandbox limit on memory, MiB (0: none)")
	restoreMemory := fs.String("restore-memory", "ondemand", "how restored sandboxes get guest memory: ondemand (a page on first touch: idle sandboxes of one template share its memory) or lazy (the rest copied in the background: more memory each, a little faster to answer)")
	cgroupMode := fs.String("cgroups", sandbox.CgroupsAuto, "a cgroup per sandbox holding its vmm and device processes, with CPU, memory and pids limits from its size: auto (where the host allows it), on (or do not start) or off")
	cgroupParent := fs.String("cgroup-parent", "sietch", "where sandbox cgroups go, below sietchd's own cgroup in each hierarchy (then a name for the state directory, then the sandbox id)")
	jailUIDBase := fs.Int("jail-uid-base", sandbox.DefaultJailUIDBase, fmt.Sprintf("each sandbox's vmm and device processes run as a host uid of their own, the lowest free one of %d from this (0: vmms stay uid 0 in their jails, devices run as 65534)", sandbox.JailUIDSlots))
	netPool := fs.String("net-pool", hostnet.DefaultPool.String(), "IPv4 CIDR that sandbox addresses come from, a /30 each (guest .2, host side .1); off: no sandbox networking")
	netUplink := fs.String("net-uplink", "", "host interface sandbox traffic leaves by, masqueraded (default: the default route's)")
	netResolvers := fs.StringSlice("net-resolver", nil, "DNS servers (IP or IP:PORT) the sandboxes' DNS forwarder asks (default: the nameservers of /etc/resolv.conf)")
	netDefault := fs.String("net-default", "off", "whether a sandbox whose create does not say gets network: off or on (internet on, no lists)")
	bootTimeout := fs.Duration("boot-timeout", sandbox.DefaultBootTimeout, "how long a Linux sandbox's create waits for its guest agent before it fails")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	fs.Usage = func() { fmt.Fprintf(stderr, "%s%s", usage, fs.FlagUsages()) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return exitOK
		}
		fmt.Fprintf(stderr, "sietchd: %v\n", err)
		return exitUsage
	}
	bad := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "sietchd: "+format+"\n", a...)
		return exitUsage
	}
	if fs.NArg() > 0 {
		return bad("unexpected argument %q", fs.Arg(0))
	}
	if *jailUIDBase < 0 || *jailUIDBase > 1<<31-1-sandbox.JailUIDSlots {
		return bad("--jail-uid-base %d: want 0 or a uid up to %d", *jailUIDBase, 1<<31-1-sandbox.JailUIDSlots)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return bad("--log-level: %v", err)
	}
	var specs []sandbox.ImageSpec
	for _, s := range *images {
		spec, err := parseImage(s)
		if err != nil {
			return bad("--image: %v", err)
		}
		specs = append(specs, spec)
	}
	for name, v := range map[string]int{"max-sandboxes": *maxSandboxes, "max-memory-mib": *maxMemory, "max-cpus": *maxCPUs,
		"default-cpus": *defCPUs, "default-memory-mib": *defMemory, "default-disk-mib": *defDisk, "default-timeout-s": *defTimeout,
		"sandbox-max-cpus": *perCPUs, "sandbox-max-memory-mib": *perMemory} {
		if v < 0 {
			return bad("--%s %d is negative", name, v)
		}
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if len(specs) == 0 {
		var err error
		if specs, err = configuredImages(*stateDir, *buildDir, log); err != nil {
			fmt.Fprintf(stderr, "sietchd: %v\n", err)
			return exitError
		}
	}
	if *netDefault != "off" && *netDefault != "on" {
		return bad("--net-default %q: want off or on", *netDefault)
	}
	var resolvers []string
	for _, r := range *netResolvers {
		ap, err := netip.ParseAddrPort(r)
		if err != nil {
			a, aerr := netip.ParseAddr(r)
			if aerr != nil {
				return bad("--net-resolver %q: want an IP address, or IP:PORT", r)
			}
			ap = netip.AddrPortFrom(a, 53)
		}
		resolvers = append(resolvers, ap.String())
	}
	var pool netip.Prefix
	if *netPool != "off" {
		var err error
		if pool, err = netip.ParsePrefix(*netPool); err != nil {
			return bad("--net-pool %q: want an IPv4 CIDR such as %v, or off", *netPool, hostnet.DefaultPool)
		}
	}
	vmmBin, err := findVMM(*vmmPath)
	if err != nil {
		fmt.Fprintf(stderr, "sietchd: %v\n", err)
		return exitError
	}

	var hostNet sandbox.HostNetwork
	netOff := "sietchd runs with --net-pool off"
	if pool.IsValid() {
		h, err := hostnet.New(hostnet.Config{Pool: pool, Uplink: *netUplink, Upstreams: resolvers, Log: log})
		if err != nil {
			if *netDefault == "on" {
				fmt.Fprintf(stderr, "sietchd: --net-default on, and sandbox networking is unavailable: %v\n", err)
				return exitError
			}
			log.Warn("sandbox networking unavailable; sandboxes get none", "err", err)
			netOff = err.Error()
		} else {
			defer h.Close()
			hostNet = h
		}
	}
	m, err := sandbox.Open(sandbox.Config{
		StateDir:      *stateDir,
		VMMPath:       vmmBin,
		Host:          sandbox.HostLimits{Sandboxes: *maxSandboxes, MemoryMiB: *maxMemory, CPUs: *maxCPUs},
		Defaults:      sandbox.Limits{CPUs: *defCPUs, MemoryMiB: *defMemory, DiskMiB: *defDisk, TimeoutS: *defTimeout},
		Max:           sandbox.Limits{CPUs: *perCPUs, MemoryMiB: *perMemory},
		Images:        specs,
		Logger:        log,
		BootTimeout:   *bootTimeout,
		RestoreMemory: *restoreMemory,
		Cgroups:       *cgroupMode,
		CgroupParent:  *cgroupParent,
		JailUIDBase:   *jailUIDBase,
		Network:       hostNet,
		NetworkOff:    netOff,
		NetDefault:    *netDefault == "on",
	})
	if err != nil {
		fmt.Fprintf(stderr, "sietchd: %v\n", err)
		return exitError
	}
	defer m.Close()
	token, err := api.LoadToken(filepath.Join(*stateDir, "token"))
	if err != nil {
		fmt.Fprintf(stderr, "sietchd: %v\n", err)
		return exitError
	}
	srv, err := api.New(api.Config{Manager: m, Token: token, Logger: log, Version: version()})
	if err != nil {
		fmt.Fprintf(stderr, "sietchd: %v\n", err)
		return exitError
	}
	ln, err := api.Listen(*listen, *stateDir)
	if err != nil {
		fmt.Fprintf(stderr, "sietchd: %v\n", err)
		return exitError
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("sietchd serving", "addr", ln.Addr().String(), "state_dir", *stateDir, "vmm", vmmBin, "images", len(specs), "sandboxes", len(m.List()))
	select {
	case err := <-served:
		fmt.Fprintf(stderr, "sietchd: %v\n", err)
		return exitError
	case <-ctx.Done():
	}
	log.Info("shutting down; vmm processes keep running")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("requests still running at shutdown were cut", "err", err)
	}
	<-served
	return exitOK
}

// configuredImages are the images when no --image is given: those of the
// state directory's images.json, else the default image from the build
// directory, else none (logged with what to build).
func configuredImages(stateDir, buildDir string, log *slog.Logger) ([]sandbox.ImageSpec, error) {
	specs, ok, err := loadImagesFile(filepath.Join(stateDir, imagesFile))
	if ok || err != nil {
		return specs, err
	}
	if buildDir == "" {
		buildDir = defaultBuildDir()
	}
	spec, err := defaultImage(buildDir)
	if err != nil {
		log.Warn("no images: sandboxes cannot be created until there is one", "why", err.Error())
		return nil, nil
	}
	specs = []sandbox.ImageSpec{spec}
	if d, ok := desktopImage(buildDir, spec); ok {
		specs = append(specs, d)
	}
	return specs, nil
}

// findVMM resolves the vmm binary: the flag, else vmm beside this
// executable, else vmm in PATH.
func findVMM(flag string) (string, error) {
	if flag != "" {
		p, err := exec.LookPath(flag)
		if err != nil {
			return "", fmt.Errorf("--vmm %s: %w", flag, err)
		}
		return filepath.Abs(p)
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "vmm")
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	p, err := exec.LookPath("vmm")
	if err != nil {
		return "", errors.New("no vmm binary beside sietchd or in PATH; build it (go build -o bin/vmm ./cmd/vmm) or give --vmm PATH")
	}
	return filepath.Abs(p)
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return s.Value[:12]
			}
		}
		if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			return bi.Main.Version
		}
	}
	return "dev"
}
