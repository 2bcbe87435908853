package jail

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sietch-vm/sietch/uffd"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the policies")

// TestPolicyGolden pins every shipped policy: a change to what a device
// may call shows up in review as a golden-file diff.
func TestPolicyGolden(t *testing.T) {
	for _, p := range []Policy{BasePolicy, TestPolicy, VCPUThreadPolicy, VMMPolicy, BlkPolicy, NetPolicy, VsockPolicy, RNGPolicy} {
		t.Run(p.Name, func(t *testing.T) {
			path := filepath.Join("testdata", p.Name+".golden")
			got := p.Describe()
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./jail -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("policy %s drifted from %s (run go test ./jail -update and review the diff):\n%s", p.Name, path, got)
			}
			for _, name := range p.Syscalls() {
				if !strings.Contains(got, "\n"+name) {
					t.Errorf("syscall %s missing from the description", name)
				}
			}
			f, err := p.build()
			if err != nil {
				t.Fatalf("policy %s does not compile: %v", p.Name, err)
			}
			f.Release()
		})
	}
}

func TestSyscallsSortedUnique(t *testing.T) {
	p := Policy{Name: "x", Rules: []Rule{{Syscall: "write"}, {Syscall: "read"}, {Syscall: "write", Args: []ArgCond{ArgEq(0, 2)}}}}
	if got := p.Syscalls(); !slices.Equal(got, []string{"read", "write"}) {
		t.Fatalf("Syscalls = %v", got)
	}
}

func TestComposeDoesNotAliasBase(t *testing.T) {
	base := Policy{Name: "b", Rules: make([]Rule, 1, 8)}
	base.Rules[0] = Rule{Syscall: "read"}
	a := Compose("a", base, Rule{Syscall: "write"})
	b := Compose("b2", base, Rule{Syscall: "close"})
	if a.Rules[1].Syscall != "write" || b.Rules[1].Syscall != "close" || len(base.Rules) != 1 {
		t.Fatalf("Compose shares storage: a=%v b=%v base=%v", a.Rules, b.Rules, base.Rules)
	}
	if a.Name != "a" || a.Default != base.Default {
		t.Fatalf("Compose = %+v", a)
	}
}

func TestBuildRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    Policy
		want string
	}{
		{"no name", Policy{Rules: []Rule{{Syscall: "read"}}}, "no name"},
		{"default allow", Policy{Name: "p", Default: ActAllow}, "denylist"},
		{"unknown syscall", Policy{Name: "p", Rules: []Rule{{Syscall: "frobnicate"}}}, "frobnicate"},
		{"exec", Policy{Name: "p", Rules: []Rule{{Syscall: "execve"}}}, "never allowed"},
		{"arg 6", Policy{Name: "p", Rules: []Rule{{Syscall: "read", Args: []ArgCond{ArgEq(6, 0)}}}}, "6"},
		{"bad op", Policy{Name: "p", Rules: []Rule{{Syscall: "read", Args: []ArgCond{{Op: 99}}}}}, "comparison"},
		{"bad errno", Policy{Name: "p", Rules: []Rule{{Syscall: "read", Errno: 5000}}}, "errno"},
		{"bad default", Policy{Name: "p", Default: Action(77)}, "action"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := tc.p.build()
			if err == nil {
				f.Release()
				t.Fatalf("build succeeded, want error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func TestRedundantRulesAreDropped(t *testing.T) {
	// BasePolicy's clone3 -> ENOSYS equals this default; composing must
	// still compile.
	p := Policy{Name: "p", Default: ActENOSYS, Rules: append([]Rule{{Syscall: "read"}, {Syscall: "read"}}, BasePolicy.Rules...)}
	f, err := p.build()
	if err != nil {
		t.Fatal(err)
	}
	f.Release()
}

func TestActionString(t *testing.T) {
	for a, want := range map[Action]string{
		ActKillProcess: "kill-process", ActAllow: "allow", ActLog: "log",
		ActENOSYS: "errno ENOSYS", ActErrno(unix.EPERM): "errno EPERM", Action(9): "Action(9)",
	} {
		if got := a.String(); got != want {
			t.Errorf("%d: %q, want %q", int(a), got, want)
		}
	}
}

// The device policies repeat the userfaultfd ioctl numbers package uffd uses.
func TestUffdIoctlNumbersMatch(t *testing.T) {
	if uffdioRegister != uffd.IoctlRegister || uffdioUnregister != uffd.IoctlUnregister {
		t.Fatalf("jail allows ioctls %#x/%#x, package uffd issues %#x/%#x",
			uffdioRegister, uffdioUnregister, uffd.IoctlRegister, uffd.IoctlUnregister)
	}
}
