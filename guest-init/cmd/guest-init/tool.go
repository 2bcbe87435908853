package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
)

const toolUsage = `usage: guest-init [version | info]

As PID 1 guest-init starts the guest. Run inside the guest:
  version   print the build (VCS revision, Go version)
  info      print what init set up: hostname, kernel command line, mounts,
            environment
`

// tool is guest-init run as an ordinary command inside the guest: the
// initramfs has no other programs, so it answers a few questions itself.
func tool(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprint(stderr, toolUsage)
		return 2
	}
	switch args[0] {
	case "version":
		fmt.Fprintln(stdout, version())
		return 0
	case "info":
		if err := info(stdout); err != nil {
			fmt.Fprintln(stderr, "guest-init info:", err)
			return 1
		}
		return 0
	case "-h", "--help", "help":
		fmt.Fprint(stdout, toolUsage)
		return 0
	}
	fmt.Fprintf(stderr, "guest-init: unknown command %q\n%s", args[0], toolUsage)
	return 2
}

// version is "guest-init REVISION[+dirty] GOVERSION".
func version() string {
	rev, dirty := "unknown", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch {
			case s.Key == "vcs.revision" && len(s.Value) >= 12:
				rev = s.Value[:12]
			case s.Key == "vcs.modified" && s.Value == "true":
				dirty = "+dirty"
			}
		}
	}
	return fmt.Sprintf("sietch guest-init %s%s %s", rev, dirty, runtime.Version())
}

// info prints one "key value" line per fact, sorted within each kind.
func info(w io.Writer) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintln(bw, "version", version())
	host, err := os.Hostname()
	if err != nil {
		return fmt.Errorf("hostname: %w", err)
	}
	fmt.Fprintln(bw, "hostname", host)
	if cmdline, err := os.ReadFile("/proc/cmdline"); err == nil {
		fmt.Fprintln(bw, "cmdline", strings.TrimSpace(string(cmdline)))
	}
	mounts, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return fmt.Errorf("mounts: %w", err)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(mounts)), "\n") {
		// fstab format: source target type options ...
		if f := strings.Fields(l); len(f) >= 4 {
			fmt.Fprintln(bw, "mount", f[1], f[2], f[3])
		}
	}
	env := os.Environ()
	sort.Strings(env)
	for _, kv := range env {
		fmt.Fprintln(bw, "env", kv)
	}
	return bw.Flush()
}
