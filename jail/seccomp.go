package jail

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"

	seccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

// Load installs the policy on every thread of the process (TSYNC) and sets
// no_new_privs. System calls of other architectures (i386 through int 0x80,
// x32) kill the process. There is no way back: a later Load can only narrow
// what is allowed.
func (p Policy) Load() error {
	f, err := p.build()
	if err != nil {
		return err
	}
	defer f.Release()
	if err := f.Load(); err != nil {
		return fmt.Errorf("load seccomp policy %s: %w", p.Name, err)
	}
	return nil
}

// LoadThread installs the policy on the calling OS thread only, for the
// vmm's vCPU threads. It locks the calling goroutine to its thread for good
// (an extra LockOSThread that is never undone), so a filtered thread never
// returns to Go's pool and dies when the goroutine ends.
func (p Policy) LoadThread() error {
	runtime.LockOSThread()
	f, err := p.build()
	if err != nil {
		return err
	}
	defer f.Release()
	// libseccomp-golang always asks for TSYNC, so export the program and
	// install it with seccomp(2) ourselves, without the flag.
	prog, err := exportBPF(f)
	if err != nil {
		return fmt.Errorf("export seccomp policy %s: %w", p.Name, err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set no_new_privs: %w", err)
	}
	if err := loadThreadFilter(prog); err != nil {
		return fmt.Errorf("load seccomp policy %s on thread %d: %w", p.Name, unix.Gettid(), err)
	}
	return nil
}

// exportBPF returns the compiled filter. libseccomp 2.5 (Debian 12) lacks
// seccomp_export_bpf_mem, so it goes through a memfd.
func exportBPF(f *seccomp.ScmpFilter) ([]byte, error) {
	fd, err := unix.MemfdCreate("seccomp-bpf", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	file := os.NewFile(uintptr(fd), "seccomp-bpf")
	defer file.Close()
	if err := f.ExportBPF(file); err != nil {
		return nil, err
	}
	if _, err := file.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return io.ReadAll(file)
}

func (a Action) native() (seccomp.ScmpAction, error) {
	switch a {
	case ActKillProcess:
		return seccomp.ActKillProcess, nil
	case ActAllow:
		return seccomp.ActAllow, nil
	case ActLog:
		return seccomp.ActLog, nil
	}
	if e, ok := a.errno(); ok {
		return seccomp.ActErrno.SetReturnCode(int16(e)), nil
	}
	return seccomp.ActInvalid, fmt.Errorf("unknown seccomp action %d", int(a))
}

var nativeOps = map[Op]seccomp.ScmpCompareOp{
	OpEq: seccomp.CompareEqual, OpNe: seccomp.CompareNotEqual,
	OpLt: seccomp.CompareLess, OpLe: seccomp.CompareLessOrEqual,
	OpGt: seccomp.CompareGreater, OpGe: seccomp.CompareGreaterEqual,
	OpMaskedEq: seccomp.CompareMaskedEqual,
}

// build compiles the policy for the native architecture only; everything
// else hits the bad-architecture action.
func (p Policy) build() (*seccomp.ScmpFilter, error) {
	if p.Name == "" {
		return nil, errors.New("seccomp policy has no name")
	}
	if p.Default == ActAllow {
		return nil, fmt.Errorf("seccomp policy %s: default allow makes a denylist; use kill-process or an errno", p.Name)
	}
	def, err := p.Default.native()
	if err != nil {
		return nil, fmt.Errorf("seccomp policy %s: %w", p.Name, err)
	}
	f, err := seccomp.NewFilter(def)
	if err != nil {
		return nil, fmt.Errorf("seccomp policy %s: %w", p.Name, err)
	}
	if err := p.addRules(f); err != nil {
		f.Release()
		return nil, err
	}
	return f, nil
}

func (p Policy) addRules(f *seccomp.ScmpFilter) error {
	if err := f.SetBadArchAction(seccomp.ActKillProcess); err != nil {
		return fmt.Errorf("seccomp policy %s: bad-arch action: %w", p.Name, err)
	}
	seen := map[string]bool{}
	for _, r := range p.Rules {
		if r.Syscall == "execve" || r.Syscall == "execveat" {
			// Enter leaves other threads' bounding sets alone, which is
			// safe only while nothing can exec (caps.go).
			return fmt.Errorf("seccomp policy %s: %s is never allowed", p.Name, r.Syscall)
		}
		// A rule that does what the default does changes nothing, and
		// libseccomp refuses it; composed policies produce such rules.
		if r.action() == p.Default || seen[r.String()] {
			continue
		}
		seen[r.String()] = true
		if err := addRule(f, r); err != nil {
			return fmt.Errorf("seccomp policy %s: rule %q: %w", p.Name, r, err)
		}
	}
	return nil
}

func addRule(f *seccomp.ScmpFilter, r Rule) error {
	if r.Errno < 0 || r.Errno > 4095 {
		return fmt.Errorf("errno %d out of range 1..4095", int(r.Errno))
	}
	nr, err := seccomp.GetSyscallFromName(r.Syscall)
	if err != nil {
		return fmt.Errorf("unknown system call on this architecture: %w", err)
	}
	act, err := r.action().native()
	if err != nil {
		return err
	}
	if len(r.Args) == 0 {
		return f.AddRuleExact(nr, act)
	}
	conds := make([]seccomp.ScmpCondition, 0, len(r.Args))
	for _, a := range r.Args {
		op, ok := nativeOps[a.Op]
		if !ok {
			return fmt.Errorf("unknown comparison %d", int(a.Op))
		}
		vals := []uint64{a.Value}
		if a.Op == OpMaskedEq {
			// libseccomp takes the mask first for SCMP_CMP_MASKED_EQ.
			vals = []uint64{a.Mask, a.Value}
		}
		c, err := seccomp.MakeCondition(a.Arg, op, vals...)
		if err != nil {
			return err
		}
		conds = append(conds, c)
	}
	return f.AddRuleConditionalExact(nr, act, conds)
}
