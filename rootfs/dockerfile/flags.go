package dockerfile

import (
	"fmt"
	"slices"
	"strings"
)

// parseFlags turns the parser's "--name=value" words into a map. A flag
// given twice is refused (Docker takes the last for most, a list for some;
// neither is wanted here).
func parseFlags(line int, instr string, raw []string) (map[string]string, error) {
	flags := map[string]string{}
	for _, f := range raw {
		if !strings.HasPrefix(f, "--") || len(f) == 2 {
			return nil, lineErrorf(line, "%s: flag %q must be --name or --name=value", instr, f)
		}
		name, value, hasValue := strings.Cut(f[2:], "=")
		if !hasValue {
			value = "true"
		}
		if _, dup := flags[name]; dup {
			return nil, lineErrorf(line, "%s: flag --%s is given twice", instr, name)
		}
		flags[name] = value
	}
	return flags, nil
}

// allowFlags refuses any flag but the allowed ones (all of them with any).
func allowFlags(line int, instr string, flags map[string]string, any bool, allowed ...string) error {
	if any {
		return nil
	}
	names := make([]string, 0, len(flags))
	for n := range flags {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if !slices.Contains(allowed, n) {
			if len(allowed) == 0 {
				return unsupported(line, fmt.Sprintf("%s --%s", instr, n), instr+" takes no flags here")
			}
			return unsupported(line, fmt.Sprintf("%s --%s", instr, n), fmt.Sprintf("%s takes only --%s", instr, strings.Join(allowed, ", --")))
		}
	}
	return nil
}
