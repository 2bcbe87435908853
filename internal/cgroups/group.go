package cgroups

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Group is one sandbox's group: one directory in the unified hierarchy,
// or one in each v1 hierarchy.
type Group struct {
	v2  bool
	dir map[string]string // controller → directory ("" → the v2 directory)
}

// Group names the group name under l's parent; it makes nothing (see
// Create), so a manager that restarts finds its sandboxes' groups again.
func (l Layout) Group(name string) *Group {
	g := &Group{v2: l.V2 != "", dir: map[string]string{}}
	if g.v2 {
		g.dir[""] = filepath.Join(l.V2, name)
		return g
	}
	for c, d := range l.V1 {
		g.dir[c] = filepath.Join(d, name)
	}
	return g
}

// Children lists the names of the groups under l's parent (in its first
// hierarchy): what a manager may find left from before a crash.
func (l Layout) Children() []string {
	ps := l.ParentDirs()
	if len(ps) == 0 {
		return nil
	}
	ents, _ := os.ReadDir(ps[0])
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out
}

// Dirs are the group's directories, one per hierarchy: what `vmm run
// --cgroup` joins.
func (g *Group) Dirs() []string {
	var out []string
	for _, d := range g.dir {
		if !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	slices.Sort(out)
	return out
}

// Version is 2 or 1.
func (g *Group) Version() int {
	if g.v2 {
		return 2
	}
	return 1
}

// at is the directory holding controller c's files; "" if the host has
// no such controller.
func (g *Group) at(c string) string {
	if g.v2 {
		return g.dir[""]
	}
	return g.dir[c]
}

// Create makes the group (and its parents) and writes l. It is
// idempotent: a group left from before is reused with the new limits.
func (g *Group) Create(l Limits) error {
	if g.v2 {
		if err := enableControllers(filepath.Dir(g.dir[""])); err != nil {
			return err
		}
	}
	for _, d := range g.Dirs() {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("make cgroup %s: %w", d, err)
		}
	}
	if err := g.write(l); err != nil {
		g.Remove()
		return err
	}
	return nil
}

func (g *Group) write(l Limits) error {
	// optional: written only where the host has the file.
	type set struct {
		ctrl, file, value string
		optional          bool
	}
	var sets []set
	if g.v2 {
		quota := "max"
		if l.CPUQuotaUS > 0 {
			quota = strconv.FormatInt(l.CPUQuotaUS, 10)
		}
		sets = []set{
			{"cpu", "cpu.max", quota + " " + strconv.FormatInt(l.CPUPeriodUS, 10), false},
			{"memory", "memory.max", limitOrMax(l.MemoryBytes), false},
			// No swap: a sandbox over its limit is the one that suffers.
			{"memory", "memory.swap.max", "0", true},
			{"pids", "pids.max", limitOrMax(l.Pids), false},
		}
		if l.IOWeight > 0 {
			sets = append(sets, set{"io", "io.weight", "default " + strconv.Itoa(l.IOWeight), true})
		}
	} else {
		quota := "-1"
		if l.CPUQuotaUS > 0 {
			quota = strconv.FormatInt(l.CPUQuotaUS, 10)
		}
		mem := "-1"
		if l.MemoryBytes > 0 {
			mem = strconv.FormatInt(l.MemoryBytes, 10)
		}
		sets = []set{
			{"cpu", "cpu.cfs_period_us", strconv.FormatInt(l.CPUPeriodUS, 10), false},
			{"cpu", "cpu.cfs_quota_us", quota, false},
			{"memory", "memory.limit_in_bytes", mem, false},
			{"pids", "pids.max", limitOrMax(l.Pids), false},
		}
		if l.IOWeight > 0 {
			// v1 weights are 10 to 1000, and only the BFQ (or the old
			// CFQ) scheduler offers them.
			w := strconv.Itoa(max(10, min(l.IOWeight, 1000)))
			sets = append(sets, set{"blkio", "blkio.bfq.weight", w, true}, set{"blkio", "blkio.weight", w, true})
		}
	}
	for _, s := range sets {
		dir := g.at(s.ctrl)
		if dir == "" || s.optional && !exists(filepath.Join(dir, s.file)) {
			continue
		}
		if err := writeFile(dir, s.file, s.value); err != nil {
			return err
		}
	}
	return nil
}

