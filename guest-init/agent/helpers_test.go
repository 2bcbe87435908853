package agent

import (
	"context"
	"syscall"
	"time"
)

func contextWithCancel(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithCancel(ctx)
}

// sleepBriefly paces a poll for an event that has no notification.
func sleepBriefly() { time.Sleep(10 * time.Millisecond) }

func syscallKill(pid int) { syscall.Kill(pid, syscall.SIGKILL) }
