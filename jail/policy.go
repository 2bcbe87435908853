package jail

import (
	"fmt"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Action is what the kernel does with a system call. The zero value,
// ActKillProcess, is the safe default for a policy.
type Action int

const (
	// ActKillProcess kills the whole process as if by SIGSYS: one thread
	// dying alone would leave the others in an unknown state.
	ActKillProcess Action = iota
	// ActAllow runs the call.
	ActAllow
	// ActLog runs the call and logs it to the audit log; for writing a
	// policy, never for shipping one.
	ActLog

	actErrno Action = 1 << 16 // ActErrno(e) is actErrno + e
)

// ActENOSYS makes a call fail with ENOSYS, which callers treat as "this
// kernel is too old" and fall back (runc's patchbpf makes the same point).
const ActENOSYS = actErrno + Action(unix.ENOSYS)

// ActErrno makes a call fail with errno e (1..4095).
func ActErrno(e syscall.Errno) Action { return actErrno + Action(e) }

func (a Action) errno() (syscall.Errno, bool) {
	if a > actErrno && a < actErrno+4096 {
		return syscall.Errno(a - actErrno), true
	}
	return 0, false
}

func (a Action) String() string {
	switch a {
	case ActKillProcess:
		return "kill-process"
	case ActAllow:
		return "allow"
	case ActLog:
		return "log"
	}
	if e, ok := a.errno(); ok {
		return "errno " + unix.ErrnoName(e)
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// Op compares a system call argument with a value.
type Op int

const (
	OpEq       Op = iota // arg == Value
	OpNe                 // arg != Value
	OpLt                 // arg < Value (unsigned)
	OpLe                 // arg <= Value
	OpGt                 // arg > Value
	OpGe                 // arg >= Value
	OpMaskedEq           // arg & Mask == Value
)

var opNames = [...]string{"==", "!=", "<", "<=", ">", ">=", "&=="}

// ArgCond is one condition on argument Arg (0..5) of a system call. The
// kernel compares the full 64-bit register.
type ArgCond struct {
	Arg   uint
	Op    Op
	Value uint64
	Mask  uint64 // OpMaskedEq only
}

// ArgEq is the condition arg == v.
func ArgEq(arg uint, v uint64) ArgCond { return ArgCond{Arg: arg, Op: OpEq, Value: v} }

// ArgMaskedEq is the condition arg & mask == v.
func ArgMaskedEq(arg uint, mask, v uint64) ArgCond {
	return ArgCond{Arg: arg, Op: OpMaskedEq, Value: v, Mask: mask}
}

func (c ArgCond) String() string {
	op := "?"
	if c.Op >= 0 && int(c.Op) < len(opNames) {
		op = opNames[c.Op]
	}
	if c.Op == OpMaskedEq {
		return fmt.Sprintf("arg%d&%#x==%#x", c.Arg, c.Mask, c.Value)
	}
	return fmt.Sprintf("arg%d%s%#x", c.Arg, op, c.Value)
}

// Rule lets one system call through when all of Args hold. Several rules
// for one system call are alternatives.
type Rule struct {
	Syscall string    // name as in the kernel's syscall table, "openat"
	Args    []ArgCond // all must hold; none means any arguments
	// Errno, if set, makes matching calls fail with it instead of running.
	Errno syscall.Errno
	// Why says what needs the call; it is documentation, not matched.
	Why string
}

func (r Rule) action() Action {
	if r.Errno != 0 {
		return ActErrno(r.Errno)
	}
	return ActAllow
}

// String renders the rule for the golden files: "clone if arg0&0x10000==0x10000".
func (r Rule) String() string {
	var b strings.Builder
	b.WriteString(r.Syscall)
	for i, c := range r.Args {
		if i == 0 {
			b.WriteString(" if ")
		} else {
			b.WriteString(" && ")
		}
		b.WriteString(c.String())
	}
	if r.Errno != 0 {
		b.WriteString(" -> " + unix.ErrnoName(r.Errno))
	}
	return b.String()
}

// Policy is a seccomp allowlist as data: calls matching a rule run (or fail
// with the rule's errno), every other call gets Default.
type Policy struct {
	Name    string
	Default Action
	Rules   []Rule
}

// Syscalls returns the sorted, unique names the policy mentions.
func (p Policy) Syscalls() []string {
	names := make([]string, 0, len(p.Rules))
	for _, r := range p.Rules {
		names = append(names, r.Syscall)
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// Compose returns a new policy named name with base's default and rules
// followed by rules. Per-device policies are BasePolicy plus their own calls.
func Compose(name string, base Policy, rules ...Rule) Policy {
	all := make([]Rule, 0, len(base.Rules)+len(rules))
	all = append(all, base.Rules...)
	all = append(all, rules...)
	return Policy{Name: name, Default: base.Default, Rules: all}
}

// Describe renders the policy one rule a line, sorted, for golden files and
// for reading in review.
func (p Policy) Describe() string {
	lines := make([]string, 0, len(p.Rules))
	for _, r := range p.Rules {
		line := r.String()
		if r.Why != "" {
			line += "  # " + r.Why
		}
		lines = append(lines, line)
	}
	slices.Sort(lines)
	lines = slices.Compact(lines)
	return fmt.Sprintf("# policy %s: default %s\n%s\n", p.Name, p.Default, strings.Join(lines, "\n"))
}
