package dockerfile

import (
	"slices"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

// DefaultPath is the PATH a stage gets when its base sets none (BuildKit's).
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Platform is the only platform sietch builds for.
const Platform = "linux/amd64"

// autoArgs are BuildKit's automatic platform ARGs: set in the global scope,
// and in a stage once it declares them (ARG TARGETARCH).
var autoArgs = map[string]string{
	"TARGETPLATFORM": Platform, "TARGETOS": "linux", "TARGETARCH": "amd64", "TARGETVARIANT": "",
	"BUILDPLATFORM": Platform, "BUILDOS": "linux", "BUILDARCH": "amd64", "BUILDVARIANT": "",
}

// vars is one ordered set of NAME=value, as an environment.
type vars []string

func (v vars) get(k string) (string, bool) {
	for _, kv := range v {
		if name, val, _ := strings.Cut(kv, "="); name == k {
			return val, true
		}
	}
	return "", false
}

// set replaces k's value in place, or appends it.
func (v vars) set(k, val string) vars {
	for i, kv := range v {
		if name, _, _ := strings.Cut(kv, "="); name == k {
			v = slices.Clone(v)
			v[i] = k + "=" + val
			return v
		}
	}
	return append(slices.Clip(v), k+"="+val)
}

// under is v with the names of over that v lacks added: ENV (v) always
// overrides an ARG (over) of the same name.
func (v vars) under(over vars) vars {
	out := slices.Clone(v)
	for _, kv := range over {
		k, _, _ := strings.Cut(kv, "=")
		if _, ok := v.get(k); !ok {
			out = append(out, kv)
		}
	}
	return out
}

// Bounds on what expansion and state may grow to: a hostile Dockerfile
// could otherwise double a variable per line, or hold a copy of a huge
// environment in every step.
const (
	maxExpansion = 256 << 10
	maxEnvBytes  = 1 << 20 // ENV and ARG values of a stage together
	maxEnvVars   = 1024
	maxLabels    = 1024
	maxPorts     = 4096
)

// checkState refuses a stage state past the bounds above.
func checkState(line int, s *state) error {
	env := s.vars()
	size := 0
	for _, kv := range env {
		size += len(kv)
	}
	switch {
	case len(env) > maxEnvVars:
		return lineErrorf(line, "the stage has more than %d ENV and ARG variables", maxEnvVars)
	case size > maxEnvBytes:
		return lineErrorf(line, "the stage's ENV and ARG variables pass %d bytes together: no process could start with them", maxEnvBytes)
	case len(s.cfg.Labels) > maxLabels:
		return lineErrorf(line, "the image has more than %d labels", maxLabels)
	case len(s.cfg.ExposedPorts) > maxPorts:
		return lineErrorf(line, "the image exposes more than %d ports", maxPorts)
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// expander expands words as Docker does: $VAR, ${VAR}, ${VAR:-default},
// ${VAR:+alt}, quotes and the escape character (buildkit's shell.Lex).
type expander struct {
	lex *shell.Lex
}

func newExpander(escape rune) expander {
	if escape == 0 {
		escape = '\\'
	}
	return expander{lex: shell.NewLex(escape)}
}

// word expands one word with env in effect.
func (x expander) word(line int, w string, env vars) (string, error) {
	// Each $ yields at most the longest value, so this bounds the result
	// before the lexer builds it: ENV A=$A$A doubling A per line ends here.
	if n := strings.Count(w, "$"); n > 0 {
		longest := 0
		for _, kv := range env {
			longest = max(longest, len(kv))
		}
		if len(w)+n*longest > maxExpansion {
			return "", lineErrorf(line, "%q could expand to more than %d bytes", truncate(w), maxExpansion)
		}
	}
	out, _, err := x.lex.ProcessWord(w, shell.EnvsFromSlice(env))
	if err != nil {
		return "", lineErrorf(line, "expand %q: %v", w, err)
	}
	return out, nil
}

// words expands each word.
func (x expander) words(line int, ws []string, env vars) ([]string, error) {
	out := make([]string, len(ws))
	for i, w := range ws {
		var err error
		if out[i], err = x.word(line, w, env); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// checkValue refuses expanded values no process can carry.
func checkValue(line int, what, v string) error {
	if strings.IndexByte(v, 0) >= 0 {
		return lineErrorf(line, "%s holds a NUL byte", what)
	}
	return nil
}
