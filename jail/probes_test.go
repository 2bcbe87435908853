package jail

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sietch-vm/sietch/kvm"
)

func testConfig(keep ...int) func() ChildConfig {
	return func() ChildConfig { return ChildConfig{Policy: TestPolicy, KeepFDs: keep} }
}

// Limits the rlimits probe asks for; the parent's Spec asks for a smaller
// NoFile, which must win.
var (
	probeChildLimits  = Rlimits{NoFile: 32, AS: 3 << 30, Data: 512 << 20, NProc: 4096}
	probeParentLimits = Rlimits{NoFile: 16, AS: 8 << 30}
)

const x32SyscallBit = 0x40000000 // __X32_SYSCALL_BIT

var probes = map[string]probe{
	"root":      {cfg: testConfig(), run: probeRoot},
	"caps":      {cfg: testConfig(3, 4), run: probeCaps},
	"fds":       {cfg: testConfig(3), run: probeFDs},
	"threads":   {cfg: testConfig(), run: probeThreads},
	"block":     {cfg: testConfig(3), run: probeBlock},
	"hostname":  {run: probeHostname},
	"notjailed": {cfg: testConfig(), run: func() error { return errors.New("Enter returned outside a jail") }},
	"rlimits": {
		cfg: func() ChildConfig { return ChildConfig{Policy: TestPolicy, Rlimits: probeChildLimits} },
		run: probeRlimits,
	},
	"enosys": {
		cfg: func() ChildConfig {
			return ChildConfig{Policy: Policy{Name: "test-enosys", Default: ActENOSYS, Rules: TestPolicy.Rules}}
		},
		run: probeENOSYS,
	},
	// Each of these must be killed by seccomp; returning is failure.
	"ptrace": {cfg: testConfig(), run: func() error {
		_, _, e := unix.RawSyscall(unix.SYS_PTRACE, unix.PTRACE_TRACEME, 0, 0)
		return fmt.Errorf("ptrace returned (%v)", e)
	}},
	"fork": {cfg: testConfig(), run: func() error {
		pid, _, e := unix.RawSyscall6(unix.SYS_CLONE, uintptr(unix.SIGCHLD), 0, 0, 0, 0, 0)
		if pid == 0 && e == 0 {
			unix.RawSyscall(unix.SYS_EXIT_GROUP, 0, 0, 0) // the forked copy
		}
		return fmt.Errorf("clone without CLONE_THREAD returned %d (%v)", pid, e)
	}},
	"x32": {cfg: testConfig(), run: func() error {
		_, _, e := unix.RawSyscall(unix.SYS_GETPID|x32SyscallBit, 0, 0, 0)
		return fmt.Errorf("x32 getpid returned (%v)", e)
	}},
	"mmap-exec": {cfg: testConfig(), run: func() error {
		_, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_EXEC, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		return fmt.Errorf("executable mmap returned (%v)", err)
	}},
	"thread-filter": {run: probeThreadFilter},
	"vcpu-thread":   {run: probeVCPUThread},
}

func probeRoot() error {
	entries, err := os.ReadDir("/")
	if err != nil || len(entries) != 0 {
		return fmt.Errorf("/ holds %v (%v), want nothing", entries, err)
	}
	if _, err := os.Open("/etc/passwd"); !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("open /etc/passwd: %v, want ENOENT", err)
	}
	if pid := os.Getpid(); pid != 1 {
		return fmt.Errorf("pid %d, want 1", pid)
	}
	if uid := os.Getuid(); uid != DeviceID {
		return fmt.Errorf("uid %d inside, want %d (nobody outside)", uid, DeviceID)
	}
	if d, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0); err != nil || d != 0 {
		return fmt.Errorf("dumpable %d (%v), want 0", d, err)
	}
	return nil
}

// probeCaps checks its own thread, then lets the parent inspect every
// thread in /proc (not mounted in here) until fd 4 reaches EOF.
func probeCaps() error {
	if err := checkConfined(false); err != nil {
		return err
	}
	if _, err := os.NewFile(3, "ready").Write([]byte("ready\n")); err != nil {
		return err
	}
	_, err := io.Copy(io.Discard, os.NewFile(4, "release"))
	return err
}

func probeFDs() error {
	var open []int
	for fd := 0; fd < 1024; fd++ {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err == nil {
			open = append(open, fd)
		}
	}
	if !slices.Equal(open, []int{0, 1, 2, 3}) {
		return fmt.Errorf("open fds %v, want [0 1 2 3]", open)
	}
	for _, fd := range []int{0, 1} {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT != unix.S_IFCHR || unix.Major(st.Rdev) != 1 || unix.Minor(st.Rdev) != 3 {
			return fmt.Errorf("fd %d is not /dev/null (mode %o rdev %d:%d)", fd, st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev))
		}
	}
	return nil
}

func probeRlimits() error {
	want := map[string]struct {
		res int
		v   uint64
	}{
		"nofile": {unix.RLIMIT_NOFILE, probeParentLimits.NoFile},
		"as":     {unix.RLIMIT_AS, probeChildLimits.AS},
		"data":   {unix.RLIMIT_DATA, probeChildLimits.Data},
		"nproc":  {unix.RLIMIT_NPROC, probeChildLimits.NProc},
		"core":   {unix.RLIMIT_CORE, 0},
	}
	for name, w := range want {
		var r unix.Rlimit
		if err := unix.Getrlimit(w.res, &r); err != nil {
			return err
		}
		if r.Cur != w.v || r.Max != w.v {
			return fmt.Errorf("rlimit %s = %d/%d, want %d", name, r.Cur, r.Max, w.v)
		}
	}
	return nil
}

