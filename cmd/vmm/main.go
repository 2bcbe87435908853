// Command vmm runs one virtual machine per process (see `vmm help`).
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/sietch-vm/sietch/boot"
	"github.com/sietch-vm/sietch/devproc/devmain"
	"github.com/sietch-vm/sietch/jail"
	"github.com/sietch-vm/sietch/vmm"
)

// Exit statuses of `vmm run`; they are part of the CLI contract.
const (
	exitPowerOff = 0 // the guest powered off
	exitError    = 1 // the vmm could not start or failed
	exitUsage    = 2 // bad command line
	exitReset    = 3 // the guest rebooted
	exitCrash    = 4 // the guest crashed (triple fault, emulation failure)
	exitStopped  = 5 // stopped from the host (signal)
)

const usage = `vmm runs one KVM virtual machine per process.

Usage:
  vmm run --kernel PATH [--initrd PATH] [--cmdline S] [--mem 512M] [--cpus N]
          [--disk PATH[,ro]]... [--vhost-user-blk SOCKET]... [--net TAP[,mac=M]]
          [--vsock CID,UDS] [--rng] [--api-sock PATH] [--cgroup DIR[,DIR...]]
          [--jail-bind DIR]... [--no-jail]
  vmm restore --from DIR [--fork-id ID] [--net-tap TAP] [--memory auto|lazy|ondemand|eager]
          [--track-dirty] [--api-sock PATH] [--log-level LEVEL] [--cgroup DIR[,DIR...]]
          [--jail-bind DIR]... [--no-jail]
  vmm info|pause|resume|stop --api-sock PATH
  vmm snapshot --api-sock PATH --dir DIR [--kind full|diff]
  vmm flatten --dir DIR
  vmm check [--json]
  vmm help

Commands:
  run       boot a kernel; its serial console is this process's stdin/stdout
  restore   continue a VM from a snapshot directory, as run does
  info      print a running VM's state and devices (JSON) from its control socket
  pause     pause a running VM's vCPUs
  resume    resume a paused VM
  stop      stop a VM (its vmm run exits with status 5)
  snapshot  write a snapshot of a VM into DIR: full, or diff (the pages written
            since its last snapshot or its restore; the state names that base)
  flatten   merge a diff snapshot's chain of bases into it, so it stands alone
  check     probe this host's KVM and say what will run here and how fast

Exit status of run and restore: 0 guest powered off, 1 vmm error, 2 usage error,
3 guest rebooted, 4 guest crashed, 5 stopped by a signal or the control socket.
Exit status of info, pause, resume, stop, snapshot, flatten: 0 done, 1 refused or
failed (the vmm's error is printed), 2 usage error.
`

// cgroupUsage describes --cgroup, which run and restore share.
const cgroupUsage = "join the cgroup directories `DIR,...` (one per hierarchy; sietchd makes them) before anything else, so that device processes are born there"

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func realMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "run":
		return cmdRun(args[1:], stdin, stdout, stderr)
	case "restore":
		return cmdRestore(args[1:], stdin, stdout, stderr)
	case "check":
		return cmdCheck(args[1:], stdout, stderr)
	case "info", "pause", "resume", "stop", "snapshot":
		return cmdControl(args[0], args[1:], stdout, stderr)
	case "flatten":
		return cmdFlatten(args[1:], stderr)
	case "device":
		return devmain.Run(args[1:], stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "vmm: unknown command %q\n\n%s", args[0], usage)
		return exitUsage
	}
}

