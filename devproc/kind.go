package devproc

import (
	"fmt"

	"github.com/sietch-vm/sietch/jail"
	"github.com/sietch-vm/sietch/virtio"
)

// Kind is a kind of virtio device the vmm attaches. What each kind is —
// its name, what the guest sees, its seccomp policy, the descriptors its
// process receives — is one row of the table below; the back-end that
// builds its device model is package devmain's (by Kind), so that the vmm
// links no device model.
type Kind uint8

// The device kinds. The zero Kind is none.
const (
	Blk          Kind = iota + 1 // virtio-blk on a raw disk image
	Net                          // virtio-net on a TAP
	Vsock                        // virtio-vsock on a host unix socket
	RNG                          // virtio-rng
	VhostUserBlk                 // virtio-blk served by a back-end the vmm does not start
)

// FD is what a descriptor passed to a device process is for.
type FD uint8

// The descriptors a device process may receive besides its vhost-user
// socket (FDVhostUser).
const (
	FDDisk          FD = iota + 1 // the disk image, opened read-only for --ro
	FDTap                         // the TAP, opened with a vnet header
	FDVsockListener               // the host socket the vmm bound and listens on
	FDVsockBroker                 // the device's end of the vsock dial broker (broker.go)
)

// FDVhostUser is the device process's end of its vhost-user socketpair;
// the descriptors of its kind's FDs follow it, in table order.
const FDVhostUser = 3

type kindInfo struct {
	// name is the kind on the device process's command line (`vmm device
	// NAME`) and in snapshots (snapshot.Virtio.Kind): snapshots on disk
	// hold it, so it never changes.
	name string
	// model is what the guest sees, as the control socket's GET /info
	// reports it.
	model    string
	deviceID uint32 // virtio 1.2 §5
	queues   int    // virtio 1.2 §5.2.2, §5.1.2, §5.10.2, §5.4.2
	// policy confines the device process (jail/testdata/NAME.golden); nil
	// for a kind whose back-end the vmm does not start.
	policy *jail.Policy
	fds    []FD // the descriptors after FDVhostUser, in order
	about  string
}

var kinds = [...]kindInfo{
	Blk: {name: "blk", model: "virtio-blk", deviceID: virtio.DeviceBlock, queues: 1,
		policy: &jail.BlkPolicy, fds: []FD{FDDisk},
		about: "virtio-blk: a raw disk image, given as a descriptor"},
	Net: {name: "net", model: "virtio-net", deviceID: virtio.DeviceNet, queues: 2,
		policy: &jail.NetPolicy, fds: []FD{FDTap},
		about: "virtio-net: frames on a TAP, given as a descriptor"},
	Vsock: {name: "vsock", model: "virtio-vsock", deviceID: virtio.DeviceVsock, queues: 3,
		policy: &jail.VsockPolicy, fds: []FD{FDVsockListener, FDVsockBroker},
		about: "virtio-vsock: host connections on a listening unix socket, guest connections through the vmm's dial broker"},
	RNG: {name: "rng", model: "virtio-rng", deviceID: virtio.DeviceRNG, queues: 1,
		policy: &jail.RNGPolicy,
		about:  "virtio-rng: entropy from the host's getrandom"},
	VhostUserBlk: {name: "vhost-user-blk", model: "virtio-blk", deviceID: virtio.DeviceBlock, queues: 1,
		about: "virtio-blk served by an external vhost-user back-end (qemu-storage-daemon, say)"},
}

// Kinds lists every kind, in table order.
func Kinds() []Kind {
	ks := make([]Kind, 0, len(kinds)-1)
	for k := range kinds {
		if k != 0 {
			ks = append(ks, Kind(k))
		}
	}
	return ks
}

// Processes lists the kinds the vmm runs as its own device processes
// (`vmm device NAME`), in table order.
func Processes() []Kind {
	var ks []Kind
	for _, k := range Kinds() {
		if k.Process() {
			ks = append(ks, k)
		}
	}
	return ks
}

// ParseKind returns the kind named name, as String spells it.
func ParseKind(name string) (Kind, bool) {
	for _, k := range Kinds() {
		if kinds[k].name == name {
			return k, true
		}
	}
	return 0, false
}

func (k Kind) info() *kindInfo {
	if int(k) < len(kinds) {
		return &kinds[k]
	}
	return &kinds[0]
}

// String is the kind's name on the command line and in snapshots.
func (k Kind) String() string {
	if n := k.info().name; n != "" {
		return n
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Model is what the guest sees: "virtio-blk", "virtio-net", ….
func (k Kind) Model() string { return k.info().model }

// DeviceID is the virtio device ID the transport reports.
func (k Kind) DeviceID() uint32 { return k.info().deviceID }

// Queues is the number of virtqueues.
func (k Kind) Queues() int { return k.info().queues }

// Process reports whether the vmm starts this kind's back-end itself, as a
// jailed `vmm device NAME` process.
func (k Kind) Process() bool { return k.info().policy != nil }

// Policy is the seccomp policy the device process applies last; the zero
// Policy for a kind that is not our process.
func (k Kind) Policy() jail.Policy {
	if p := k.info().policy; p != nil {
		return *p
	}
	return jail.Policy{}
}

// FDs are the descriptors the device process receives after its
// vhost-user socket, in order.
func (k Kind) FDs() []FD { return k.info().fds }

// FD returns the descriptor number at which the device process finds f,
// and false if its kind receives none.
func (k Kind) FD(f FD) (int, bool) {
	for i, g := range k.info().fds {
		if g == f {
			return FDVhostUser + 1 + i, true
		}
	}
	return 0, false
}

// About describes the kind for people.
func (k Kind) About() string { return k.info().about }

// String names the descriptor, as the device process names its os.File.
func (f FD) String() string {
	switch f {
	case FDDisk:
		return "disk"
	case FDTap:
		return "tap"
	case FDVsockListener:
		return "vsock-listener"
	case FDVsockBroker:
		return "vsock-broker"
	}
	return fmt.Sprintf("FD(%d)", uint8(f))
}
