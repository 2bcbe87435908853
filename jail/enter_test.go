package jail

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

const killedBySeccomp = "killed by SIGSYS (seccomp: forbidden system call)"

func TestEmptyRootPid1(t *testing.T) { wantOK(t, "root", Spec{}) }

func TestOnlyKeptFDs(t *testing.T) {
	a, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	wantOK(t, "fds", Spec{ExtraFiles: []*os.File{a, b}}) // keeps 3, not 4
}

func TestRlimits(t *testing.T) { wantOK(t, "rlimits", Spec{Rlimits: probeParentLimits}) }

func TestRuntimeThreadsUnderBasePolicy(t *testing.T) { wantOK(t, "threads", Spec{}) }

func TestENOSYSDefault(t *testing.T) { wantOK(t, "enosys", Spec{}) }

func TestForbiddenCallsKill(t *testing.T) {
	for _, name := range []string{"ptrace", "fork", "x32", "mmap-exec"} {
		t.Run(name, func(t *testing.T) {
			if died, stderr := runJailed(t, name, Spec{}); died != killedBySeccomp {
				t.Fatalf("probe %s %s, want %s; stderr:\n%s", name, died, killedBySeccomp, stderr)
			}
		})
	}
}

func TestHostnameAndNetworkStayInside(t *testing.T) {
	before, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	wantOK(t, "hostname", Spec{})
	if after, _ := os.Hostname(); after != before {
		t.Fatalf("host name changed from %q to %q", before, after)
	}
}

// TestNoCapabilitiesOnAnyThread reads every thread's status from outside,
// where /proc is visible.
func TestNoCapabilitiesOnAnyThread(t *testing.T) {
	readyR, readyW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	releaseR, releaseW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd, stderr := probeCmd(t, "caps", Spec{ExtraFiles: []*os.File{readyW, releaseR}})
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	readyW.Close()
	releaseR.Close()
	line, _ := bufio.NewReader(readyR).ReadString('\n')
	if line != "ready\n" {
		releaseW.Close()
		cmd.Wait()
		t.Fatalf("probe not ready (%q): %s; stderr:\n%s", line, Died(cmd.ProcessState), stderr)
	}
	pid := cmd.Process.Pid
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if err != nil || len(tasks) < 2 {
		t.Errorf("threads of %d: %v (%v), want several", pid, tasks, err)
	}
	// Every thread: nothing permitted, effective or ambient, host
	// identity nobody without groups, no_new_privs, filtered. The bounding
	// and inheritable sets are per thread; Enter's own thread has them
	// empty, and no thread could use the others' without execve.
	nobody := fmt.Sprintf("%d\t%[1]d\t%[1]d\t%[1]d", NobodyID)
	want := map[string]string{
		"CapPrm": "0000000000000000", "CapEff": "0000000000000000", "CapAmb": "0000000000000000",
		"NoNewPrivs": "1", "Seccomp": "2", "Uid": nobody, "Gid": nobody, "Groups": "",
	}
	emptyBounding := 0
	for _, task := range tasks {
		b, err := os.ReadFile(task)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range want {
			if got := statusField(string(b), k); got != v {
				t.Errorf("%s %s: %q, want %q", task, k, got, v)
			}
		}
		if statusField(string(b), "CapBnd") == "0000000000000000" && statusField(string(b), "CapInh") == "0000000000000000" {
			emptyBounding++
		}
	}
	if emptyBounding == 0 {
		t.Errorf("no thread of %d has empty bounding and inheritable sets", pid)
	}
	if entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/root/", pid)); err != nil || len(entries) != 0 {
		t.Errorf("child's root holds %v (%v), want nothing", entries, err)
	}
	releaseW.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("probe %s; stderr:\n%s", Died(cmd.ProcessState), stderr)
	}
}

func TestKilledIsReported(t *testing.T) {
	readyR, readyW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd, stderr := probeCmd(t, "block", Spec{ExtraFiles: []*os.File{readyW}})
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	readyW.Close()
	if line, _ := bufio.NewReader(readyR).ReadString('\n'); line != "ready\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("probe not ready: %s; stderr:\n%s", Died(cmd.ProcessState), stderr)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if got := Died(cmd.ProcessState); got != "killed by SIGKILL" {
		t.Fatalf("Died = %q, want killed by SIGKILL", got)
	}
}

// TestEnterRefusesOutsideJail runs Enter in a process with a new pid and
// mount namespace but the host's user namespace: it must refuse, not pivot.
// The mount namespace is there so a broken check could not hurt the host.
func TestEnterRefusesOutsideJail(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create pid and mount namespaces without a user namespace")
	}
	cmd := exec.Command("/proc/self/exe", "-test.run=^$")
	cmd.Env = []string{envProbe + "=notjailed"}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID, Pdeathsig: syscall.SIGKILL}
	cmd.Run()
	if got := Died(cmd.ProcessState); got != "exited with status 3" || !strings.Contains(stderr.String(), "jail.Command") {
		t.Fatalf("Enter outside a jail: %s, stderr %q; want refusal (status 3) naming jail.Command", got, stderr.String())
	}
}

func TestLoadThreadFiltersOneThread(t *testing.T) {
	// No jail needed: the filter stays on one thread of the child.
	cmd := exec.Command("/proc/self/exe", "-test.run=^$")
	cmd.Env = []string{envProbe + "=thread-filter"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("probe %s: %s", Died(cmd.ProcessState), out)
	}
}

func TestVCPUThreadPolicy(t *testing.T) {
	if _, err := os.Stat("/dev/kvm"); err != nil {
		t.Skipf("needs /dev/kvm: %v", err)
	}
	cmd := exec.Command("/proc/self/exe", "-test.run=^$")
	cmd.Env = []string{envProbe + "=vcpu-thread"}
	out, _ := cmd.CombinedOutput()
	if got := Died(cmd.ProcessState); got != killedBySeccomp || !strings.Contains(string(out), "KVM_GET_REGS ok") {
		t.Fatalf("vCPU probe %s, want KVM_GET_REGS ok then %s; output:\n%s", got, killedBySeccomp, out)
	}
}
