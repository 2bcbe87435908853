package main

import (
	"github.com/sietch-vm/sietch/vmm/controlserver"

	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"time"

	"github.com/spf13/pflag"

	"github.com/sietch-vm/sietch/vmm"
	"github.com/sietch-vm/sietch/wire/control"
)

// controlTimeout bounds one client call; pausing waits for every vCPU to
// leave the guest, which is slow only when guest kernel mode is emulated.
const controlTimeout = 60 * time.Second

// cmdControl runs a client subcommand (info, pause, resume, stop, snapshot)
// against a running vmm's control socket.
func cmdControl(name string, args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("vmm "+name, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	sock := fs.String("api-sock", "", "the control socket `PATH` given to vmm run --api-sock (required)")
	var dir, kind *string
	if name == "snapshot" {
		dir = fs.String("dir", "", "`DIR` to write the snapshot into (required)")
		kind = fs.String("kind", control.SnapshotFull, "full (all memory) or diff (pages dirtied since the last snapshot)")
	}
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: vmm %s --api-sock PATH [flags]\n\nFlags:\n%s", name, fs.FlagUsages())
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "vmm %s: %v\n", name, err)
		fs.Usage()
		return exitUsage
	}
	bad := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "vmm %s: "+format+"\n", append([]any{name}, a...)...)
		fs.Usage()
		return exitUsage
	}
	if fs.NArg() > 0 {
		return bad("unexpected argument %q", fs.Arg(0))
	}
	if *sock == "" {
		return bad("--api-sock is required")
	}
	var req control.SnapshotRequest
	if name == "snapshot" {
		if *dir == "" {
			return bad("--dir is required")
		}
		if *kind != control.SnapshotFull && *kind != control.SnapshotDiff {
			return bad("--kind must be full or diff, not %q", *kind)
		}
		abs, err := filepath.Abs(*dir) // the vmm's working directory is not ours
		if err != nil {
			return bad("--dir: %v", err)
		}
		req = control.SnapshotRequest{Dir: abs, Kind: *kind}
	}

	ctx, cancel := context.WithTimeout(context.Background(), controlTimeout)
	defer cancel()
	c := control.NewClient(*sock)
	var err error
	switch name {
	case "info":
		var info *control.Info
		if info, err = c.Info(ctx); err == nil {
			b, _ := json.MarshalIndent(info, "", "  ")
			fmt.Fprintf(stdout, "%s\n", b)
		}
	case "pause":
		err = c.Pause(ctx)
	case "resume":
		err = c.Resume(ctx)
	case "stop":
		err = c.Stop(ctx)
	case "snapshot":
		err = c.Snapshot(ctx, req)
	default:
		return bad("not a control command")
	}
	if err != nil {
		fmt.Fprintf(stderr, "vmm %s: %v\n", name, err)
		return exitError
	}
	return 0
}

// controlSocket is `vmm run --api-sock`: listening starts before the VM is
// built (so a live socket is refused early), serving once it exists.
type controlSocket struct {
	ln   net.Listener
	srv  *controlserver.Server
	done chan struct{}
	once sync.Once
	log  *slog.Logger
}

// listenControl listens on path; an empty path gives a nil controlSocket,
// whose methods do nothing.
func listenControl(path string, log *slog.Logger) (*controlSocket, error) {
	if path == "" {
		return nil, nil
	}
	ln, err := controlserver.Listen(path)
	if err != nil {
		return nil, fmt.Errorf("--api-sock: %w", err)
	}
	return &controlSocket{ln: ln, log: log}, nil
}

// serve answers control requests for m until close.
func (c *controlSocket) serve(m *vmm.Machine) {
	if c == nil {
		return
	}
	var vm controlserver.VM = m
	if jailed != nil {
		vm = jailHint{m}
	}
	c.srv = controlserver.New(vm, "")
	c.done = make(chan struct{})
	go func() {
		defer close(c.done)
		if err := c.srv.Serve(c.ln); err != nil {
			c.log.Warn("control socket failed; the VM runs on without it", "err", err)
		}
	}()
}

// close lets requests in flight finish (the PUT /stop that ended the VM
// gets its answer) and removes the socket file.
func (c *controlSocket) close() {
	if c == nil {
		return
	}
	c.once.Do(func() {
		if c.srv == nil {
			c.ln.Close()
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := c.srv.Shutdown(ctx); err != nil {
			c.log.Warn("shut the control socket down", "err", err)
			c.ln.Close()
		}
		<-c.done
	})
}
