package devproc

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/spf13/pflag"

	"github.com/sietch-vm/sietch/virtio"
)

// The kinds' names are in every snapshot on disk (snapshot.Virtio.Kind)
// and on device processes' command lines: they never change.
func TestKindNamesAreStable(t *testing.T) {
	want := map[Kind]string{Blk: "blk", Net: "net", Vsock: "vsock", RNG: "rng", VhostUserBlk: "vhost-user-blk"}
	if got := len(Kinds()); got != len(want) {
		t.Errorf("%d kinds, the test knows %d: pin the new kind's name here", got, len(want))
	}
	for _, k := range Kinds() {
		if k.String() != want[k] {
			t.Errorf("kind %d is named %q, want %q", k, k.String(), want[k])
		}
		if p, ok := ParseKind(k.String()); !ok || p != k {
			t.Errorf("ParseKind(%q) = %v, %v", k.String(), p, ok)
		}
		if k.About() == "" || k.Model() == "" || k.Queues() < 1 || k.DeviceID() == 0 {
			t.Errorf("kind %s: the table row is incomplete", k)
		}
	}
	if _, ok := ParseKind("virtio-blk"); ok {
		t.Error("ParseKind accepts a model name")
	}
	if k := Kind(0); k.String() != "Kind(0)" || k.Process() {
		t.Errorf("the zero Kind is %q, process %v", k, k.Process())
	}
}

func TestKindRows(t *testing.T) {
	for _, tc := range []struct {
		k      Kind
		id     uint32
		queues int
		fds    map[FD]int
	}{
		{Blk, virtio.DeviceBlock, 1, map[FD]int{FDDisk: 4}},
		{Net, virtio.DeviceNet, 2, map[FD]int{FDTap: 4}},
		{Vsock, virtio.DeviceVsock, 3, map[FD]int{FDVsockListener: 4, FDVsockBroker: 5}},
		{RNG, virtio.DeviceRNG, 1, map[FD]int{}},
		{VhostUserBlk, virtio.DeviceBlock, 1, map[FD]int{}},
	} {
		if tc.k.DeviceID() != tc.id || tc.k.Queues() != tc.queues {
			t.Errorf("%s: device %d with %d queues, want %d with %d", tc.k, tc.k.DeviceID(), tc.k.Queues(), tc.id, tc.queues)
		}
		if len(tc.k.FDs()) != len(tc.fds) {
			t.Errorf("%s: descriptors %v, want %v", tc.k, tc.k.FDs(), tc.fds)
		}
		for f, n := range tc.fds {
			if got, ok := tc.k.FD(f); !ok || got != n {
				t.Errorf("%s: %s at fd %d (%v), want %d", tc.k, f, got, ok, n)
			}
		}
	}
}

// Each device process applies its own kind's policy, whose generated
// filter is golden-tested in package jail.
func TestProcessKindsHavePolicies(t *testing.T) {
	if got, want := Processes(), []Kind{Blk, Net, Vsock, RNG}; !slices.Equal(got, want) {
		t.Errorf("Processes() = %v, want %v", got, want)
	}
	for _, k := range Kinds() {
		p := k.Policy()
		if !k.Process() {
			if p.Name != "" {
				t.Errorf("%s is no process of ours but has policy %s", k, p.Name)
			}
			continue
		}
		if p.Name != k.String() {
			t.Errorf("%s applies policy %q", k, p.Name)
		}
		if _, err := os.Stat(filepath.Join("..", "jail", "testdata", p.Name+".golden")); err != nil {
			t.Errorf("%s: policy %s has no golden file: %v", k, p.Name, err)
		}
	}
}

// The command lines the vmm gives its device processes, flag for flag, and
// the device process reads back what the vmm meant.
func TestArgv(t *testing.T) {
	for _, tc := range []struct {
		a    Args
		want []string
	}{
		{Args{Kind: Blk, Name: "blk0", Serial: "blk0"}, []string{"blk", "--name", "blk0", "--serial", "blk0"}},
		{Args{Kind: Blk, Name: "blk1", Serial: "blk1", ReadOnly: true, UserfaultDevFD: 5},
			[]string{"blk", "--name", "blk1", "--serial", "blk1", "--ro", "--userfault-dev-fd", "5"}},
		{Args{Kind: Net, Name: "net0", MAC: "52:54:00:12:34:56"}, []string{"net", "--name", "net0", "--mac", "52:54:00:12:34:56"}},
		{Args{Kind: Vsock, Name: "vsock0", CID: 3}, []string{"vsock", "--name", "vsock0", "--cid", "3"}},
		{Args{Kind: Vsock, Name: "vsock0", CID: 4294967295, ResetTransport: true},
			[]string{"vsock", "--name", "vsock0", "--cid", "4294967295", "--reset-transport"}},
		{Args{Kind: RNG, Name: "rng0"}, []string{"rng", "--name", "rng0"}},
	} {
		got := tc.a.Argv()
		if !slices.Equal(got, tc.want) {
			t.Errorf("%+v: argv %q, want %q", tc.a, got, tc.want)
			continue
		}
		k, ok := ParseKind(got[0])
		if !ok || k != tc.a.Kind {
			t.Errorf("argv %q: kind %v", got, k)
		}
		var back Args
		fs := pflag.NewFlagSet("device", pflag.ContinueOnError)
		back.Flags(fs, k)
		if err := fs.Parse(got[1:]); err != nil {
			t.Errorf("argv %q: %v", got, err)
		} else if back != tc.a {
			t.Errorf("argv %q reads back as %+v, want %+v", got, back, tc.a)
		}
	}
}
