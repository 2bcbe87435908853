package net

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Offload flags of TUNSETOFFLOAD (linux/if_tun.h): which offloaded packets
// the tap may hand to its reader, i.e. what the guest is able to receive.
const (
	tunFCSUM   = 0x01 // TUN_F_CSUM: partial checksums
	tunFTSO4   = 0x02 // TUN_F_TSO4
	tunFTSO6   = 0x04 // TUN_F_TSO6
	tunFTSOECN = 0x08 // TUN_F_TSO_ECN
)

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
