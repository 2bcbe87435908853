package agent

import (
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// parseSignal accepts "SIGTERM", "TERM" or "15".
func parseSignal(s string) (syscall.Signal, *Error) {
	if s == "" {
		return 0, badRequest("signal is required, such as \"SIGTERM\"")
	}
	if n, err := strconv.Atoi(s); err == nil {
		if n < 1 || n > 64 {
			return 0, badRequest("signal %d: want 1 to 64", n)
		}
		return syscall.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	sig := unix.SignalNum(name)
	if sig == 0 {
		return 0, badRequest("signal %q: unknown; use a name such as SIGTERM or a number", s)
	}
	return sig, nil
}
