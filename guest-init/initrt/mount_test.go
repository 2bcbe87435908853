package initrt

import (
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestMissingRootDeviceSaysWhatToDo(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the device for 2 s")
	}
	m := NewMounter(slog.New(slog.DiscardHandler))
	target := filepath.Join(t.TempDir(), "lower")
	// The device never appears, so nothing is mounted on the host.
	err := m.Apply([]Mount{{Source: "/dev/sietch-test-no-such-disk", Target: target, FSType: "ext4", Flags: unix.MS_RDONLY}})
	if err == nil || !strings.Contains(err.Error(), "/dev/sietch-test-no-such-disk") || !strings.Contains(err.Error(), "--disk") {
		t.Fatalf("error %v, want it to name the device and point at vmm run --disk", err)
	}
	if m.Switched() {
		t.Error("a failed plan reports a root switch")
	}
}

func TestMountError(t *testing.T) {
	root := Mount{Source: "/dev/vda", Target: lowerDir, FSType: "ext4"}
	tests := []struct {
		m    Mount
		err  error
		want string
	}{
		{root, unix.EINVAL, "does not hold a clean ext4 file system"},
		{root, unix.EUCLEAN, "e2fsck"},
		{root, unix.ENXIO, "no disk is behind it"},
		{Mount{Source: "overlay", Target: NewRoot, FSType: "overlay"}, unix.EINVAL, "cannot be stacked"},
		{Mount{Source: "/proc", Target: "/newroot/proc", Flags: unix.MS_MOVE}, unix.EINVAL, "move mount /proc to /newroot/proc"},
		{Mount{Source: "tmp", Target: "/tmp", FSType: "tmpfs"}, unix.ENOMEM, "mount tmp (tmpfs) on /tmp: cannot allocate memory"},
	}
	for _, tt := range tests {
		if got := mountError(tt.m, tt.err).Error(); !strings.Contains(got, tt.want) {
			t.Errorf("mountError(%s, %v) = %q, want it to mention %q", tt.m.Target, tt.err, got, tt.want)
		}
	}
}
