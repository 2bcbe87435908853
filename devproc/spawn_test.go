package devproc

import (
	"os"
	"strings"
	"testing"
)

// Start refuses descriptors that do not match the kind's row, before it
// starts anything.
func TestStartChecksDescriptors(t *testing.T) {
	s := &Spawner{Exe: "/nonexistent"}
	for _, tc := range []struct {
		a    Args
		fds  map[FD]*os.File
		want string
	}{
		{Args{Kind: Blk, Name: "blk0"}, nil, "takes descriptors"},
		{Args{Kind: Blk, Name: "blk0"}, map[FD]*os.File{FDTap: os.Stdin}, "no disk descriptor"},
		{Args{Kind: RNG, Name: "rng0"}, map[FD]*os.File{FDDisk: os.Stdin}, "takes descriptors"},
		{Args{Kind: VhostUserBlk, Name: "vublk0"}, nil, "takes descriptors"},
	} {
		if _, _, err := s.Start(tc.a, tc.fds, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Start(%+v, %v): %v, want an error saying %q", tc.a, tc.fds, err, tc.want)
		}
	}
}