func cmdRun(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("vmm run", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	kernel := fs.String("kernel", "", "kernel image: ELF vmlinux or bzImage (required)")
	initrd := fs.String("initrd", "", "initramfs to load")
	cmdline := fs.String("cmdline", "console=ttyS0 reboot=k panic=-1", "kernel command line")
	mem := fs.String("mem", "512M", "guest memory (K, M or G suffix; multiple of 2M)")
	cpus := fs.Int("cpus", 1, "number of vCPUs")
	compat := fs.String("compat", "auto", "compatibility profile for hosts that emulate guest kernel mode: auto, on or off")
	entry := fs.String("entry", "auto", "kernel entry: auto, linux64 (64-bit boot protocol) or pvh")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	disks := fs.StringArray("disk", nil, "virtio-blk disk: raw image PATH[,ro] (repeatable)")
	vublk := fs.StringArray("vhost-user-blk", nil, "virtio-blk served by an external vhost-user backend at this unix socket (e.g. qemu-storage-daemon; repeatable)")
	netdev := fs.String("net", "", "virtio-net on an existing TAP: NAME[,mac=52:54:00:12:34:56]")
	vsockdev := fs.String("vsock", "", "virtio-vsock: CID,UDS (host unix socket; guest connections to port P go to UDS_P)")
	rng := fs.Bool("rng", false, "virtio-rng: entropy from the host's getrandom")
	seccompVCPU := fs.Bool("seccomp-vcpu", true, "confine vCPU threads with a seccomp filter (KVM_RUN and vCPU state only)")
	apiSock := fs.String("api-sock", "", "serve the control API (HTTP/JSON: info, pause, resume, stop, snapshot) on the unix socket `PATH`")
	quietHint := fs.Duration("quiet-hint", 10*time.Second, "on a host that emulates guest kernel mode, say once what is going on when the guest has printed nothing for this long (0: never)")
	noJail := fs.Bool("no-jail", false, "run device processes and the vmm itself unconfined: DEBUGGING ONLY, a guest that breaks a device or the vmm then owns a host process")
	cgroupDirs := fs.StringSlice("cgroup", nil, cgroupUsage)
	jailBinds := fs.StringArray("jail-bind", nil, jailUsage)
	jailUID := fs.Int("jail-uid", 0, jailUIDUsage)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: vmm run --kernel PATH [flags]\n\nFlags:\n%s", fs.FlagUsages())
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "vmm run: %v\n", err)
		fs.Usage()
		return exitUsage
	}
	bad := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "vmm run: "+format+"\n", a...)
		fs.Usage()
		return exitUsage
	}
	if fs.NArg() > 0 {
		return bad("unexpected argument %q", fs.Arg(0))
	}
	if *kernel == "" {
		return bad("--kernel is required")
	}
	if code, done := confine("run", args, *noJail, *cgroupDirs, *jailBinds, *jailUID, stderr, func(b *binds) error {
		b.add(*kernel, false, false)
		b.add(*initrd, false, false)
		for _, d := range *disks {
			if dc, err := parseDisk(d); err == nil {
				b.add(dc.Path, !dc.ReadOnly, false)
			}
		}
		for _, s := range *vublk {
			b.add(s, true, false)
		}
		if *netdev != "" {
			if n, err := parseNet(*netdev); err == nil {
				b.tap(n.Tap)
			}
		}
		if _, uds, ok := strings.Cut(*vsockdev, ","); ok {
			b.dirOf(uds)
		}
		b.dirOf(*apiSock)
		return nil
	}); done {
		return code
	}
	memSize, err := parseSize(*mem)
	if err != nil {
		return bad("--mem: %v", err)
	}
	cfg := vmm.Config{Cmdline: *cmdline, MemSize: memSize, CPUs: *cpus, Console: stdout, QuietHint: *quietHint}
	switch *compat {
	case "auto":
		cfg.Compat = vmm.CompatAuto
	case "on":
		cfg.Compat = vmm.CompatOn
	case "off":
		cfg.Compat = vmm.CompatOff
	default:
		return bad("--compat must be auto, on or off, not %q", *compat)
	}
	switch *entry {
	case "auto":
		cfg.Entry = boot.EntryAuto
	case "linux64":
		cfg.Entry = boot.EntryLinux64
	case "pvh":
		cfg.Entry = boot.EntryPVH
	default:
		return bad("--entry must be auto, linux64 or pvh, not %q", *entry)
	}
	for _, d := range *disks {
		dc, err := parseDisk(d)
		if err != nil {
			return bad("--disk: %v", err)
		}
		cfg.Disks = append(cfg.Disks, dc)
	}
	if *netdev != "" {
		if cfg.Net, err = parseNet(*netdev); err != nil {
			return bad("--net: %v", err)
		}
		if jailed != nil && jailed.TapFD > 0 {
			cfg.Net.File = os.NewFile(uintptr(jailed.TapFD), cfg.Net.Tap)
		}
	}
	if *vsockdev != "" {
		if cfg.Vsock, err = parseVsock(*vsockdev); err != nil {
			return bad("--vsock: %v", err)
		}
	}
	cfg.VhostUserBlk = *vublk
	cfg.RNG = *rng
	cfg.NoJail = *noJail
	if *jailUID != 0 {
		if *noJail || *jailUID < 0 || *jailUID == jail.NobodyID || *jailUID == jail.SetupID {
			return bad("--jail-uid %d: want a positive uid of the vmm's own (not %d or %d), and no --no-jail", *jailUID, jail.NobodyID, jail.SetupID)
		}
		cfg.DeviceUID = *jailUID
	}
	cfg.SeccompVCPU = *seccompVCPU
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return bad("--log-level: %v", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	cfg.Log = log
	if cfg.NoJail {
		log.Warn("--no-jail: device processes and the vmm run unconfined; use this for debugging only")
	}

	if cfg.Kernel, err = os.ReadFile(*kernel); err != nil {
		fmt.Fprintf(stderr, "vmm run: read kernel: %v\n", err)
		return exitError
	}
	if *initrd != "" {
		if cfg.Initrd, err = os.ReadFile(*initrd); err != nil {
			fmt.Fprintf(stderr, "vmm run: read initrd: %v\n", err)
			return exitError
		}
	}
	ctl, err := listenControl(*apiSock, log)
	if err != nil {
		fmt.Fprintf(stderr, "vmm run: %v\n", err)
		return exitError
	}
	defer ctl.close()
	m, err := vmm.New(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "vmm run: %v\n", err)
		return exitError
	}
	defer m.Close()
	log.Debug("booting", "cmdline", m.Cmdline(), "compat", m.Compat())

	return runMachine("run", m, ctl, !cfg.NoJail, stdin, stderr, log)
}

