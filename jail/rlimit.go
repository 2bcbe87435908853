package jail

import (
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Rlimits bound a device process. A zero field takes the default;
// RLIMIT_CORE is always 0 (a core file would hold guest memory).
type Rlimits struct {
	// NoFile is RLIMIT_NOFILE: one more than the highest descriptor the
	// process may open. Default 64.
	NoFile uint64
	// AS is RLIMIT_AS in bytes. It must cover the guest memory the device
	// maps plus the Go runtime's reservations and thread stacks (8 MiB
	// each under cgo). Default 4 GiB; the vmm should pass guest memory
	// + 2 GiB.
	AS uint64
	// Data is RLIMIT_DATA in bytes: private writable memory. Guest memory
	// is a shared mapping and does not count. Default 1 GiB.
	Data uint64
	// NProc is RLIMIT_NPROC, counted in threads per host user; 0 leaves it
	// alone. Seccomp already stops new processes, and every device process
	// runs as the same host user, so a small value starves Go's runtime of
	// threads across devices.
	NProc uint64
}

// appliedNoFile is the RLIMIT_NOFILE Enter set (0: not entered).
var appliedNoFile atomic.Uint64

// NoFileLimit is the descriptor limit Enter applied to this process, 0 if
// it did not run: a confined process may not ask getrlimit itself.
func NoFileLimit() uint64 { return appliedNoFile.Load() }

// DefaultRlimits are the values a zero field takes.
var DefaultRlimits = Rlimits{NoFile: 64, AS: 4 << 30, Data: 1 << 30}

func (r Rlimits) withDefaults() Rlimits {
	if r.NoFile == 0 {
		r.NoFile = DefaultRlimits.NoFile
	}
	if r.AS == 0 {
		r.AS = DefaultRlimits.AS
	}
	if r.Data == 0 {
		r.Data = DefaultRlimits.Data
	}
	return r
}

// stricter combines two sets field by field: the smaller non-zero value wins.
func (r Rlimits) stricter(o Rlimits) Rlimits {
	min := func(a, b uint64) uint64 {
		if a == 0 || (b != 0 && b < a) {
			return b
		}
		return a
	}
	return Rlimits{
		NoFile: min(r.NoFile, o.NoFile),
		AS:     min(r.AS, o.AS),
		Data:   min(r.Data, o.Data),
		NProc:  min(r.NProc, o.NProc),
	}
}

// rlimitFields pairs each field with its resource and its name in the
// environment encoding.
func (r *Rlimits) fields() []struct {
	name string
	res  int
	v    *uint64
} {
	return []struct {
		name string
		res  int
		v    *uint64
	}{
		{"nofile", unix.RLIMIT_NOFILE, &r.NoFile},
		{"as", unix.RLIMIT_AS, &r.AS},
		{"data", unix.RLIMIT_DATA, &r.Data},
		{"nproc", unix.RLIMIT_NPROC, &r.NProc},
	}
}

// String encodes the limits for the child's environment:
// "nofile=64,as=4294967296,data=0,nproc=0".
func (r Rlimits) String() string {
	var parts []string
	for _, f := range r.fields() {
		parts = append(parts, f.name+"="+strconv.FormatUint(*f.v, 10))
	}
	return strings.Join(parts, ",")
}

// parseRlimits reads String's encoding; an empty string is all zero.
func parseRlimits(s string) (Rlimits, error) {
	var r Rlimits
	if s == "" {
		return r, nil
	}
	seen := map[string]bool{}
	for _, kv := range strings.Split(s, ",") {
		name, val, ok := strings.Cut(kv, "=")
		if !ok {
			return Rlimits{}, fmt.Errorf("rlimits %q: %q is not name=value", s, kv)
		}
		if seen[name] {
			return Rlimits{}, fmt.Errorf("rlimits %q: %s given twice", s, name)
		}
		seen[name] = true
		found := false
		for _, f := range r.fields() {
			if f.name == name {
				v, err := strconv.ParseUint(val, 10, 64)
				if err != nil {
					return Rlimits{}, fmt.Errorf("rlimits %q: %s: %w", s, name, err)
				}
				*f.v, found = v, true
			}
		}
		if !found {
			return Rlimits{}, fmt.Errorf("rlimits %q: unknown limit %q", s, name)
		}
	}
	return r, nil
}

// apply sets soft and hard limits (a hard limit can only be lowered
// without CAP_SYS_RESOURCE, so a value above it is clamped to it) and
// RLIMIT_CORE 0.
func (r Rlimits) apply() error {
	set := func(name string, res int, v uint64) error {
		var cur unix.Rlimit
		if err := unix.Getrlimit(res, &cur); err != nil {
			return fmt.Errorf("get rlimit %s: %w", name, err)
		}
		v = min(v, cur.Max)
		if err := unix.Setrlimit(res, &unix.Rlimit{Cur: v, Max: v}); err != nil {
			return fmt.Errorf("set rlimit %s to %d: %w", name, v, err)
		}
		if res == unix.RLIMIT_NOFILE {
			appliedNoFile.Store(v)
		}
		return nil
	}
	if err := set("core", unix.RLIMIT_CORE, 0); err != nil {
		return err
	}
	for _, f := range r.fields() {
		if *f.v == 0 {
			continue
		}
		if err := set(f.name, f.res, *f.v); err != nil {
			return err
		}
	}
	return nil
}
