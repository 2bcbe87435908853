package jail

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Died says in words how a device process ended, for logs and errors:
// "exited with status 3", "killed by SIGKILL", "killed by SIGSYS (seccomp:
// forbidden system call)".
func Died(state *os.ProcessState) string {
	if state == nil {
		return "not finished"
	}
	ws, ok := state.Sys().(syscall.WaitStatus)
	if !ok {
		return state.String()
	}
	switch {
	case ws.Exited():
		return fmt.Sprintf("exited with status %d", ws.ExitStatus())
	case ws.Signaled():
		s := "killed by " + signalName(ws.Signal())
		if ws.Signal() == syscall.SIGSYS {
			s += " (seccomp: forbidden system call)"
		}
		if ws.CoreDump() {
			s += " (core dumped)"
		}
		return s
	case ws.Stopped():
		return "stopped by " + signalName(ws.StopSignal())
	}
	return state.String()
}

func signalName(s syscall.Signal) string {
	if n := unix.SignalName(s); n != "" {
		return n
	}
	return fmt.Sprintf("signal %d", int(s))
}
