package initrt

import (
	"fmt"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Machine applies a new identity to the running guest, for the agent's
// POST /v1/identity after a restore, fork or template create. It needs
// PID 1's privileges (CAP_SYS_ADMIN, CAP_SYS_TIME).
type Machine struct{}

// SetIdentity sets the hostname, steps the wall clock to now and mixes
// entropy into the kernel's input pool, then reseeds the CRNG from it so
// that getrandom() in two forks of one snapshot differs from the next
// call on. Zero arguments are skipped.
func (Machine) SetIdentity(hostname string, now time.Time, entropy []byte) error {
	if hostname != "" {
		if err := unix.Sethostname([]byte(hostname)); err != nil {
			return fmt.Errorf("sethostname %q: %w", hostname, err)
		}
	}
	if !now.IsZero() {
		ts := unix.NsecToTimespec(now.UnixNano())
		if err := unix.ClockSettime(unix.CLOCK_REALTIME, &ts); err != nil {
			return fmt.Errorf("set the wall clock: %w", err)
		}
	}
	if len(entropy) > 0 {
		if err := reseed(entropy); err != nil {
			return err
		}
	}
	return nil
}

// reseed writes b into the input pool through /dev/urandom and forces a
// CRNG reseed (RNDRESEEDCRNG, Linux 4.17+): the next key derives from the
// pool that now holds b. Crediting the bytes (RNDADDENTROPY) is not
// needed: the CRNG was initialised at boot.
func reseed(b []byte) error {
	f, err := os.OpenFile("/dev/urandom", os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open /dev/urandom: %w", err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		return fmt.Errorf("mix entropy into the pool: %w", err)
	}
	if err := unix.IoctlSetInt(int(f.Fd()), unix.RNDRESEEDCRNG, 0); err != nil {
		return fmt.Errorf("reseed the CRNG (RNDRESEEDCRNG): %w", err)
	}
	return nil
}

// SetNetwork gives eth0 a new address, default route and name servers
// (ReconfigureNetwork).
func (Machine) SetNetwork(addr netip.Prefix, gw netip.Addr, dns []netip.Addr) error {
	return ReconfigureNetwork(Config{Addr: addr, Gateway: gw, DNS: dns})
}
