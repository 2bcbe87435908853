package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/pflag"

	"github.com/sietch-vm/sietch/snapshot"
)

// cmdFlatten is `vmm flatten`: make a diff snapshot self-contained by
// merging its chain of bases into a new full memory file. Its bases stay
// as they were.
func cmdFlatten(args []string, stderr io.Writer) int {
	fs := pflag.NewFlagSet("vmm flatten", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "the diff snapshot `DIR` to make self-contained (required)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: vmm flatten --dir DIR\n\nMerges the memory of a diff snapshot's bases into it; the bases are not changed.\n\nFlags:\n%s", fs.FlagUsages())
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "vmm flatten: %v\n", err)
		return exitUsage
	}
	if *dir == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "vmm flatten: --dir is required and takes no other arguments")
		fs.Usage()
		return exitUsage
	}
	if err := snapshot.Flatten(*dir); err != nil {
		fmt.Fprintf(stderr, "vmm flatten: %v\n", err)
		return exitError
	}
	return 0
}
