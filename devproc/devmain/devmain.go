// Package devmain is the device process: `vmm device KIND`, the vmm binary
// re-executed with its descriptors as fds 3, 4, …. It confines itself
// (jail.Enter) before it reads anything from the guest, builds its kind's
// device model and serves the vmm's vhost-user front-end.
package devmain

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/sietch-vm/sietch/devproc"
	"github.com/sietch-vm/sietch/jail"
	"github.com/sietch-vm/sietch/uffd"
	"github.com/sietch-vm/sietch/virtio/blk"
	vnet "github.com/sietch-vm/sietch/virtio/net"
	"github.com/sietch-vm/sietch/virtio/rng"
	"github.com/sietch-vm/sietch/virtio/vhostuser"
	"github.com/sietch-vm/sietch/virtio/vsock"
)

// backend is what builds a kind's device model from its arguments and its
// descriptors (devproc.Kind.FDs, keyed by what each is for).
type backend func(a devproc.Args, fds map[devproc.FD]*os.File, log *slog.Logger) (vhostuser.DeviceModel, error)

// backends has one back-end for each kind devproc.Processes lists; the rest
// of what a kind is, is devproc's table.
var backends = map[devproc.Kind]backend{
	devproc.Blk:   newBlk,
	devproc.Net:   newNet,
	devproc.Vsock: newVsock,
	devproc.RNG:   newRNG,
}

