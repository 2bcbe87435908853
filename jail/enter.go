package jail

import (
	"fmt"
	"os"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// envRlimits carries Spec.Rlimits to Enter.
const envRlimits = "SIETCH_JAIL_RLIMITS"

// ChildConfig is what the device process asks of Enter.
type ChildConfig struct {
	// Policy is loaded last, on all threads.
	Policy Policy
	// KeepFDs stay open besides stderr (2); every other descriptor is
	// closed, and 0 and 1 become /dev/null unless listed.
	KeepFDs []int
	// Rlimits combine with the parent's Spec.Rlimits, field by field; the
	// smaller wins, and zero fields take DefaultRlimits.
	Rlimits Rlimits
}

// Enter confines the calling process, in this order (after Firecracker's
// jailer): it checks it was started by Command, closes every descriptor
// but the kept ones, pivots into an empty read-only tmpfs, drops all
// capabilities and switches to DeviceID on every thread, sets rlimits and
// clears dumpable (no core, no ptrace by other "nobody" processes), and
// loads the seccomp policy last. It is the first thing a device subcommand
// does: before it opens, polls or reads anything.
func Enter(c ChildConfig) error {
	if err := enter(c); err != nil {
		return fmt.Errorf("jail: %w", err)
	}
	return nil
}

func enter(c ChildConfig) error {
	// The time package reads /etc/localtime on first use; there is none in
	// the empty root and the policies allow no open. Use UTC from here on.
	time.Local = time.UTC
	// Securebits, the bounding set and no_new_privs are per thread: do
	// them all on one.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := checkFreshNamespaces(); err != nil {
		return err
	}
	parent, err := parseRlimits(os.Getenv(envRlimits))
	if err != nil {
		return fmt.Errorf("%s from the parent: %w", envRlimits, err)
	}
	os.Unsetenv(envRlimits)
	if err := closeFDs(c.KeepFDs); err != nil {
		return err
	}
	if err := pivotToEmptyRoot(); err != nil {
		return err
	}
	if err := dropCapabilities(); err != nil {
		return err
	}
	if err := c.Rlimits.stricter(parent).withDefaults().apply(); err != nil {
		return err
	}
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("clear dumpable: %w", err)
	}
	if err := checkConfined(true); err != nil {
		return err
	}
	if err := rootIsEmpty(); err != nil {
		return err
	}
	return c.Policy.Load()
}
