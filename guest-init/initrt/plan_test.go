package initrt

import (
	"reflect"
	"testing"

	"golang.org/x/sys/unix"
)

// step is a Mount as a reader checks it.
type step struct{ src, target, fstype, data string }

func steps(ms []Mount) []step {
	var s []step
	for _, m := range ms {
		s = append(s, step{m.Source, m.Target, m.FSType, m.Data})
	}
	return s
}

var apiSteps = []step{
	{"proc", "/proc", "proc", ""},
	{"sysfs", "/sys", "sysfs", ""},
	{"devtmpfs", "/dev", "devtmpfs", "mode=0755"},
	{"devpts", "/dev/pts", "devpts", "mode=0620,gid=5,ptmxmode=0666"},
	{"shm", "/dev/shm", "tmpfs", "mode=1777"},
	{"run", "/run", "tmpfs", "mode=0755"},
	{"tmp", "/tmp", "tmpfs", "mode=1777"},
}

var moveSteps = []step{
	{"/proc", "/newroot/proc", "", ""},
	{"/sys", "/newroot/sys", "", ""},
	{"/dev", "/newroot/dev", "", ""},
	{"/run", "/newroot/run", "", ""},
	{"/tmp", "/newroot/tmp", "", ""},
	{"/newroot", "/", "", ""},
}

func TestPlan(t *testing.T) {
	overlay := step{"overlay", "/newroot", "overlay", "lowerdir=/.sietch/lower,upperdir=/.sietch/rw/upper,workdir=/.sietch/rw/work"}
	tests := []struct {
		name    string
		cmdline string
		want    []step
	}{
		{"initramfs root", "console=ttyS0 sietch.overlay=/dev/vdb", apiSteps},
		{"tmpfs overlay", "sietch.root=/dev/vda", concat(apiSteps, []step{
			{"/dev/vda", "/.sietch/lower", "ext4", ""},
			{"overlay-rw", "/.sietch/rw", "tmpfs", "mode=0755"},
			overlay,
		}, moveSteps)},
		{"disk overlay", "sietch.root=/dev/vda sietch.overlay=/dev/vdb", concat(apiSteps, []step{
			{"/dev/vda", "/.sietch/lower", "ext4", ""},
			{"/dev/vdb", "/.sietch/rw", "ext4", ""},
			overlay,
		}, moveSteps)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := ParseCmdline(tt.cmdline)
			if err != nil {
				t.Fatal(err)
			}
			plan := Plan(cfg)
			if got := steps(plan); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Plan(%q) =\n%q\nwant\n%q", tt.cmdline, got, tt.want)
			}
			for _, m := range plan {
				switch {
				case m.Target == "/.sietch/lower" && m.Flags != unix.MS_RDONLY:
					t.Errorf("root image mounted with flags %#x, want read-only", m.Flags)
				case m.Source == "/dev/vdb" && m.Flags&unix.MS_RDONLY != 0:
					t.Errorf("writable layer mounted read-only")
				case m.FSType == "" && m.Flags != unix.MS_MOVE:
					t.Errorf("%s → %s: flags %#x, want MS_MOVE", m.Source, m.Target, m.Flags)
				case m.FSType == "overlay" && !reflect.DeepEqual(m.Dirs, []string{"/.sietch/rw/upper", "/.sietch/rw/work"}):
					t.Errorf("overlay creates %q first, want upper and work", m.Dirs)
				}
				// Only the two layers are independent of each other.
				if layer := m.Target == "/.sietch/lower" || m.Target == "/.sietch/rw"; m.Concurrent != layer {
					t.Errorf("%s: Concurrent %v, want %v", m.Target, m.Concurrent, layer)
				}
			}
		})
	}
}

func TestPlanDoesNotAlias(t *testing.T) {
	a := APIMounts()
	a[0].Target = "/elsewhere"
	if APIMounts()[0].Target != "/proc" {
		t.Fatal("changing a returned plan changed the next one")
	}
}

func TestReadOnlyOnShutdown(t *testing.T) {
	for _, tt := range []struct {
		cmdline string
		want    []string
	}{
		{"", nil},
		{"sietch.root=/dev/vda", []string{"/"}},
		{"sietch.root=/dev/vda sietch.overlay=/dev/vdb", []string{"/", "./.sietch/rw"}},
	} {
		cfg, _ := ParseCmdline(tt.cmdline)
		if got := ReadOnlyOnShutdown(cfg); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ReadOnlyOnShutdown(%q) = %q, want %q", tt.cmdline, got, tt.want)
		}
	}
}

func TestInitramfsDirsCoverPlan(t *testing.T) {
	// Every mount point in the initramfs itself should be built in, so
	// start-up needs no mkdir for it.
	cfg, _ := ParseCmdline("sietch.root=/dev/vda")
	for _, m := range Plan(cfg) {
		if m.FSType == "" || m.Target == "/dev/pts" || m.Target == "/dev/shm" {
			continue // moves, and mount points inside devtmpfs
		}
		if _, ok := InitramfsDirs[m.Target[1:]]; !ok {
			t.Errorf("mount point %s is not in InitramfsDirs", m.Target)
		}
	}
}

func concat(parts ...[]step) []step {
	var all []step
	for _, p := range parts {
		all = append(all, p...)
	}
	return all
}