func limitOrMax(v int64) string {
	if v <= 0 {
		return "max"
	}
	return strconv.FormatInt(v, 10)
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// enableControllers makes cpu, memory, pids and io (those the hierarchy
// offers) available to the children of dir, making dir and the groups
// above it as needed; v2 hands a controller down one level at a time.
func enableControllers(dir string) error {
	var chain []string // dir and its ancestors up to our own group or the mount's root, deepest first
	for d := dir; ; d = filepath.Dir(d) {
		chain = append(chain, d)
		if exists(d) && !exists(filepath.Join(filepath.Dir(d), "cgroup.controllers")) || filepath.Dir(d) == d {
			break
		}
	}
	for i := len(chain) - 1; i >= 0; i-- {
		d := chain[i]
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("make cgroup %s: %w", d, err)
		}
		avail, _ := readFile(d, "cgroup.controllers")
		on, _ := readFile(d, "cgroup.subtree_control")
		var want []string
		for _, c := range []string{"cpu", "memory", "pids", "io"} {
			if slices.Contains(strings.Fields(avail), c) && !slices.Contains(strings.Fields(on), c) {
				want = append(want, "+"+c)
			}
		}
		if len(want) == 0 {
			continue
		}
		if err := writeFile(d, "cgroup.subtree_control", strings.Join(want, " ")); err != nil {
			if errors.Is(err, syscall.EBUSY) {
				return fmt.Errorf("%w (a cgroup v2 group that holds processes cannot hand controllers to children: give sietchd a parent group of its own, e.g. --cgroup-parent, or run it in a leaf below a delegated group)", err)
			}
			return err
		}
	}
	return nil
}

// Procs lists the processes in the group.
func (g *Group) Procs() ([]int, error) {
	seen := map[int]bool{}
	var out []int
	for _, d := range g.Dirs() {
		s, err := readFile(d, "cgroup.procs")
		if err != nil {
			return nil, err
		}
		for _, f := range strings.Fields(s) {
			if pid, err := strconv.Atoi(f); err == nil && !seen[pid] {
				seen[pid] = true
				out = append(out, pid)
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

// Exists says whether the group's directories are there.
func (g *Group) Exists() bool {
	for _, d := range g.Dirs() {
		if !exists(d) {
			return false
		}
	}
	return len(g.dir) > 0
}

// removeWait bounds how long Remove waits for killed processes to leave.
const removeWait = 5 * time.Second

// Remove kills whatever is still in the group (device processes that
// outlived their vmm) and removes its directories.
func (g *Group) Remove() error {
	deadline := time.Now().Add(removeWait)
	for {
		pids, err := g.Procs()
		if err != nil && !errors.Is(err, errNoFile) && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		if len(pids) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup %s: processes %v did not exit after SIGKILL", strings.Join(g.Dirs(), ","), pids)
		}
		if kill := filepath.Join(g.dir[""], "cgroup.kill"); g.v2 && exists(kill) {
			os.WriteFile(kill, []byte("1"), 0)
		} else {
			for _, pid := range pids {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	var errs []error
	for _, d := range g.Dirs() {
		if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
			// A fake tree in a test holds files; cgroupfs directories
			// go with rmdir whatever they show.
			if errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, syscall.EEXIST) {
				if err = removeFake(d); err == nil {
					continue
				}
			}
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

// removeFake removes a directory that is not on cgroupfs (a test's).
func removeFake(d string) error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(d, &st); err != nil {
		return err
	}
	const cgroupMagic, cgroup2Magic = 0x27e0eb, 0x63677270
	if st.Type == cgroupMagic || st.Type == cgroup2Magic {
		return fmt.Errorf("cgroup %s is not empty", d)
	}
	return os.RemoveAll(d)
}