// probeThreads makes the runtime start threads, collect garbage and run
// sysmon for a while under the base policy.
func probeThreads() error {
	const n = 16
	var started, release sync.WaitGroup
	started.Add(n)
	release.Add(1)
	tids := make(chan int, n)
	for range n {
		go func() {
			runtime.LockOSThread() // each on its own thread
			tids <- unix.Gettid()
			started.Done()
			release.Wait()
		}()
	}
	started.Wait()
	release.Done()
	seen := map[int]bool{}
	for range n {
		seen[<-tids] = true
	}
	if len(seen) != n {
		return fmt.Errorf("%d goroutines ran on %d threads", n, len(seen))
	}
	var keep [][]byte
	for range 64 {
		keep = append(keep, make([]byte, 1<<20))
	}
	runtime.GC()
	runtime.KeepAlive(keep)
	time.Sleep(1500 * time.Millisecond) // let sysmon and the scavenger run
	if _, _, e := unix.RawSyscall(unix.SYS_CLONE3, 0, 0, 0); e != unix.ENOSYS {
		return fmt.Errorf("clone3: %v, want ENOSYS", e)
	}
	return nil
}

func probeENOSYS() error {
	if _, _, e := unix.RawSyscall(unix.SYS_PTRACE, unix.PTRACE_TRACEME, 0, 0); e != unix.ENOSYS {
		return fmt.Errorf("ptrace: %v, want ENOSYS", e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_GETPPID, 0, 0, 0); e != unix.ENOSYS {
		return fmt.Errorf("getppid: %v, want ENOSYS", e)
	}
	return nil
}

func probeBlock() error {
	if _, err := os.NewFile(3, "ready").Write([]byte("ready\n")); err != nil {
		return err
	}
	time.Sleep(time.Hour)
	return errors.New("woke up")
}

// probeHostname runs without Enter: it has the namespaces only.
func probeHostname() error {
	if err := unix.Sethostname([]byte("jail-probe")); err != nil {
		return fmt.Errorf("sethostname in new uts namespace: %w", err)
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return err
	}
	if len(ifs) != 1 || ifs[0].Name != "lo" {
		return fmt.Errorf("interfaces %v, want only lo", ifs)
	}
	return nil
}

// probeThreadFilter loads an ENOSYS-default policy on one thread and shows
// that only that thread is filtered.
func probeThreadFilter() error {
	runtime.LockOSThread() // so the filtered goroutine is on another thread
	type result struct {
		tid int
		e   syscall.Errno
		err error
	}
	done := make(chan result)
	release := make(chan struct{})
	go func() {
		p := Policy{Name: "thread-test", Default: ActENOSYS, Rules: BasePolicy.Rules}
		if err := p.LoadThread(); err != nil {
			done <- result{err: err}
			return
		}
		_, _, e := unix.RawSyscall(unix.SYS_GETPPID, 0, 0, 0)
		done <- result{tid: unix.Gettid(), e: e}
		<-release
	}()
	r := <-done
	defer close(release)
	if r.err != nil {
		return r.err
	}
	if r.e != unix.ENOSYS {
		return fmt.Errorf("getppid on the filtered thread: %v, want ENOSYS", r.e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_GETPPID, 0, 0, 0); e != 0 {
		return fmt.Errorf("getppid on another thread: %v, want success", e)
	}
	for tid, want := range map[int]string{r.tid: "2", unix.Gettid(): "0"} {
		st, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/status", tid))
		if err != nil {
			return err
		}
		if got := statusField(string(st), "Seccomp"); got != want {
			return fmt.Errorf("thread %d Seccomp: %s, want %s", tid, got, want)
		}
	}
	return nil
}

// probeVCPUThread loads VCPUThreadPolicy on a thread that owns a real
// vCPU: vCPU ioctls work, a VM ioctl (KVM_CREATE_VCPU) kills the process.
func probeVCPUThread() error {
	sys, err := kvm.Open()
	if err != nil {
		return err
	}
	vm, err := sys.CreateVM()
	if err != nil {
		return err
	}
	cpu, err := vm.CreateVCPU(0)
	if err != nil {
		return err
	}
	errc := make(chan error)
	go func() {
		if err := VCPUThreadPolicy.LoadThread(); err != nil {
			errc <- err
			return
		}
		if _, err := cpu.GetRegs(); err != nil {
			errc <- fmt.Errorf("KVM_GET_REGS under the vCPU policy: %w", err)
			return
		}
		fmt.Fprintln(os.Stderr, "KVM_GET_REGS ok")
		_, err := vm.CreateVCPU(1)
		errc <- fmt.Errorf("KVM_CREATE_VCPU under the vCPU policy returned (%v)", err)
	}()
	return <-errc
}

// statusField returns the value of "Name:" in a /proc status file.
func statusField(status, name string) string {
	for _, line := range strings.Split(status, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == name {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
