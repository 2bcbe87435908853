package initrt

import "strings"

// DefaultPath is PATH for every program guest-init starts (Debian's root PATH).
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Under the compatibility profile the guest kernel runs with noxsave: it
// saves only the legacy FPU/SSE state on a context switch, while CPUID still
// offers AVX to user code (DESIGN.md, "The KVM on our build and test
// machines"). These keep glibc and Go programs on SSE code paths.
const (
	// glibc 2.36 (Debian bookworm) names features without the _Usable
	// suffix of glibc < 2.33, and ignores names it does not know, so
	// "-AVX2_Usable" would silently change nothing. AVX_Fast_Unaligned_Load
	// is a preference set from AVX2 at start-up; memmove/memcpy pick their
	// AVX and EVEX variants from it and AVX512VL, not from AVX2 itself.
	// Checked with ld.so: the resolved memcpy changes only with all five.
	compatGlibcTunables = "glibc.cpu.hwcaps=-AVX,-AVX2,-AVX512F,-AVX512VL,-AVX_Fast_Unaligned_Load"
	// Go's internal/cpu options (GODEBUG=cpu.<name>=off).
	compatGodebug = "cpu.avx=off,cpu.avx2=off,cpu.avx512f=off"
)

// Env is the environment of the programs guest-init starts: PATH, HOME,
// TERM, LANG, the compatibility profile's variables when cfg.Compat, then
// the variables of inherited (the kernel's leftover key=value words) that
// none of those set. The compatibility values extend, rather than replace,
// an inherited GLIBC_TUNABLES or GODEBUG.
func Env(cfg Config, inherited []string) []string {
	env := []string{"PATH=" + DefaultPath, "HOME=/root", "TERM=linux", "LANG=C.UTF-8"}
	set := map[string]bool{"PATH": true, "HOME": true, "TERM": true, "LANG": true}
	extra := map[string]string{}
	if cfg.Compat {
		extra["GLIBC_TUNABLES"] = compatGlibcTunables
		extra["GODEBUG"] = compatGodebug
	}
	for _, kv := range inherited {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			continue
		}
		if add, isExtra := extra[k]; isExtra && v != "" {
			// glibc tunables separate with ':', GODEBUG settings with ','.
			sep := ","
			if k == "GLIBC_TUNABLES" {
				sep = ":"
			}
			extra[k] = v + sep + add
		}
	}
	for _, k := range []string{"GLIBC_TUNABLES", "GODEBUG"} {
		if v, ok := extra[k]; ok {
			env = append(env, k+"="+v)
			set[k] = true
		}
	}
	for _, kv := range inherited {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || k == "" || set[k] {
			continue
		}
		set[k] = true
		env = append(env, kv)
	}
	return env
}
