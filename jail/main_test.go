package jail

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// The test binary doubles as the jailed child, as the vmm binary does: with
// envProbe set, TestMain runs that probe instead of the tests.
const envProbe = "JAIL_TEST_PROBE"

// A probe runs in a child process. With cfg set it first calls Enter, like
// a device subcommand. It reports failure through its exit status and
// stderr; the parent test asserts on both.
type probe struct {
	cfg func() ChildConfig
	run func() error
}

func TestMain(m *testing.M) {
	if name := os.Getenv(envProbe); name != "" {
		os.Exit(childMain(name))
	}
	os.Exit(m.Run())
}

func childMain(name string) int {
	p, ok := probes[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "unknown probe %q\n", name)
		return 2
	}
	if p.cfg != nil {
		if err := Enter(p.cfg()); err != nil {
			fmt.Fprintln(os.Stderr, "enter:", err)
			return 3
		}
	}
	if err := p.run(); err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		return 1
	}
	return 0
}

// needUserNS skips when this kernel cannot create user namespaces here.
func needUserNS(t *testing.T) {
	t.Helper()
	if b, err := os.ReadFile("/proc/sys/user/max_user_namespaces"); err == nil && strings.TrimSpace(string(b)) == "0" {
		t.Skip("user namespaces disabled: /proc/sys/user/max_user_namespaces is 0")
	}
	if os.Geteuid() != 0 {
		if b, err := os.ReadFile("/proc/sys/kernel/unprivileged_userns_clone"); err == nil && strings.TrimSpace(string(b)) == "0" {
			t.Skip("unprivileged user namespaces disabled: /proc/sys/kernel/unprivileged_userns_clone is 0")
		}
	}
}

// probeCmd builds the jailed command for probe name; spec fields other
// than Name, Args and Env are the caller's.
func probeCmd(t *testing.T, name string, spec Spec) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	needUserNS(t)
	var stderr bytes.Buffer
	spec.Name = "probe-" + name
	spec.Args = []string{"-test.run=^$"}
	spec.Env = append(spec.Env, envProbe+"="+name)
	spec.Stderr = &stderr
	cmd, err := Command(spec)
	if err != nil {
		t.Fatalf("Command: %v", err)
	}
	return cmd, &stderr
}

// runJailed runs probe name to the end and returns how it ended.
func runJailed(t *testing.T, name string, spec Spec) (died, stderr string) {
	t.Helper()
	cmd, buf := probeCmd(t, name, spec)
	err := cmd.Run()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatalf("run probe %s: %v", name, err)
	}
	return Died(cmd.ProcessState), buf.String()
}

// wantOK fails unless probe name exits 0.
func wantOK(t *testing.T, name string, spec Spec) {
	t.Helper()
	if died, stderr := runJailed(t, name, spec); died != "exited with status 0" {
		t.Fatalf("probe %s %s; stderr:\n%s", name, died, stderr)
	}
}
