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
	forbidden := fs.Bool("test-forbidden-syscall", false, "tests only: make a system call outside the policy once confined")
	_ = fs.MarkHidden("test-forbidden-syscall")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, nil)).With("device", *name)

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
	dev, err := buildDevice(kind, *ro, *serial, *mac, *cid, log)
	if err != nil {
		log.Error("create device", "err", err)
		return 1
	}
	conn, err := fileConn(fdVhostUser, "vhost-user")
	if err != nil {
		log.Error("vhost-user socket", "err", err)
		return 1
	}
	if err := vhostuser.NewBackend(dev, log).Serve(conn); err != nil {
		log.Error("vhost-user session ended", "err", err)
		return 1
	}
	return 0
}

func buildDevice(kind string, ro bool, serial, mac string, cid uint64, log *slog.Logger) (vhostuser.Device, error) {
	switch kind {
	case "blk":
		return blk.New(os.NewFile(fdDevice, "disk"), blk.Options{ReadOnly: ro, ID: serial, Log: log})
	case "net":
		hw, err := net.ParseMAC(mac)
		if err != nil {
			return nil, fmt.Errorf("--mac: %w", err)
		}
		return vnet.New(os.NewFile(fdDevice, "tap"), hw)
	case "vsock":
		f := os.NewFile(fdDevice, "vsock-listener")
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
		return rng.New(log), nil
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
