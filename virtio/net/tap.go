package net

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// tunDevice is the TUN/TAP clone device (Linux Documentation/networking/tuntap.rst).
const tunDevice = "/dev/net/tun"

// Offload flags of TUNSETOFFLOAD (linux/if_tun.h): which offloaded packets
// the tap may hand to its reader, i.e. what the guest is able to receive.
const (
	tunFCSUM   = 0x01 // TUN_F_CSUM: partial checksums
	tunFTSO4   = 0x02 // TUN_F_TSO4
	tunFTSO6   = 0x04 // TUN_F_TSO6
	tunFTSOECN = 0x08 // TUN_F_TSO_ECN
)

// tapFlags is the mode every tap the device serves must be in: Ethernet
// frames, no packet-information prefix, a virtio_net_hdr before each frame.
const tapFlags = unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR

// OpenTap opens (creating it if the caller may) the tap interface called name
// in the caller's network namespace, in the mode the device needs: Ethernet
// frames, each preceded by a 12-byte virtio_net_hdr (TUNSETVNETHDRSZ). The
// file is non-blocking and close-on-exec; pass it to the device process,
// which hands it to New. An empty name lets the kernel pick one (tapN).
func OpenTap(name string) (*os.File, error) {
	if len(name) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("open tap %q: name is longer than %d bytes", name, unix.IFNAMSIZ-1)
	}
	fd, err := unix.Open(tunDevice, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("open tap %q: open %s: %w (is the tun module loaded, and are we root or CAP_NET_ADMIN?)", name, tunDevice, err)
	}
	if err := setupTap(fd, name); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("open tap %q: %w", name, err)
	}
	return os.NewFile(uintptr(fd), tunDevice), nil
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
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, hdrLen); err != nil {
		return fmt.Errorf("TUNSETVNETHDRSZ %d: %w", hdrLen, err)
	}
	return nil
}

// checkTap verifies that fd is a tap in the mode OpenTap sets.
func checkTap(fd int) error {
	ifr, err := unix.NewIfreq("")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.TUNGETIFF, ifr); err != nil {
		return fmt.Errorf("TUNGETIFF: %w (is it a tap from OpenTap?)", err)
	}
	if f := ifr.Uint16(); f&tapFlags != tapFlags {
		return fmt.Errorf("tap %q has flags %#x, want IFF_TAP|IFF_NO_PI|IFF_VNET_HDR (open it with OpenTap)", ifr.Name(), f)
	}
	sz, err := unix.IoctlGetInt(fd, unix.TUNGETVNETHDRSZ)
	if err != nil {
		return fmt.Errorf("TUNGETVNETHDRSZ: %w", err)
	}
	if sz != hdrLen {
		return fmt.Errorf("tap %q has a %d-byte vnet header, want %d (open it with OpenTap)", ifr.Name(), sz, hdrLen)
	}
	return nil
}

// probeOffloads returns the largest set of offloads the tap accepts, tried
// from most to least, and leaves the tap with none enabled. A kernel
// refuses flags it does not know with EINVAL.
func probeOffloads(fd int) (int, error) {
	for _, f := range []int{
		tunFCSUM | tunFTSO4 | tunFTSO6 | tunFTSOECN,
		tunFCSUM | tunFTSO4 | tunFTSO6,
		tunFCSUM,
	} {
		if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, f); err == nil {
			if err := setOffloads(fd, 0); err != nil {
				return 0, err
			}
			return f, nil
		}
	}
	return 0, setOffloads(fd, 0)
}

func setOffloads(fd, flags int) error {
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, flags); err != nil {
		return fmt.Errorf("TUNSETOFFLOAD %#x: %w", flags, err)
	}
	return nil
}
