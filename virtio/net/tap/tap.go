// Package tap opens Linux TAP interfaces in the mode the virtio-net device
// needs, and checks one (Linux Documentation/networking/tuntap.rst). The
// vmm opens the TAP; the jailed device process receives it as a descriptor.
package tap

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// CloneDevice is the TUN/TAP clone device (Linux Documentation/networking/tuntap.rst).
const CloneDevice = "/dev/net/tun"

// tapFlags is the mode every tap the device serves must be in: Ethernet
// frames, no packet-information prefix, a virtio_net_hdr before each frame.
const tapFlags = unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR

// VnetHdrLen is the size of struct virtio_net_hdr with VIRTIO_F_VERSION_1
// (virtio 1.2 §5.1.6): the header the tap puts before each frame.
const VnetHdrLen = 12

// Open opens (creating it if the caller may) the tap interface called name
// in the caller's network namespace, in the mode the device needs: Ethernet
// frames, each preceded by a 12-byte virtio_net_hdr (TUNSETVNETHDRSZ). The
// file is non-blocking and close-on-exec; pass it to the device process,
// which hands it to New. An empty name lets the kernel pick one (tapN).
func Open(name string) (*os.File, error) {
	if len(name) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("open tap %q: name is longer than %d bytes", name, unix.IFNAMSIZ-1)
	}
	fd, err := unix.Open(CloneDevice, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("open tap %q: open %s: %w (is the tun module loaded, and are we root or CAP_NET_ADMIN?)", name, CloneDevice, err)
	}
	if err := setupTap(fd, name); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("open tap %q: %w", name, err)
	}
	return os.NewFile(uintptr(fd), CloneDevice), nil
}

func setupTap(fd int, name string) error {
	feat, err := unix.IoctlGetInt(fd, unix.TUNGETFEATURES)
	if err != nil {
		return fmt.Errorf("TUNGETFEATURES: %w", err)
	}
	if feat&tapFlags != tapFlags {
		return fmt.Errorf("the kernel's tun driver lacks IFF_TAP, IFF_NO_PI or IFF_VNET_HDR (it has %#x)", feat)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	ifr.SetUint16(tapFlags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		if errors.Is(err, unix.EPERM) {
			return fmt.Errorf("TUNSETIFF: %w (creating or attaching a tap needs CAP_NET_ADMIN, or a persistent tap owned by this user)", err)
		}
		if errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("TUNSETIFF: %w (the interface exists and is not a free single-queue tap)", err)
		}
		return fmt.Errorf("TUNSETIFF: %w", err)
	}
	// The tap and the guest then use the same header, so it passes through
	// unchanged (virtio 1.2 §5.1.6, with VIRTIO_F_VERSION_1). Its fields are
	// in the tap's default byte order, little-endian on x86-64.
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, VnetHdrLen); err != nil {
		return fmt.Errorf("TUNSETVNETHDRSZ %d: %w", VnetHdrLen, err)
	}
	return nil
}

// Check verifies that fd is a tap in the mode Open sets.
func Check(fd int) error {
	ifr, err := unix.NewIfreq("")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.TUNGETIFF, ifr); err != nil {
		return fmt.Errorf("TUNGETIFF: %w (is it a tap from tap.Open?)", err)
	}
	if f := ifr.Uint16(); f&tapFlags != tapFlags {
		return fmt.Errorf("tap %q has flags %#x, want IFF_TAP|IFF_NO_PI|IFF_VNET_HDR (open it with tap.Open)", ifr.Name(), f)
	}
	sz, err := unix.IoctlGetInt(fd, unix.TUNGETVNETHDRSZ)
	if err != nil {
		return fmt.Errorf("TUNGETVNETHDRSZ: %w", err)
	}
	if sz != VnetHdrLen {
		return fmt.Errorf("tap %q has a %d-byte vnet header, want %d (open it with tap.Open)", ifr.Name(), sz, VnetHdrLen)
	}
	return nil
}
