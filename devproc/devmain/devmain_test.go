package devmain

import (
	"bytes"
	"strings"
	"testing"

	"github.com/sietch-vm/sietch/devproc"
)

// Every kind the vmm runs as a process has a back-end here, and only those.
func TestEveryProcessKindHasABackend(t *testing.T) {
	for _, k := range devproc.Kinds() {
		if _, ok := backends[k]; ok != k.Process() {
			t.Errorf("%s: back-end %v, process %v", k, ok, k.Process())
		}
	}
}

func TestCheckServerMode(t *testing.T) {
	for _, tc := range []struct {
		kind         devproc.Kind
		listen, disk string
		noJail       bool
		want         string
	}{
		{devproc.Blk, "", "", false, ""},
		{devproc.Blk, "s", "img", true, ""},
		{devproc.RNG, "s", "", true, ""},
		{devproc.Blk, "", "img", true, "--disk-path is only for server mode (--listen); the vmm passes the disk as fd 4"},
		{devproc.Blk, "s", "img", false, "--listen needs --no-jail: server mode opens host paths itself and is for interop tests and debugging only"},
		{devproc.Net, "s", "", true, "--listen serves blk or rng only; net and vsock need descriptors from the vmm"},
		{devproc.Vsock, "s", "", true, "--listen serves blk or rng only; net and vsock need descriptors from the vmm"},
		{0, "s", "", true, "--listen serves blk or rng only; net and vsock need descriptors from the vmm"},
		{devproc.Blk, "s", "", true, "--listen needs --disk-path IMG for blk: the disk image to serve"},
		{devproc.RNG, "s", "img", true, "--disk-path is for blk only"},
	} {
		if got := checkServerMode(tc.kind, tc.listen, tc.disk, tc.noJail); got != tc.want {
			t.Errorf("checkServerMode(%v, %q, %q, %v) = %q, want %q", tc.kind, tc.listen, tc.disk, tc.noJail, got, tc.want)
		}
	}
}

func TestRunRefusesWhatItCannotServe(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "vmm device: which device? (blk, net, vsock, rng); this subcommand is started by `vmm run`, not by hand\n"},
		{[]string{"tape"}, "vmm device: unknown device \"tape\" (blk, net, vsock, rng)\n"},
		{[]string{"vhost-user-blk"}, "vmm device: unknown device \"vhost-user-blk\" (blk, net, vsock, rng)\n"},
		{[]string{"net", "--listen", "s", "--no-jail"}, "vmm device net: --listen serves blk or rng only; net and vsock need descriptors from the vmm\n"},
	} {
		var stderr bytes.Buffer
		if code := Run(tc.args, &stderr); code != 2 || stderr.String() != tc.want {
			t.Errorf("Run(%q) = %d, %q; want 2, %q", tc.args, code, stderr.String(), tc.want)
		}
	}
	var stderr bytes.Buffer
	Run([]string{"blk", "--help"}, &stderr)
	if !strings.Contains(stderr.String(), devproc.Blk.About()) || !strings.Contains(stderr.String(), "--serial") {
		t.Errorf("vmm device blk --help says:\n%s", stderr.String())
	}
}
