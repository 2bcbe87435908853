package qemupeer

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestCPUModelStarts: on this host, the model chosen starts QEMU for real
// (the probe is the same QEMU run a peer makes, stopped before the guest).
func TestCPUModelStarts(t *testing.T) {
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 not installed (Debian package qemu-system-x86)")
	}
	if _, err := os.Stat("/dev/kvm"); err != nil {
		t.Skip("no /dev/kvm")
	}
	m, err := CPUModel(t.Context(), qemu)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(Models, m) {
		t.Fatalf("CPUModel = %q, not one of %q", m, Models)
	}
	if _, err := try(t.Context(), qemu, m); err != nil {
		t.Fatalf("the chosen model %q does not start QEMU on a second try: %v", m, err)
	}
	t.Logf("QEMU starts with -cpu %s", m)
}

// TestHostErrorQuotesQEMU: a QEMU that aborts with every model gives a
// HostError naming the host and quoting what QEMU printed.
func TestHostErrorQuotesQEMU(t *testing.T) {
	fakeKVM(t)
	fake := filepath.Join(t.TempDir(), "qemu-system-x86_64")
	script := "#!/bin/sh\ncat >/dev/null\necho 'qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69' >&2\nexit 134\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := CPUModel(context.Background(), fake)
	var he *HostError
	if !errors.As(err, &he) {
		t.Fatalf("CPUModel(aborting qemu) = %v, want a *HostError", err)
	}
	msg := err.Error()
	for _, want := range []string{"host's KVM", "failed to set MSR 0x10a", "-cpu host,-arch-capabilities"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not say %q:\n%s", want, msg)
		}
	}
	if len(he.Tries) != len(Models) {
		t.Errorf("tried %d models, want %d", len(he.Tries), len(Models))
	}
}

// TestMissingQEMU: a missing binary is reported as such, not as the host.
func TestMissingQEMU(t *testing.T) {
	fakeKVM(t)
	_, err := CPUModel(context.Background(), filepath.Join(t.TempDir(), "none"))
	var he *HostError
	if err == nil || errors.As(err, &he) || !strings.Contains(err.Error(), "qemu-system-x86") {
		t.Fatalf("CPUModel(missing) = %v, want an install hint and no HostError", err)
	}
}

// TestNoKVM: without /dev/kvm the error says so instead of quoting QEMU.
func TestNoKVM(t *testing.T) {
	old := kvmDevice
	kvmDevice = filepath.Join(t.TempDir(), "kvm")
	t.Cleanup(func() { kvmDevice = old })
	_, err := CPUModel(context.Background(), "qemu-system-x86_64-no-kvm-test")
	if err == nil || !strings.Contains(err.Error(), "has none") {
		t.Fatalf("CPUModel without /dev/kvm = %v, want it to say the host has no KVM", err)
	}
}

// fakeKVM points the /dev/kvm check at a file that exists, for tests of
// the probe with a fake QEMU on hosts with or without KVM.
func fakeKVM(t *testing.T) {
	old := kvmDevice
	kvmDevice = filepath.Join(t.TempDir(), "kvm")
	if err := os.WriteFile(kvmDevice, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kvmDevice = old })
}
