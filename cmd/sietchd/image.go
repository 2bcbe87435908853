package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/sietch-vm/sietch/sandbox"
)

// parseImage parses NAME:key=value,... for --image. cmdline= comes last
// and takes the rest of the string, commas included (clearcpuid=a,b).
func parseImage(s string) (sandbox.ImageSpec, error) {
	name, rest, ok := strings.Cut(s, ":")
	if !ok || name == "" {
		return sandbox.ImageSpec{}, fmt.Errorf("%q: want NAME:kind=...,kernel=...", s)
	}
	spec := sandbox.ImageSpec{Name: name}
	if before, cmdline, ok := strings.Cut(rest, "cmdline="); ok {
		if before != "" && !strings.HasSuffix(before, ",") {
			return spec, fmt.Errorf("%q: cmdline= must be its own option, the last one", s)
		}
		spec.Cmdline = cmdline
		rest = strings.TrimSuffix(before, ",")
	}
	seen := map[string]bool{}
	for _, kv := range strings.Split(rest, ",") {
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || v == "" {
			return spec, fmt.Errorf("%q: option %q: want key=value", s, kv)
		}
		if seen[k] {
			return spec, fmt.Errorf("%q: %s is given twice", s, k)
		}
		seen[k] = true
		switch k {
		case "kind":
			spec.Kind = v
		case "kernel":
			spec.Kernel = v
		case "initrd":
			spec.Initrd = v
		case "rootfs":
			spec.RootFS = v
		case "mem":
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSuffix(v, "M"), "Mi"))
			if err != nil || n <= 0 {
				return spec, fmt.Errorf("%q: mem=%s: want MiB, such as 256", s, v)
			}
			spec.MemMiB = n
		default:
			return spec, fmt.Errorf("%q: unknown option %q (kind, kernel, initrd, rootfs, mem, cmdline)", s, k)
		}
	}
	switch {
	case spec.Kind != sandbox.KindLinux && spec.Kind != sandbox.KindTestguest:
		return spec, fmt.Errorf("%q: kind=%q: want kind=linux or kind=testguest", s, spec.Kind)
	case spec.Kernel == "":
		return spec, fmt.Errorf("%q: kernel= is required", s)
	}
	return spec, nil
}
