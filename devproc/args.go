package devproc

import (
	"strconv"

	"github.com/spf13/pflag"
)

// Args are what the vmm tells a device process on its command line:
// `vmm device KIND --name NAME [flags]`. The vmm writes them (Argv), the
// device process reads them (Flags), so the flag names live here once.
type Args struct {
	Kind           Kind
	Name           string // for logs; the kind's name when empty
	ReadOnly       bool   // blk: the disk is read-only
	Serial         string // blk: the disk's serial (GET_ID)
	MAC            string // net: the guest's MAC address
	CID            uint64 // vsock: the guest's CID
	ResetTransport bool   // vsock: tell the guest its connections are gone (a restore)
	// UserfaultDevFD is the descriptor at which the device process finds
	// the vmm's /dev/userfaultfd while memory is restored lazily; 0: none.
	UserfaultDevFD int
}

// Argv is the device process's command line after `device`.
func (a Args) Argv() []string {
	argv := []string{a.Kind.String()}
	if a.Name != "" {
		argv = append(argv, "--name", a.Name)
	}
	if a.Serial != "" {
		argv = append(argv, "--serial", a.Serial)
	}
	if a.ReadOnly {
		argv = append(argv, "--ro")
	}
	if a.MAC != "" {
		argv = append(argv, "--mac", a.MAC)
	}
	if a.CID != 0 {
		argv = append(argv, "--cid", strconv.FormatUint(a.CID, 10))
	}
	if a.ResetTransport {
		argv = append(argv, "--reset-transport")
	}
	if a.UserfaultDevFD != 0 {
		argv = append(argv, "--userfault-dev-fd", strconv.Itoa(a.UserfaultDevFD))
	}
	return argv
}

// Flags defines a's flags in fs, for a device process of kind k; Kind is
// set to k, Name defaults to k's name.
func (a *Args) Flags(fs *pflag.FlagSet, k Kind) {
	a.Kind = k
	fs.StringVar(&a.Name, "name", k.String(), "device name for logs")
	fs.BoolVar(&a.ReadOnly, "ro", false, "blk: read-only disk")
	fs.StringVar(&a.Serial, "serial", "", "blk: the disk's serial (GET_ID)")
	fs.StringVar(&a.MAC, "mac", "", "net: the guest's MAC address")
	fs.Uint64Var(&a.CID, "cid", 0, "vsock: the guest's CID")
	fs.BoolVar(&a.ResetTransport, "reset-transport", false, "vsock: send the guest a transport reset once the event queue runs (after a restore)")
	fs.IntVar(&a.UserfaultDevFD, "userfault-dev-fd", 0, "lazily restored guest memory: the vmm's open /dev/userfaultfd at this fd; the device makes its userfaultfd through it and hands that to the vmm (vhost-user postcopy)")
}
