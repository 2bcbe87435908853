package vmm

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/sietch-vm/sietch/jail"
	"github.com/sietch-vm/sietch/uffd"
	"github.com/sietch-vm/sietch/virtio/blk"
	vnet "github.com/sietch-vm/sietch/virtio/net"
	"github.com/sietch-vm/sietch/virtio/rng"
	"github.com/sietch-vm/sietch/virtio/vhostuser"
	"github.com/sietch-vm/sietch/virtio/vsock"
)

// Descriptors a device process receives from the vmm (spawnDevice).
const (
	fdVhostUser = 3 // the vhost-user socket
	fdDevice    = 4 // the disk image, the tap, or the vsock listener
	fdBroker    = 5 // vsock: the dial broker socket
)

// RunDevice is the device process: `vmm device KIND --name NAME [flags]`,
// started by the vmm with its descriptors as fds 3, 4, …. It confines
// itself (jail.Enter) before it reads anything from the guest, then serves
// the vmm's vhost-user frontend until the vmm goes away.
//
// Server mode, `vmm device blk --listen SOCK --disk-path IMG [--ro]
// --no-jail` (also rng, without --disk-path), exists for interop tests and
// debugging: the device opens its own disk, listens on a unix socket and
// serves the one front-end that connects (QEMU's vhost-user-blk, say),
// logging every request. It runs unconfined, so it requires --no-jail.
func RunDevice(args []string, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "vmm device: which device? (blk, net, vsock, rng); this subcommand is started by `vmm run`, not by hand")
		return 2
	}
	kind := args[0]
	fs := pflag.NewFlagSet("vmm device "+kind, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("name", kind, "device name for logs")
	noJail := fs.Bool("no-jail", false, "run unconfined (debugging only)")
	ro := fs.Bool("ro", false, "blk: read-only disk")
	serial := fs.String("serial", "", "blk: the disk's serial (GET_ID)")
	mac := fs.String("mac", "", "net: the guest's MAC address")
	cid := fs.Uint64("cid", 0, "vsock: the guest's CID")
	resetTransport := fs.Bool("reset-transport", false, "vsock: send the guest a transport reset once the event queue runs (after a restore)")
	userfaultDev := fs.Int("userfault-dev-fd", 0, "lazily restored guest memory: the vmm's open /dev/userfaultfd at this fd; the device makes its userfaultfd through it and hands that to the vmm (vhost-user postcopy)")
	listen := fs.String("listen", "", "blk, rng: serve one front-end connecting to this unix socket instead of fd 3 (interop and debugging; needs --no-jail)")
	diskPath := fs.String("disk-path", "", "blk with --listen: the disk image to open instead of fd 4")
	forbidden := fs.Bool("test-forbidden-syscall", false, "tests only: make a system call outside the policy once confined")
	_ = fs.MarkHidden("test-forbidden-syscall")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if msg := checkServerMode(kind, *listen, *diskPath, *noJail); msg != "" {
		fmt.Fprintf(stderr, "vmm device %s: %s\n", kind, msg)
		return 2
	}
	var logOpts *slog.HandlerOptions
	if *listen != "" {
		// Server mode is for looking at a foreign front-end: show each request.
		logOpts = &slog.HandlerOptions{Level: slog.LevelDebug}
	}
	log := slog.New(slog.NewTextHandler(stderr, logOpts)).With("device", *name)

	var policy jail.Policy
	keep := []int{fdVhostUser, fdDevice}
	switch kind {
	case "blk":
		policy = jail.BlkPolicy
	case "net":
		policy = jail.NetPolicy
	case "vsock":
		policy = jail.VsockPolicy
		keep = append(keep, fdBroker)
	case "rng":
		policy = jail.RNGPolicy
		keep = []int{fdVhostUser}
	default:
		fmt.Fprintf(stderr, "vmm device: unknown device %q (blk, net, vsock, rng)\n", kind)
		return 2
	}
	var uf *uffd.FD
	if *userfaultDev > 2 {
		// Only a privileged process, or one holding /dev/userfaultfd,
		// gets a userfaultfd that reports the kernel-mode accesses a
		// device makes (pread into guest buffers).
		dev := os.NewFile(uintptr(*userfaultDev), "userfaultfd-device")
		var err error
		uf, err = uffd.NewFromDevice(dev)
		dev.Close()
		if err != nil {
			log.Error("lazily restored memory", "err", err)
			return 1
		}
		keep = append(keep, uf.Fd())
	}
	if *noJail {
		log.Warn("running without a jail: for debugging only, a guest that breaks this device owns a host process")
	} else if err := jail.Enter(jail.ChildConfig{Policy: policy, KeepFDs: keep}); err != nil {
		log.Error("confine device process", "err", err)
		return 1
	}

	if *forbidden {
		// Proves in tests that the policy is loaded and kills: ptrace is
		// in no device policy.
		unix.Syscall(unix.SYS_PTRACE, unix.PTRACE_TRACEME, 0, 0)
		log.Error("forbidden system call was allowed")
		return 1
	}
	var devFile *os.File // rng has none: fd 4 is not ours to wrap (and close)
	switch {
	case *diskPath != "":
		var err error
		if devFile, err = openDisk(*diskPath, *ro); err != nil {
			log.Error("open disk", "err", err)
			return 1
		}
	case kind != "rng":
		devFile = os.NewFile(fdDevice, map[string]string{"blk": "disk", "net": "tap", "vsock": "vsock-listener"}[kind])
	}
	dev, err := buildDevice(kind, devFile, *ro, *serial, *mac, *cid, log)
	if err != nil {
		log.Error("create device", "err", err)
		return 1
	}
	if v, ok := dev.(*vsock.Device); ok && *resetTransport {
		// The restored guest's sockets were connected to host processes
		// that are gone; the event makes it drop them (virtio 1.2
		// §5.10.6.6), as Firecracker does after a restore.
		v.ResetTransport()
	}
	var conn *net.UnixConn
	if *listen != "" {
		conn, err = acceptOne(*listen, log)
	} else {
		conn, err = fileConn(fdVhostUser, "vhost-user")
	}
	if err != nil {
		log.Error("vhost-user socket", "err", err)
		return 1
	}
	backend := vhostuser.NewBackend(dev, log)
	if uf != nil {
		backend.SetUserfault(uf)
	}
	if err := backend.Serve(conn); err != nil {
		log.Error("vhost-user session ended", "err", err)
		return 1
	}
	return 0
}

