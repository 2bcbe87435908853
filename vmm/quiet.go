package vmm

import (
	"io"
	"sync/atomic"
	"time"
)

// On a host whose KVM emulates guest kernel mode, a guest kernel runs about
// a microsecond per instruction: the project kernel reaches its init in
// seconds, a distribution kernel may print nothing for minutes or stop at
// an instruction the emulator lacks. A user watching an empty console
// cannot tell those apart from a hang, so a booting VM that has printed
// nothing after Config.QuietHint says once what is going on. It is only a
// hint: the VM keeps running.

// quietHint is what the vmm says; the delay is filled in.
const quietHint = "this host's KVM emulates guest kernel mode (`vmm check`), so guest kernel code runs " +
	"about a microsecond per instruction: the project kernel (`make kernel`) with the compatibility profile " +
	"reaches its init in seconds to a minute, while a distribution kernel can stay silent for many minutes " +
	"or stop at an instruction the emulator lacks (the host's dmesg then says kvm-pvm: INTERNAL_ERROR). " +
	"The VM keeps running; stop it with Ctrl-C or `vmm stop`"

// consoleWatch passes the guest's console output on and notes that the
// guest has spoken.
type consoleWatch struct {
	w     io.Writer
	spoke atomic.Bool
}

func (c *consoleWatch) Write(p []byte) (int, error) {
	if len(p) > 0 {
		c.spoke.Store(true)
	}
	return c.w.Write(p)
}

// watchQuiet runs while the VM runs: if the guest has written no console
// byte when the delay has passed, it logs the hint once. Only a booting VM
// on an emulated-kernel-mode host is watched; a restored one is quiet
// because it is past its boot.
func (m *Machine) watchQuiet() {
	d := m.cfg.QuietHint
	if d <= 0 || !m.compat || m.console == nil {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-m.done:
	case <-t.C:
		if !m.console.spoke.Load() {
			m.log.Warn("the guest has printed nothing on its console for "+d.String()+"; "+quietHint,
				"emulated_kernel_mode", true, "compat_profile", m.compat)
		}
	}
}
