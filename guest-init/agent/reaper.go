package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// maxKept bounds the exit statuses the reaper keeps for pids nobody has
// asked about yet; beyond it the oldest (orphans, in practice) are dropped.
const maxKept = 1024

// Reaper lets PID 1 reap every child, orphans included (wait4(-1)), while
// the code that started a child still gets that child's exit status.
//
// One goroutine, woken by SIGCHLD, reaps everything that has exited. A
// status whose pid has a waiter goes to it; any other is kept (up to
// maxKept) until Wait asks for it, so a child that exits before its
// starter calls Wait is not lost. Children must be started with
// StartProcess: it keeps the reaper out while the pid is handed out, so a
// stale status of an earlier process with the same pid is never delivered.
// Nothing else in the process may wait for children (os/exec's Wait
// would fail with ECHILD).
type Reaper struct {
	log  *slog.Logger
	sigs chan os.Signal
	stop chan struct{}
	done chan struct{}

	mu      sync.Mutex
	waiters map[int]chan reaped
	kept    map[int]syscall.WaitStatus
	order   []int // kept pids, oldest first
	state   int   // reaperNew, reaperRunning, reaperClosed
}

const (
	reaperNew = iota
	reaperRunning
	reaperClosed
)

type reaped struct {
	status syscall.WaitStatus
	err    error
}

// NewReaper returns a reaper; it reaps nothing until Start.
func NewReaper(logger *slog.Logger) *Reaper {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Reaper{
		log:     logger,
		sigs:    make(chan os.Signal, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		waiters: make(map[int]chan reaped),
		kept:    make(map[int]syscall.WaitStatus),
	}
}

// Start begins reaping. Calling it again does nothing.
func (r *Reaper) Start() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state != reaperNew {
		return
	}
	r.state = reaperRunning
	signal.Notify(r.sigs, syscall.SIGCHLD)
	go r.loop()
}

// Close stops reaping; pending and later Waits fail.
func (r *Reaper) Close() error {
	r.mu.Lock()
	was := r.state
	r.state = reaperClosed
	for pid, ch := range r.waiters {
		ch <- reaped{err: errors.New("reaper closed")}
		delete(r.waiters, pid)
	}
	r.mu.Unlock()
	if was == reaperRunning {
		close(r.stop)
		<-r.done
		signal.Stop(r.sigs)
	}
	return nil
}

func (r *Reaper) loop() {
	defer close(r.done)
	r.reap() // children that exited before Start
	for {
		select {
		case <-r.sigs:
			r.reap()
		case <-r.stop:
			return
		}
	}
}

// reap collects every exited child without blocking.
func (r *Reaper) reap() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG|unix.WALL, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || pid <= 0 { // ECHILD: no children; 0: none exited
			return
		}
		r.deliver(pid, syscall.WaitStatus(ws))
	}
}

// deliver hands a status to its waiter or keeps it. r.mu is held.
func (r *Reaper) deliver(pid int, ws syscall.WaitStatus) {
	if ch, ok := r.waiters[pid]; ok {
		delete(r.waiters, pid)
		ch <- reaped{status: ws}
		return
	}
	r.log.Debug("reaper: reaped", "pid", pid, "status", ws)
	if _, ok := r.kept[pid]; !ok {
		r.order = append(r.order, pid)
	}
	r.kept[pid] = ws
	for len(r.order) > maxKept {
		old := r.order[0]
		r.order = r.order[1:]
		delete(r.kept, old)
	}
}

// forget drops a kept status. r.mu is held.
func (r *Reaper) forget(pid int) {
	if _, ok := r.kept[pid]; !ok {
		return
	}
	delete(r.kept, pid)
	for i, p := range r.order {
		if p == pid {
			r.order = append(r.order[:i], r.order[i+1:]...)
			break
		}
	}
}

// StartProcess is os.StartProcess with the reaper held off until the new
// pid's stale status, if any, is forgotten. Use it for every child whose
// status will be asked of Wait.
func (r *Reaper) StartProcess(name string, argv []string, attr *os.ProcAttr) (*os.Process, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, err := os.StartProcess(name, argv, attr)
	if err != nil {
		return nil, err
	}
	r.forget(p.Pid) // that pid now names a live process; a kept status is an older one's
	return p, nil
}

// Wait returns pid's exit status once the reaper has collected it. It
// blocks until then, so pid must be a child of this process.
func (r *Reaper) Wait(pid int) (syscall.WaitStatus, error) {
	r.mu.Lock()
	if ws, ok := r.kept[pid]; ok {
		r.forget(pid)
		r.mu.Unlock()
		return ws, nil
	}
	switch {
	case r.state == reaperNew:
		r.mu.Unlock()
		return 0, fmt.Errorf("wait for pid %d: reaper not started; call Start first", pid)
	case r.state == reaperClosed:
		r.mu.Unlock()
		return 0, fmt.Errorf("wait for pid %d: reaper closed", pid)
	}
	if _, ok := r.waiters[pid]; ok {
		r.mu.Unlock()
		return 0, fmt.Errorf("wait for pid %d: already being waited for", pid)
	}
	ch := make(chan reaped, 1)
	r.waiters[pid] = ch
	r.mu.Unlock()
	// Not needed when SIGCHLD arrives as it should; cheap insurance for a
	// child that exited while signals were not yet being watched.
	r.reap()
	res := <-ch
	if res.err != nil {
		return 0, fmt.Errorf("wait for pid %d: %w", pid, res.err)
	}
	return res.status, nil
}