// pumpConsole forwards host input to the guest's UART until EOF.
func pumpConsole(in io.Reader, m *vmm.Machine) {
	if in == nil {
		return
	}
	buf := make([]byte, 256)
	for {
		n, err := in.Read(buf)
		if n > 0 {
			if _, err := m.Serial().Input(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func cmdCheck(args []string, stdout, stderr io.Writer) int {
	asJSON := len(args) == 1 && args[0] == "--json"
	if len(args) > 0 && !asJSON {
		fmt.Fprintf(stderr, "vmm check: unexpected argument %q\n\n%s", args[0], usage)
		return exitUsage
	}
	r := vmm.CheckHost()
	if asJSON {
		b, _ := json.Marshal(r.Wire())
		fmt.Fprintf(stdout, "%s\n", b)
	} else {
		r.Print(stdout)
	}
	if !r.OK() {
		return exitError
	}
	return 0
}

// parseDisk parses PATH[,ro].
func parseDisk(s string) (vmm.DiskConfig, error) {
	path, opts, _ := strings.Cut(s, ",")
	d := vmm.DiskConfig{Path: path}
	if path == "" {
		return d, fmt.Errorf("%q has no image path", s)
	}
	for _, o := range strings.Split(opts, ",") {
		switch o {
		case "":
		case "ro":
			d.ReadOnly = true
		default:
			return d, fmt.Errorf("unknown disk option %q in %q (only ro)", o, s)
		}
	}
	return d, nil
}

// parseNet parses TAP[,mac=MAC].
func parseNet(s string) (*vmm.NetConfig, error) {
	tap, opts, _ := strings.Cut(s, ",")
	n := &vmm.NetConfig{Tap: tap}
	if tap == "" {
		return nil, fmt.Errorf("%q has no TAP name", s)
	}
	for _, o := range strings.Split(opts, ",") {
		k, v, _ := strings.Cut(o, "=")
		switch k {
		case "":
		case "mac":
			mac, err := net.ParseMAC(v)
			if err != nil || len(mac) != 6 || mac[0]&1 != 0 {
				return nil, fmt.Errorf("mac %q is not a unicast Ethernet address", v)
			}
			n.MAC = mac
		default:
			return nil, fmt.Errorf("unknown net option %q in %q (only mac=)", o, s)
		}
	}
	return n, nil
}

// parseVsock parses CID,UDS.
func parseVsock(s string) (*vmm.VsockConfig, error) {
	c, uds, ok := strings.Cut(s, ",")
	cid, err := strconv.ParseUint(c, 10, 32)
	if !ok || err != nil || uds == "" {
		return nil, fmt.Errorf("%q is not CID,UDS (e.g. 3,/tmp/vm.vsock)", s)
	}
	return &vmm.VsockConfig{CID: cid, UDS: uds}, nil
}

// parseSize parses sizes such as 512M, 2G, 65536K or a plain byte count.
func parseSize(s string) (uint64, error) {
	mult := uint64(1)
	t := strings.ToUpper(strings.TrimSpace(s))
	t = strings.TrimSuffix(t, "IB")
	t = strings.TrimSuffix(t, "B")
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'K':
			mult, t = 1<<10, t[:n-1]
		case 'M':
			mult, t = 1<<20, t[:n-1]
		case 'G':
			mult, t = 1<<30, t[:n-1]
		}
	}
	v, err := strconv.ParseUint(t, 10, 64)
	if err != nil || v == 0 {
		return 0, fmt.Errorf("%q is not a size such as 512M or 2G", s)
	}
	if v > (1<<46)/mult {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return v * mult, nil
}
