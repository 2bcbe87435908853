// Command testguest builds the freestanding C test guests into a directory.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/pflag"

	"github.com/sietch-vm/sietch/testguest"
)

func main() {
	out := pflag.StringP("out", "o", "build/testguest", "directory for the guest ELF files")
	pflag.Usage = func() {
		fmt.Fprintf(os.Stderr, "Usage: testguest [-o DIR] [NAME...]\n\nBuilds the named test guests (default: all of %v).\n\n%s", testguest.Names(), pflag.CommandLine.FlagUsages())
	}
	pflag.Parse()
	names := pflag.Args()
	if len(names) == 0 {
		names = testguest.Names()
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fmt.Fprintf(os.Stderr, "testguest: %v\n", err)
		os.Exit(1)
	}
	for _, n := range names {
		p, err := testguest.Build(*out, n)
		if err != nil {
			fmt.Fprintf(os.Stderr, "testguest: %v\n", err)
			os.Exit(1)
		}
		fmt.Println(p)
	}
}
