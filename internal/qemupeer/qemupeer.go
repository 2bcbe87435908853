// Package qemupeer chooses how to start QEMU as a peer (a benchmark
// baseline, an interop front end) on the host at hand.
//
// The hosts this project runs on reach KVM through a nested hypervisor
// whose CPUID and MSR support differ between host kinds. "-cpu host" works
// on the Intel Xeon hosts; on the AMD EPYC hosts QEMU aborts at start-up
// because the host KVM advertises IA32_ARCH_CAPABILITIES (MSR 0x10a) and
// then refuses the value QEMU writes to it. CPUModel tries the models in
// order of preference with a machine that never runs a vCPU, and returns
// the first that QEMU accepts.
package qemupeer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// Models are the -cpu values CPUModel tries, best first: the host's own
// CPU, then the host's CPU without the MSR the AMD hosts' KVM refuses.
var Models = []string{"host", "host,-arch-capabilities"}

// probeTimeout bounds one probe; QEMU answers in well under a second.
const probeTimeout = 30 * time.Second

// qmp is fed to QEMU's monitor on stdin: QEMU with -S stops before the
// first instruction, so only the vCPU set-up (where the MSR write fails)
// runs, then "quit" ends it.
const qmp = `{"execute":"qmp_capabilities"}` + "\n" + `{"execute":"quit"}` + "\n"

// HostError says that no CPU model starts on this host, and why: it is
// the host's KVM refusing QEMU's vCPU set-up, not a fault of the caller.
type HostError struct {
	QEMU  string
	Tries []Try
}

// Try is one rejected model and what QEMU said.
type Try struct {
	Model  string
	Err    error
	Output string
}

func (e *HostError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s cannot start a KVM vCPU on this host with any CPU model we know (%s); "+
		"this is the host's KVM refusing QEMU's vCPU set-up, not a sietch fault. "+
		"Check /dev/kvm and `vmm check`; if QEMU names an MSR, the host KVM does not accept that MSR's value.",
		e.QEMU, strings.Join(Models, "; "))
	for _, t := range e.Tries {
		fmt.Fprintf(&b, "\n  -cpu %s: %v", t.Model, t.Err)
		if out := strings.TrimSpace(t.Output); out != "" {
			fmt.Fprintf(&b, "\n    %s", strings.ReplaceAll(out, "\n", "\n    "))
		}
	}
	return b.String()
}

// kvmDevice is checked first: without it every model fails the same way.
var kvmDevice = "/dev/kvm"

var errTimeout = errors.New("timed out")

type result struct {
	model string
	err   error
}

var (
	mu    sync.Mutex
	cache = map[string]result{}
)

// CPUModel returns the first of Models with which qemu (a
// qemu-system-x86_64 binary) starts a microvm under KVM on this host. The
// answer is cached per binary for the life of the process. When none
// starts, the error is a *HostError quoting QEMU.
func CPUModel(ctx context.Context, qemu string) (string, error) {
	mu.Lock()
	defer mu.Unlock()
	if r, ok := cache[qemu]; ok {
		return r.model, r.err
	}
	model, err := probe(ctx, qemu)
	if ctx.Err() == nil { // a cancelled probe says nothing about the host
		cache[qemu] = result{model, err}
	}
	return model, err
}

func probe(ctx context.Context, qemu string) (string, error) {
	if _, err := os.Stat(kvmDevice); err != nil {
		return "", fmt.Errorf("QEMU as a KVM peer needs %s, and this host has none (%w); "+
			"the host's kernel does not offer KVM to this machine", kvmDevice, err)
	}
	herr := &HostError{QEMU: qemu}
	for _, m := range Models {
		out, err := try(ctx, qemu, m)
		if err == nil {
			return m, nil
		}
		if ctx.Err() != nil {
			return "", fmt.Errorf("probe %s -cpu %s: %w", qemu, m, ctx.Err())
		}
		var exit *exec.ExitError
		if !errors.As(err, &exit) && !errors.Is(err, errTimeout) { // QEMU never ran
			return "", fmt.Errorf("start %s: %w (install Debian's qemu-system-x86)", qemu, err)
		}
		herr.Tries = append(herr.Tries, Try{Model: m, Err: err, Output: out})
	}
	return "", herr
}

// try starts QEMU with one CPU model, stopped before the first guest
// instruction, and quits it through QMP.
func try(ctx context.Context, qemu, model string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu, "-accel", "kvm", "-M", "microvm", "-cpu", model,
		"-m", "32", "-nodefaults", "-display", "none", "-S", "-qmp", "stdio")
	cmd.Stdin = strings.NewReader(qmp)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() == context.DeadlineExceeded {
		err = fmt.Errorf("%w: no answer within %v", errTimeout, probeTimeout)
	}
	return stderrOnly(out.String()), err
}

// stderrOnly drops QMP's JSON replies, leaving what QEMU printed.
func stderrOnly(s string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "{") && strings.TrimSpace(l) != "" {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}
