package vmm

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

// deviceProcess is one running device process and how it ended.
type deviceProcess struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has been reaped
	why  string        // how it ended, set before done closes
}

// socketPair returns a connected pair of unix stream sockets: ours as a
// *net.UnixConn, the child's as an *os.File to pass in ExtraFiles.
func socketPair(name string) (*net.UnixConn, *os.File, error) {
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

// spawnDevice starts `<exe> device <args…>` with files as fds 3, 4, …:
// jailed (see package jail) unless the configuration says NoJail.
func (m *Machine) spawnDevice(name string, args []string, files []*os.File) (*deviceProcess, error) {
	argv := append(append([]string{"device"}, args...), m.cfg.testDeviceArgs...)
	var cmd *exec.Cmd
	if m.cfg.NoJail {
		argv = append(argv, "--no-jail")
		cmd = exec.Command(m.deviceExe(), argv...)
		cmd.ExtraFiles = files
		cmd.Env = []string{"GODEBUG=containermaxprocs=0,updatemaxprocs=0"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	} else {
		var err error
		cmd, err = jail.Command(jail.Spec{Name: name, Args: argv, ExtraFiles: files, Stderr: m.deviceStderr()})
		if err != nil {
			return nil, err
		}
		if exe := m.deviceExe(); exe != "/proc/self/exe" {
			cmd.Path = exe
		}
	}
	if cmd.Stderr == nil {
		cmd.Stderr = m.deviceStderr()
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start device process %s: %w", name, err)
	}
	p := &deviceProcess{name: name, cmd: cmd, done: make(chan struct{})}
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

func (m *Machine) deviceExe() string {
	if m.cfg.DeviceExe != "" {
		return m.cfg.DeviceExe
	}
	return "/proc/self/exe"
}

func (m *Machine) deviceStderr() *os.File {
	if m.cfg.DeviceStderr != nil {
		return m.cfg.DeviceStderr
	}
	return os.Stderr
}

// stopDevices kills every device process and waits for them.
func stopDevices(procs []*deviceProcess) {
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
