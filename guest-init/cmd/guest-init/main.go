// Command guest-init is PID 1 of a sietch guest: it mounts, configures and switches root, then serves the agent on vsock.
package main

import (
	"github.com/sietch-vm/sietch/wire/agentproto"

	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sietch-vm/sietch/guest-init/agent"
	"github.com/sietch-vm/sietch/guest-init/initrt"
)

func main() {
	// The kernel passes its leftover plain words as arguments to init, so
	// only the PID tells init from a command run inside the guest.
	if os.Getpid() != 1 {
		os.Exit(tool(os.Args[1:], os.Stdout, os.Stderr))
	}
	pid1()
}

// init1 is the state of PID 1 that the steps share.
type init1 struct {
	log   *slog.Logger
	level slog.LevelVar
	steps *initrt.Steps
	mnt   *initrt.Mounter
	cfg   initrt.Config
	sd    *initrt.Shutdowner
}

// pid1 runs the start-up steps in order, then waits for a shutdown. It
// never returns: PID 1 exiting makes the kernel panic.
func pid1() {
	in := &init1{steps: initrt.NewSteps(monotonic())}
	in.log = initrt.NewLogger(os.Stdout, &in.level)
	in.mnt = initrt.NewMounter(in.log)
	defer func() {
		if r := recover(); r != nil {
			in.fatal(fmt.Errorf("panic: %v\n%s", r, debug.Stack()))
		}
	}()
	stop := in.handleSignals()

	// /proc first: the command line is in it.
	api := initrt.APIMounts()
	in.must(in.mnt.Apply(api[:1]))
	in.readCmdline()
	in.steps.Done("cmdline")
	// The network's kernel work and the mounts' run on both vCPUs at
	// once: each is hundreds of ms of emulated kernel code on some hosts.
	netDone := make(chan struct{})
	go func() {
		defer close(netDone)
		t := time.Now()
		in.network()
		in.steps.Took("network", time.Since(t))
	}()
	in.must(in.mnt.Apply(api[1:]))
	in.steps.Done("mounts")
	in.must(in.mnt.Apply(initrt.RootMounts(in.cfg)))
	if err := initrt.WriteResolvConf(in.cfg); err != nil {
		in.log.Warn("no name servers for programs", "err", err)
	}
	in.steps.Done("root")
	<-netDone
	in.steps.Done("network wait")
	in.startAgent()
	in.steps.Done("agent")

	fmt.Fprintf(os.Stdout, "%sagent ready on vsock port %d (t=%.3fs)\n", initrt.LogPrefix, agentproto.Port, in.steps.Uptime().Seconds())
	in.log.Debug("start-up", "steps", in.steps.String())

	for sig := range stop {
		in.log.Info("signal received", "signal", sig)
		// SIGINT is what the kernel sends on ctrl-alt-del: reboot.
		in.must(in.sd.Shutdown(sig != unix.SIGINT))
	}
}

// handleSignals returns the shutdown signals. Go's runtime makes a process
// exit on SIGHUP, SIGQUIT, SIGABRT and others sent by kill(2); for PID 1
// that is a kernel panic, so those are received and dropped. (signal.Ignore
// would be inherited by every program the agent starts.)
func (in *init1) handleSignals() <-chan os.Signal {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, unix.SIGTERM, unix.SIGINT, unix.SIGPWR)
	drop := make(chan os.Signal, 8)
	signal.Notify(drop, unix.SIGHUP, unix.SIGQUIT, unix.SIGABRT, unix.SIGILL, unix.SIGTRAP,
		unix.SIGBUS, unix.SIGFPE, unix.SIGSEGV, unix.SIGSTKFLT, unix.SIGSYS)
	go func() {
		for sig := range drop {
			in.log.Warn("ignoring a signal sent to PID 1", "signal", sig)
		}
	}()
	return stop
}

func (in *init1) readCmdline() {
	raw, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		in.log.Warn("cannot read the kernel command line; using defaults", "err", err)
	}
	cfg, err := initrt.ParseCmdline(string(raw))
	if err != nil {
		in.log.Warn("ignoring part of the kernel command line", "err", err)
	}
	in.cfg = cfg
	if cfg.Debug {
		in.level.Set(slog.LevelDebug)
	}
	in.sd = &initrt.Shutdowner{Mounter: in.mnt, ReadOnly: initrt.ReadOnlyOnShutdown(cfg), Logger: in.log}
	if err := unix.Sethostname([]byte(cfg.Hostname)); err != nil {
		in.log.Warn("hostname not set", "hostname", cfg.Hostname, "err", err)
	}
}

// network configures lo and eth0; a failure leaves the guest without a
// network, which the agent over vsock does not need, so it is not fatal.
func (in *init1) network() {
	res, err := initrt.ConfigureNetwork(in.cfg)
	if err != nil {
		in.log.Error("network not configured", "err", err)
		return
	}
	in.log.Debug("network", "config", res.Summary)
}

// startAgent starts the zombie reaper and the agent on vsock. It runs
// after the root switch: the agent opens "/" as its files root.
func (in *init1) startAgent() {
	reaper := agent.NewReaper(in.log)
	reaper.Start()
	a, err := agent.New(agent.Config{
		Root:     "/",
		Env:      initrt.Env(in.cfg, os.Environ()),
		Reaper:   reaper,
		Shutdown: in.sd.Shutdown,
		Machine:  initrt.Machine{},
		Layer:    in.mnt.WritableLayer(),
		Logger:   in.log,
	})
	in.must(err)
	l, err := agent.ListenVsock(agentproto.Port)
	if err != nil {
		in.fatal(fmt.Errorf("listen on vsock port %d: %w: the VM needs a vsock device (vmm run --vsock CID,UDS)", agentproto.Port, err))
	}
	go in.serve(a, l)
}

// serve keeps the agent answering: if the listener breaks, listen again.
func (in *init1) serve(a *agent.Agent, l net.Listener) {
	for {
		err := a.Serve(l)
		in.log.Error("agent stopped serving; listening again in 1s", "err", err)
		time.Sleep(time.Second)
		for {
			if l, err = agent.ListenVsock(agentproto.Port); err == nil {
				break
			}
			in.log.Error("agent cannot listen; retrying in 1s", "err", err)
			time.Sleep(time.Second)
		}
	}
}

func (in *init1) must(err error) {
	if err != nil {
		in.fatal(err)
	}
}

// fatal reports err on the console and powers off; a guest that cannot
// serve its agent is better stopped than left hanging. It never returns.
func (in *init1) fatal(err error) {
	fmt.Fprintf(os.Stdout, "%sFATAL: %v\n%spowering off\n", initrt.LogPrefix, err, initrt.LogPrefix)
	unix.Sync()
	err = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	fmt.Fprintf(os.Stdout, "%spower off failed (%v); halting here\n", initrt.LogPrefix, err)
	for {
		// A pending timer keeps Go's deadlock detector, which would exit, away.
		time.Sleep(time.Hour)
	}
}

// monotonic reads CLOCK_MONOTONIC, which counts from boot like /proc/uptime.
func monotonic() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}
