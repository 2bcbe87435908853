package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/sietch-vm/sietch/jail"
	"github.com/sietch-vm/sietch/vmm"
)

// cmdRestore is `vmm restore`: rebuild a VM from a snapshot directory in
// this process and run it on, as `vmm run` runs a fresh one.
func cmdRestore(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("vmm restore", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	from := fs.String("from", "", "snapshot `DIR` written by vmm snapshot (required)")
	apiSock := fs.String("api-sock", "", "serve the control API (HTTP/JSON: info, pause, resume, stop, snapshot) on the unix socket `PATH`")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	forkID := fs.String("fork-id", "", "restore as the fork `ID` of the snapshot: its own copy of each disk clone, vsock socket at the saved path + \".ID\", a MAC derived from the saved one and ID")
	workDir := fs.String("work-dir", "", "with --fork-id: put the fork's disk copies in `DIR` (default: a new directory next to the snapshot)")
	vsockUDS := fs.String("vsock-uds", "", "listen for vsock connections on `PATH` instead of the snapshot's socket path")
	trackDirty := fs.Bool("track-dirty", false, "track the pages the guest writes from the start, so that its first `vmm snapshot --kind diff` can be based on this snapshot (costs ~2 ms per GiB at restore)")
	netTap := fs.String("net-tap", "", "attach the guest's virtio-net to the TAP `NAME` instead of the snapshot's (each fork needs its own)")
	memory := fs.String("memory", vmm.MemoryAuto, "how guest memory comes back: auto (lazy where a userfaultfd is available), lazy (pages on first touch, the rest in the background), ondemand (pages on first touch only; the snapshot must stay while the VM runs) or eager (all before the guest runs)")
	seccompVCPU := fs.Bool("seccomp-vcpu", true, "confine vCPU threads with a seccomp filter (KVM_RUN and vCPU state only)")
	noJail := fs.Bool("no-jail", false, "run device processes and the vmm unconfined (no jails, no namespaces, no seccomp filter on its threads): DEBUGGING ONLY")
	cgroupDirs := fs.StringSlice("cgroup", nil, cgroupUsage)
	jailBinds := fs.StringArray("jail-bind", nil, jailUsage)
	jailUID := fs.Int("jail-uid", 0, jailUIDUsage)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: vmm restore --from DIR [--fork-id ID] [--work-dir DIR] [flags]\n\nFlags:\n%s", fs.FlagUsages())
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "vmm restore: %v\n", err)
		fs.Usage()
		return exitUsage
	}
	bad := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "vmm restore: "+format+"\n", a...)
		fs.Usage()
		return exitUsage
	}
	if fs.NArg() > 0 {
		return bad("unexpected argument %q", fs.Arg(0))
	}
	if *from == "" {
		return bad("--from is required")
	}
	if *forkID != "" {
		if err := vmm.CheckForkID(*forkID); err != nil {
			return bad("--fork-id: %v", err)
		}
	}
	if *jailUID != 0 && (*noJail || *jailUID < 0 || *jailUID == jail.NobodyID || *jailUID == jail.SetupID) {
		return bad("--jail-uid %d: want a positive uid of the vmm's own (not %d or %d), and no --no-jail", *jailUID, jail.NobodyID, jail.SetupID)
	}
	if *workDir != "" && *forkID == "" {
		return bad("--work-dir needs --fork-id: only forks get disk copies")
	}
	switch *memory {
	case vmm.MemoryAuto, vmm.MemoryLazy, vmm.MemoryOnDemand, vmm.MemoryEager:
	default:
		return bad("--memory %q: want auto, lazy, ondemand or eager", *memory)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return bad("--log-level: %v", err)
	}
	if code, done := confine("restore", args, *noJail, *cgroupDirs, *jailBinds, *jailUID, stderr, func(b *binds) error {
		b.dirOf(*apiSock)
		return restoreBinds(b, *from, *forkID, *workDir, *vsockUDS, *netTap)
	}); done {
		return code
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	ctl, err := listenControl(*apiSock, log)
	if err != nil {
		fmt.Fprintf(stderr, "vmm restore: %v\n", err)
		return exitError
	}
	defer ctl.close()
	var tapFile *os.File
	if jailed != nil && jailed.TapFD > 0 {
		tapFile = os.NewFile(uintptr(jailed.TapFD), "tap")
	}
	m, err := vmm.Restore(*from, vmm.RestoreConfig{NetTapFile: tapFile, Console: stdout, Log: log, SeccompVCPU: *seccompVCPU,
		ForkID: *forkID, WorkDir: *workDir, VsockUDS: *vsockUDS, NetTap: *netTap, Memory: *memory, TrackDirty: *trackDirty, DeviceUID: *jailUID})
	if err != nil {
		fmt.Fprintf(stderr, "vmm restore: %v\n", err)
		return exitError
	}
	defer m.Close()
	log.Debug("restored", "from", *from, "cmdline", m.Cmdline(), "compat", m.Compat())
	return runMachine("restore", m, ctl, !*noJail, stdin, stderr, log)
}

// drill, set in test builds only (drill.go), makes a forbidden system call
// once the vmm is confined.
var drill func()

// runMachine runs m until it ends, serving the console and the control
// socket, and maps how it ended to the exit status of `vmm run`. With
// confine, every thread of the process is held to jail.VMMPolicy first:
// the VM is built and its device processes run, so from here on the vmm
// needs no new process, namespace, mount or socket but a unix one.
func runMachine(name string, m *vmm.Machine, ctl *controlSocket, confine bool, stdin io.Reader, stderr io.Writer, log *slog.Logger) int {
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	if confine {
		if jailed != nil {
			if err := jail.SealVMM(*jailed); err != nil {
				fmt.Fprintf(stderr, "vmm %s: %v (--no-jail runs it unconfined, for debugging only)\n", name, err)
				return exitError
			}
			if err := jail.DropVMM(*jailed); err != nil {
				fmt.Fprintf(stderr, "vmm %s: %v\n", name, err)
				return exitError
			}
		}
		if err := jail.VMMPolicy.Load(); err != nil {
			fmt.Fprintf(stderr, "vmm %s: confine the vmm: %v (--no-jail runs it unconfined, for debugging only)\n", name, err)
			return exitError
		}
		log.Debug("vmm confined", "policy", jail.VMMPolicy.Name, "threads", "all")
	} else {
		log.Warn("--no-jail: the vmm process runs unconfined; use this for debugging only")
	}
	if drill != nil {
		drill()
	}
	go pumpConsole(stdin, m)
	ctl.serve(m)
	exit, err := m.Run(ctx)
	ctl.close() // before m.Close: no request may see a closed machine
	if err != nil {
		fmt.Fprintf(stderr, "vmm %s: %v\n", name, err)
		return exitError
	}
	switch exit.Kind {
	case vmm.ExitPowerOff:
		log.Debug("guest powered off")
		return exitPowerOff
	case vmm.ExitReset:
		log.Info("guest rebooted", "detail", exit.Reason)
		return exitReset
	case vmm.ExitStopped:
		log.Info("VM stopped", "detail", exit.Reason)
		return exitStopped
	default:
		fmt.Fprintf(stderr, "vmm %s: guest crashed: %s\n", name, exit)
		return exitCrash
	}
}
