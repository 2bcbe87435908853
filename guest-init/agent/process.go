package agent

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/sietch-vm/sietch/wire/agentproto"
)

// process is one running exec: its own process group (or session, on a
// PTY), the parent's ends of its stdio, and how it ended.
type process struct {
	id   string
	pid  int
	proc *os.Process

	ptmx   *os.File   // PTY master: output and, with stdin, input; nil without a TTY
	stdin  *os.File   // where stdin bytes go; nil when the exec has no stdin
	output []*os.File // read ends: stdout, stderr (or the PTY master)

	exited   chan struct{} // closed once the process is reaped
	status   syscall.WaitStatus
	waitErr  error
	timedOut atomic.Bool

	mu         sync.Mutex
	stdinTaken bool

	// What GET /v1/exec shows; ended is guarded by Agent.mu.
	cmd      string
	args     []string
	tty      bool
	detached bool // started with detach: listed until deleted
	started  time.Time
	ended    time.Time   // detached: when it exited and its output was in
	ring     *outputRing // detached: its output, for later readers
}

// stdio is the child's side of a process's standard files, closed in the
// parent once the child has them.
type stdio struct {
	child []*os.File
}

func (s *stdio) close() {
	for i, f := range s.child {
		if i == 0 || f != s.child[i-1] { // a file given twice is closed once
			f.Close()
		}
	}
}

// openStdio creates the pipes or the PTY a request asks for. With merge,
// stdout and stderr share one pipe, in the order they were written (as
// 2>&1 would).
func openStdio(req *agentproto.ExecRequest, p *process, merge bool) (*stdio, error) {
	if req.TTY != nil {
		ptmx, tty, err := pty.Open()
		if err != nil {
			return nil, fmt.Errorf("open pty: %w", err)
		}
		if err := pty.Setsize(ptmx, &pty.Winsize{Rows: req.TTY.Rows, Cols: req.TTY.Cols}); err != nil {
			ptmx.Close()
			tty.Close()
			return nil, fmt.Errorf("set pty size: %w", err)
		}
		p.ptmx = ptmx
		p.output = []*os.File{ptmx}
		if req.Stdin {
			p.stdin = ptmx
		}
		return &stdio{child: []*os.File{tty, tty, tty}}, nil
	}
	var files []*os.File
	fail := func(err error) (*stdio, error) {
		for _, f := range files {
			f.Close()
		}
		p.closeParent()
		return nil, err
	}
	if req.Stdin {
		r, w, err := os.Pipe()
		if err != nil {
			return fail(fmt.Errorf("stdin pipe: %w", err))
		}
		files = append(files, r)
		p.stdin = w
	} else {
		null, err := os.Open(os.DevNull)
		if err != nil {
			return fail(fmt.Errorf("open %s for stdin: %w", os.DevNull, err))
		}
		files = append(files, null)
	}
	for _, name := range []string{"stdout", "stderr"} {
		if merge && name == "stderr" {
			files = append(files, files[1])
			break
		}
		r, w, err := os.Pipe()
		if err != nil {
			return fail(fmt.Errorf("%s pipe: %w", name, err))
		}
		files = append(files, w)
		p.output = append(p.output, r)
	}
	return &stdio{child: files}, nil
}

// closeParent closes the agent's ends of the process's stdio.
func (p *process) closeParent() {
	if p.stdin != nil && p.stdin != p.ptmx {
		p.stdin.Close()
	}
	for _, f := range p.output {
		f.Close()
	}
}

// hasExited reports whether the process has been reaped.
func (p *process) hasExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// signal sends sig to the process's group, so that a shell's children
// get it too. A reaped process is not signalled: its pid may be reused.
func (p *process) signal(sig syscall.Signal) error {
	if p.hasExited() {
		return errors.New("process has exited")
	}
	err := unix.Kill(-p.pid, sig)
	if errors.Is(err, unix.ESRCH) {
		// It left its group (setsid); it still gets the signal.
		err = unix.Kill(p.pid, sig)
	}
	if errors.Is(err, unix.ESRCH) {
		return errors.New("process has exited")
	}
	return err
}

// kill ends the process and its group, even if it left the group.
func (p *process) kill() {
	if p.signal(unix.SIGKILL) == nil && !p.hasExited() {
		unix.Kill(p.pid, unix.SIGKILL)
	}
}

// takeStdin hands the stdin stream to one request.
func (p *process) takeStdin() *Error {
	if p.stdin == nil {
		return apiErr(codeConflict, "exec %s was started without \"stdin\": true", p.id)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stdinTaken {
		return apiErr(codeConflict, "exec %s: stdin is already being streamed", p.id)
	}
	p.stdinTaken = true
	return nil
}

// feedStdin copies r into the process's stdin and then ends it: the pipe
// is closed, or on a PTY an end-of-file character is typed (twice if a
// line is pending, as a terminal user would).
func (p *process) feedStdin(r io.Reader) (int64, error) {
	if p.ptmx == nil {
		n, err := io.Copy(p.stdin, r)
		p.stdin.Close()
		return n, err
	}
	var n int64
	last := byte('\n')
	buf := make([]byte, 32<<10)
	for {
		k, rerr := r.Read(buf)
		if k > 0 {
			if _, err := p.ptmx.Write(buf[:k]); err != nil {
				return n, err
			}
			n += int64(k)
			last = buf[k-1]
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return n, rerr
		}
	}
	eof := []byte{4}
	if last != '\n' {
		eof = []byte{4, 4}
	}
	_, err := p.ptmx.Write(eof)
	return n, err
}
