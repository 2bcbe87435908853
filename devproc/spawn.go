package devproc

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/sietch-vm/sietch/jail"
)

// Spawner starts device processes: the vmm binary re-executed as `vmm
// device …`, jailed (see package jail) unless NoJail.
type Spawner struct {
	// Exe is the binary to run (default /proc/self/exe); it must handle
	// the `device` subcommand (devmain.Run).
	Exe string
	// Stderr receives the device processes' logs (default os.Stderr).
	Stderr *os.File
	// NoJail runs them unconfined: for debugging only.
	NoJail bool
	// TestArgs are extra flags for every device process (tests).
	TestArgs []string
	// UID is the host uid and gid the device processes run as (jail.Spec.UID).
	UID int
}

// Process is one running device process and how it ended.
type Process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has been reaped
	why  string        // how it ended, set before done closes
}

// Name is the device's name.
func (p *Process) Name() string { return p.name }

// Done is closed once the process has ended and been reaped.
func (p *Process) Done() <-chan struct{} { return p.done }

// Why says how the process ended ("killed by SIGSYS (seccomp: …)"); it is
// set once Done is closed.
func (p *Process) Why() string { return p.why }

// Kill kills the process; Done closes once it is reaped.
func (p *Process) Kill() error { return p.cmd.Process.Kill() }

// Start starts the device process a describes, with fds (one for each of
// its kind's FDs, which Start places in the kind's order after the
// vhost-user socket) and, when not nil, the vmm's /dev/userfaultfd for
// lazily restored memory. It returns the vmm's end of the vhost-user
// socket. The caller keeps fds and userfaultDev, and closes them: the
// child has its copies.
func (s *Spawner) Start(a Args, fds map[FD]*os.File, userfaultDev *os.File) (*Process, *net.UnixConn, error) {
	want := a.Kind.FDs()
	if !a.Kind.Process() || len(fds) != len(want) {
		return nil, nil, fmt.Errorf("device %s: a %s process takes descriptors %v, given %d", a.Name, a.Kind, want, len(fds))
	}
	conn, theirs, err := SocketPair(a.Name)
	if err != nil {
		return nil, nil, err
	}
	defer theirs.Close()
	files := []*os.File{theirs}
	for _, f := range want {
		if fds[f] == nil {
			conn.Close()
			return nil, nil, fmt.Errorf("device %s: no %s descriptor", a.Name, f)
		}
		files = append(files, fds[f])
	}
	if userfaultDev != nil {
		a.UserfaultDevFD = FDVhostUser + len(files) // ExtraFiles start at fd 3
		files = append(files, userfaultDev)
	}
	p, err := s.spawn(a.Name, a.Argv(), files)
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	return p, conn, nil
}

// spawn starts `<exe> device <args…>` with files as fds 3, 4, ….
func (s *Spawner) spawn(name string, args []string, files []*os.File) (*Process, error) {
	argv := append(append([]string{"device"}, args...), s.TestArgs...)
	var cmd *exec.Cmd
	if s.NoJail {
		argv = append(argv, "--no-jail")
		cmd = exec.Command(s.exe(), argv...)
		cmd.ExtraFiles = files
		cmd.Env = []string{"GODEBUG=containermaxprocs=0,updatemaxprocs=0"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	} else {
		var err error
		cmd, err = jail.Command(jail.Spec{Name: name, Args: argv, ExtraFiles: files, Stderr: s.stderr(), UID: s.UID})
		if err != nil {
			return nil, err
		}
		if exe := s.exe(); exe != "/proc/self/exe" {
			cmd.Path = exe
		}
	}
	if cmd.Stderr == nil {
		cmd.Stderr = s.stderr()
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start device process %s: %w", name, err)
	}
	p := &Process{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee) || err == nil:
			p.why = jail.Died(cmd.ProcessState)
		default:
			p.why = err.Error()
		}
		close(p.done)
	}()
	return p, nil
}

func (s *Spawner) exe() string {
	if s.Exe != "" {
		return s.Exe
	}
	return "/proc/self/exe"
}

func (s *Spawner) stderr() *os.File {
	if s.Stderr != nil {
		return s.Stderr
	}
	return os.Stderr
}

// StopAll kills every device process and waits for them.
func StopAll(procs []*Process) {
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-p.done:
				return
			default:
			}
			_ = p.cmd.Process.Kill()
			<-p.done
		}()
	}
	wg.Wait()
}

// SocketPair returns a connected pair of unix stream sockets: ours as a
// *net.UnixConn, the child's as an *os.File to pass in ExtraFiles.
func SocketPair(name string) (*net.UnixConn, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair for %s: %w", name, err)
	}
	ours := os.NewFile(uintptr(fds[0]), name+"-vmm")
	defer ours.Close() // FileConn dups it
	c, err := net.FileConn(ours)
	if err != nil {
		unix.Close(fds[1])
		return nil, nil, fmt.Errorf("socket for %s: %w", name, err)
	}
	return c.(*net.UnixConn), os.NewFile(uintptr(fds[1]), name+"-device"), nil
}