// buildDevice makes the device model; f is its disk, tap or vsock listener.
func buildDevice(kind string, f *os.File, ro bool, serial, mac string, cid uint64, log *slog.Logger) (vhostuser.DeviceModel, error) {
	switch kind {
	case "blk":
		return blk.New(f, blk.Options{ReadOnly: ro, ID: serial, Log: log})
	case "net":
		hw, err := net.ParseMAC(mac)
		if err != nil {
			return nil, fmt.Errorf("--mac: %w", err)
		}
		return vnet.New(f, hw)
	case "vsock":
		l, err := net.FileListener(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("vsock listener: %w", err)
		}
		ul, ok := l.(*net.UnixListener)
		if !ok {
			return nil, errors.New("vsock listener is not a unix socket")
		}
		bc, err := fileConn(fdBroker, "vsock-broker")
		if err != nil {
			return nil, err
		}
		return vsock.New(cid, ul, NewVsockDialer(bc).Dial)
	case "rng":
		return rng.New(), nil
	}
	return nil, fmt.Errorf("unknown device %q", kind)
}

func fileConn(fd uintptr, name string) (*net.UnixConn, error) {
	f := os.NewFile(fd, name)
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("%s (fd %d): %w", name, fd, err)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("%s (fd %d) is not a unix socket", name, fd)
	}
	return uc, nil
}

// checkServerMode returns what is wrong with the server-mode flags, or "".
func checkServerMode(kind, listen, diskPath string, noJail bool) string {
	switch {
	case listen == "" && diskPath != "":
		return "--disk-path is only for server mode (--listen); the vmm passes the disk as fd 4"
	case listen == "":
		return ""
	case !noJail:
		return "--listen needs --no-jail: server mode opens host paths itself and is for interop tests and debugging only"
	case kind != "blk" && kind != "rng":
		return "--listen serves blk or rng only; net and vsock need descriptors from the vmm"
	case kind == "blk" && diskPath == "":
		return "--listen needs --disk-path IMG for blk: the disk image to serve"
	case kind == "rng" && diskPath != "":
		return "--disk-path is for blk only"
	}
	return ""
}

// openDisk opens the server-mode disk image, read-only for --ro.
func openDisk(path string, ro bool) (*os.File, error) {
	flag := os.O_RDWR
	if ro {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, fmt.Errorf("--disk-path: %w", err)
	}
	return f, nil
}

// acceptOne listens on the unix socket path, waits for one front-end and
// stops listening (removing the socket) once it is connected.
func acceptOne(path string, log *slog.Logger) (*net.UnixConn, error) {
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("--listen: %w (remove a stale socket first)", err)
	}
	defer ln.Close()
	log.Info("waiting for a vhost-user front-end", "socket", path)
	conn, err := ln.AcceptUnix()
	if err != nil {
		return nil, fmt.Errorf("--listen %s: accept: %w", path, err)
	}
	log.Info("vhost-user front-end connected", "socket", path)
	return conn, nil
}