// Run is the device process: `vmm device KIND --name NAME [flags]`,
// started by the vmm (devproc.Spawner) with its descriptors as fds 3, 4, ….
// It returns the process's exit status.
//
// Server mode, `vmm device blk --listen SOCK --disk-path IMG [--ro]
// --no-jail` (also rng, without --disk-path), exists for interop tests and
// debugging: the device opens its own disk, listens on a unix socket and
// serves the one front-end that connects (QEMU's vhost-user-blk, say),
// logging every request. It runs unconfined, so it requires --no-jail.
func Run(args []string, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintf(stderr, "vmm device: which device? (%s); this subcommand is started by `vmm run`, not by hand\n", names(devproc.Processes(), ", "))
		return 2
	}
	name := args[0]
	kind, ok := devproc.ParseKind(name)
	ok = ok && kind.Process()
	fs := pflag.NewFlagSet("vmm device "+name, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	if ok {
		fs.Usage = func() {
			fmt.Fprintf(stderr, "Usage of vmm device %s (%s):\n%s", name, kind.About(), fs.FlagUsages())
		}
	}
	var a devproc.Args
	a.Flags(fs, kind)
	if !ok {
		a.Name = name
	}
	noJail := fs.Bool("no-jail", false, "run unconfined (debugging only)")
	listen := fs.String("listen", "", "blk, rng: serve one front-end connecting to this unix socket instead of fd 3 (interop and debugging; needs --no-jail)")
	diskPath := fs.String("disk-path", "", "blk with --listen: the disk image to open instead of fd 4")
	forbidden := fs.Bool("test-forbidden-syscall", false, "tests only: make a system call outside the policy once confined")
	_ = fs.MarkHidden("test-forbidden-syscall")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if msg := checkServerMode(kind, *listen, *diskPath, *noJail); msg != "" {
		fmt.Fprintf(stderr, "vmm device %s: %s\n", name, msg)
		return 2
	}
	if !ok {
		fmt.Fprintf(stderr, "vmm device: unknown device %q (%s)\n", name, names(devproc.Processes(), ", "))
		return 2
	}
	var logOpts *slog.HandlerOptions
	if *listen != "" {
		// Server mode is for looking at a foreign front-end: show each request.
		logOpts = &slog.HandlerOptions{Level: slog.LevelDebug}
	}
	log := slog.New(slog.NewTextHandler(stderr, logOpts)).With("device", a.Name)

	keep := []int{devproc.FDVhostUser}
	for _, f := range kind.FDs() {
		n, _ := kind.FD(f)
		keep = append(keep, n)
	}
	var uf *uffd.FD
	if a.UserfaultDevFD > 2 {
		// Only a privileged process, or one holding /dev/userfaultfd,
		// gets a userfaultfd that reports the kernel-mode accesses a
		// device makes (pread into guest buffers).
		dev := os.NewFile(uintptr(a.UserfaultDevFD), "userfaultfd-device")
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
	} else if err := jail.Enter(jail.ChildConfig{Policy: kind.Policy(), KeepFDs: keep}); err != nil {
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
	fds := map[devproc.FD]*os.File{}
	if *diskPath != "" {
		f, err := openDisk(*diskPath, a.ReadOnly)
		if err != nil {
			log.Error("open disk", "err", err)
			return 1
		}
		fds[devproc.FDDisk] = f
	} else {
		for _, f := range kind.FDs() {
			n, _ := kind.FD(f)
			fds[f] = os.NewFile(uintptr(n), f.String())
		}
	}
	dev, err := backends[kind](a, fds, log)
	if err != nil {
		log.Error("create device", "err", err)
		return 1
	}
	if v, ok := dev.(*vsock.Device); ok && a.ResetTransport {
		// The restored guest's sockets were connected to host processes
		// that are gone; the event makes it drop them (virtio 1.2
		// §5.10.6.6), as Firecracker does after a restore.
		v.ResetTransport()
	}
	var conn *net.UnixConn
	if *listen != "" {
		conn, err = acceptOne(*listen, log)
	} else {
		conn, err = fileConn(os.NewFile(devproc.FDVhostUser, "vhost-user"))
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

func newBlk(a devproc.Args, fds map[devproc.FD]*os.File, log *slog.Logger) (vhostuser.DeviceModel, error) {
	return blk.New(fds[devproc.FDDisk], blk.Options{ReadOnly: a.ReadOnly, ID: a.Serial, Log: log})
}

func newNet(a devproc.Args, fds map[devproc.FD]*os.File, _ *slog.Logger) (vhostuser.DeviceModel, error) {
	hw, err := net.ParseMAC(a.MAC)
	if err != nil {
		return nil, fmt.Errorf("--mac: %w", err)
	}
	return vnet.New(fds[devproc.FDTap], hw)
}

func newVsock(a devproc.Args, fds map[devproc.FD]*os.File, _ *slog.Logger) (vhostuser.DeviceModel, error) {
	f := fds[devproc.FDVsockListener]
	l, err := net.FileListener(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("vsock listener: %w", err)
	}
	ul, ok := l.(*net.UnixListener)
	if !ok {
		return nil, errors.New("vsock listener is not a unix socket")
	}
	bc, err := fileConn(fds[devproc.FDVsockBroker])
	if err != nil {
		return nil, err
	}
	d, err := vsock.New(a.CID, ul, devproc.NewVsockDialer(bc).Dial)
	if err != nil {
		return nil, err
	}
	d.SetFDLimit(fdLimit())
	return d, nil
}

func newRNG(devproc.Args, map[devproc.FD]*os.File, *slog.Logger) (vhostuser.DeviceModel, error) {
	return rng.New(), nil
}

// fileConn makes a unix socket connection of f, and closes f.
func fileConn(f *os.File) (*net.UnixConn, error) {
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("%s (fd %d): %w", f.Name(), f.Fd(), err)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("%s (fd %d) is not a unix socket", f.Name(), f.Fd())
	}
	return uc, nil
}

// serverKinds are the kinds server mode serves: those whose descriptors
// the device can open itself (a disk image by path), or that need none.
func serverKinds() (serve, not []devproc.Kind) {
	for _, k := range devproc.Processes() {
		own := true
		for _, f := range k.FDs() {
			own = own && f == devproc.FDDisk
		}
		if own {
			serve = append(serve, k)
		} else {
			not = append(not, k)
		}
	}
	return serve, not
}

// checkServerMode returns what is wrong with the server-mode flags, or "".
func checkServerMode(kind devproc.Kind, listen, diskPath string, noJail bool) string {
	_, hasDisk := kind.FD(devproc.FDDisk)
	serve, not := serverKinds()
	switch {
	case listen == "" && diskPath != "":
		return "--disk-path is only for server mode (--listen); the vmm passes the disk as fd 4"
	case listen == "":
		return ""
	case !noJail:
		return "--listen needs --no-jail: server mode opens host paths itself and is for interop tests and debugging only"
	case !contains(serve, kind):
		return fmt.Sprintf("--listen serves %s only; %s need descriptors from the vmm", names(serve, " or "), names(not, " and "))
	case hasDisk && diskPath == "":
		return fmt.Sprintf("--listen needs --disk-path IMG for %s: the disk image to serve", kind)
	case !hasDisk && diskPath != "":
		return fmt.Sprintf("--disk-path is for %s only", names(diskKinds(), " or "))
	}
	return ""
}

// diskKinds are the kinds that take a disk image.
func diskKinds() []devproc.Kind {
	var ks []devproc.Kind
	for _, k := range devproc.Processes() {
		if _, ok := k.FD(devproc.FDDisk); ok {
			ks = append(ks, k)
		}
	}
	return ks
}

func contains(ks []devproc.Kind, k devproc.Kind) bool {
	for _, x := range ks {
		if x == k {
			return true
		}
	}
	return false
}

// names joins the kinds' names with sep.
func names(ks []devproc.Kind, sep string) string {
	s := make([]string, len(ks))
	for i, k := range ks {
		s[i] = k.String()
	}
	return strings.Join(s, sep)
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

// fdLimit is this process's RLIMIT_NOFILE: what the jail set, or, run
// without one (--no-jail), what getrlimit says.
func fdLimit() uint64 {
	if n := jail.NoFileLimit(); n > 0 {
		return n
	}
	var r unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &r); err != nil {
		return vsock.DefaultFDLimit
	}
	return r.Cur
}
