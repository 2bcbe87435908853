// Package cgroups gives each sandbox a control group (cgroup v2, or the v1 hierarchies where v2 lacks the controllers) that holds its vmm and device processes, sets its limits and reads its usage.
package cgroups

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// The controllers a sandbox's group needs, and those it uses where the
// host has them.
var (
	required = []string{"cpu", "memory", "pids"}
	optional = []string{"cpuacct", "blkio"} // v1 only: v2 has CPU time in cpu.stat and I/O in io
)

// Layout is where a host's cgroup hierarchies are and under which
// directory of each a manager makes its groups.
type Layout struct {
	// V2 is the directory of the parent group in the unified hierarchy
	// (e.g. /sys/fs/cgroup/sietch); empty on a v1 host.
	V2 string
	// V1 maps each v1 controller (cpu, cpuacct, memory, pids, blkio) to
	// the parent group's directory in its hierarchy. A controller
	// mounted together with another (cpu,cpuacct) maps to the same one.
	V1 map[string]string
}

// Version is 2 or 1.
func (l Layout) Version() int {
	if l.V2 != "" {
		return 2
	}
	return 1
}

// ParentDirs is each distinct parent directory, in a stable order.
func (l Layout) ParentDirs() []string {
	if l.V2 != "" {
		return []string{l.V2}
	}
	var out []string
	seen := map[string]bool{}
	for _, c := range append(append([]string{}, required...), optional...) {
		if d, ok := l.V1[c]; ok && !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	return out
}

// Probe finds this host's hierarchies from /proc/self/mountinfo and
// places the parent of the groups at sub (e.g. "sietch/<state hash>")
// under this process's own group in each hierarchy, so that whatever
// confines the caller also confines its sandboxes. It prefers v2: a
// cgroup2 mount whose root offers cpu, memory and pids.
func Probe(sub string) (Layout, error) {
	mi, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return Layout{}, fmt.Errorf("cgroups: %w", err)
	}
	defer mi.Close()
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return Layout{}, fmt.Errorf("cgroups: %w", err)
	}
	return probe(mi, string(self), sub, func(p string) ([]byte, error) { return os.ReadFile(p) })
}

// mount is one cgroup filesystem in mountinfo.
type mount struct {
	dir   string   // mount point
	root  string   // the group mounted there ("/" normally; a container's own group otherwise)
	v2    bool     // cgroup2
	ctrls []string // v1: the controllers it holds
}

func probe(mountinfo io.Reader, selfCgroup, sub string, readFile func(string) ([]byte, error)) (Layout, error) {
	var mounts []mount
	sc := bufio.NewScanner(mountinfo)
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS
		f := strings.Fields(sc.Text())
		sep := -1
		for i, s := range f {
			if s == "-" {
				sep = i
				break
			}
		}
		if sep < 5 || sep+3 > len(f) {
			continue
		}
		switch f[sep+1] {
		case "cgroup2":
			mounts = append(mounts, mount{dir: unescape(f[4]), root: unescape(f[3]), v2: true})
		case "cgroup":
			mounts = append(mounts, mount{dir: unescape(f[4]), root: unescape(f[3]), ctrls: strings.Split(f[sep+3], ",")})
		}
	}
	if err := sc.Err(); err != nil {
		return Layout{}, fmt.Errorf("cgroups: read mountinfo: %w", err)
	}
	own := map[string]string{} // controller ("" for v2) → this process's group
	for _, line := range strings.Split(selfCgroup, "\n") {
		// ID:CONTROLLERS:PATH
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[1] == "" {
			own[""] = parts[2]
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			own[c] = parts[2]
		}
	}
	// where is the directory of this process's group in a hierarchy
	// mounted at m (its path relative to the mount's root).
	where := func(m mount, ctrl string) string {
		g := own[ctrl]
		if g == "" {
			g = "/"
		}
		if rel, err := filepath.Rel(m.root, g); err == nil && !strings.HasPrefix(rel, "..") {
			return filepath.Join(m.dir, rel, sub)
		}
		return filepath.Join(m.dir, sub)
	}
	for _, m := range mounts {
		if !m.v2 {
			continue
		}
		b, err := readFile(filepath.Join(m.dir, "cgroup.controllers"))
		if err != nil {
			continue
		}
		have := map[string]bool{}
		for _, c := range strings.Fields(string(b)) {
			have[c] = true
		}
		if have["cpu"] && have["memory"] && have["pids"] {
			return Layout{V2: where(m, "")}, nil
		}
	}
	l := Layout{V1: map[string]string{}}
	for _, m := range mounts {
		if m.v2 {
			continue
		}
		for _, c := range m.ctrls {
			if slices.Contains(required, c) || slices.Contains(optional, c) {
				if _, dup := l.V1[c]; !dup {
					l.V1[c] = where(m, c)
				}
			}
		}
	}
	var missing []string
	for _, c := range required {
		if _, ok := l.V1[c]; !ok {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return Layout{}, fmt.Errorf("cgroups: neither a cgroup2 mount with cpu, memory and pids nor v1 hierarchies of %s are mounted", strings.Join(missing, ", "))
	}
	return l, nil
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Join moves the calling process (all its threads) into the groups
// dirs; children it starts afterwards are born there. It is the vmm's
// first step (`vmm run --cgroup`), before any device process or vCPU.
func Join(dirs []string) error {
	pid := []byte(strconv.Itoa(os.Getpid()))
	for _, d := range dirs {
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), pid, 0); err != nil {
			return fmt.Errorf("join cgroup %s: %w", d, err)
		}
	}
	return nil
}

// writeFile writes one control file. Control files exist in a group
// as soon as it is made; creating one is what a fake tree in a test
// needs.
func writeFile(dir, name, value string) error {
	if err := os.WriteFile(filepath.Join(dir, name), []byte(value), 0o644); err != nil {
		return fmt.Errorf("cgroup %s: write %s = %q: %w", dir, name, value, err)
	}
	return nil
}

var errNoFile = errors.New("no such control file")

func readFile(dir, name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("cgroup %s: %s: %w", dir, name, errNoFile)
	}
	if err != nil {
		return "", fmt.Errorf("cgroup %s: %w", dir, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// Of is the group process pid is in (in the hierarchies a Probe would
// use).
func Of(pid int) (*Group, error) {
	mi, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("cgroups: %w", err)
	}
	defer mi.Close()
	self, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return nil, fmt.Errorf("cgroups: %w", err)
	}
	l, err := probe(mi, string(self), "", func(p string) ([]byte, error) { return os.ReadFile(p) })
	if err != nil {
		return nil, err
	}
	return l.Group(""), nil
}
