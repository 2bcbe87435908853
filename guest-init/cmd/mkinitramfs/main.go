// Command mkinitramfs writes a reproducible newc initramfs without root.
package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/spf13/pflag"

	"github.com/sietch-vm/sietch/guest-init/initrt"
)

const usage = `usage: mkinitramfs -o OUT.cpio [--init GUEST-INIT] [--file SRC:DEST:MODE]... [--dir PATH:MODE]... [--dev NAME:TYPE:MAJOR:MINOR]...

Writes an uncompressed newc archive for the Linux initramfs. It always holds
dev/ and dev/console (character 5:1); files are owned by root with zero
mtimes, so the same inputs give the same bytes.

  --init build/guest-init        the sietch guest-init as /init, with the mount
                                 points it expects (/proc, /sys, /run, ...)
  --file build/init:/init:0755   copy a host file to /init with mode 0755
  --dir proc:0555                an empty directory (a mount point) with mode 0555
  --dev console:c:5:1            a device node under /dev (c or b)
`

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "mkinitramfs:", err)
		if _, ok := err.(usageError); ok {
			fmt.Fprint(os.Stderr, usage)
			os.Exit(2)
		}
		os.Exit(1)
	}
}

type usageError struct{ error }

// guestInitDirs are the mount points guest-init finds in the initramfs.
func guestInitDirs() []dirSpec {
	var dirs []dirSpec
	for name, mode := range initrt.InitramfsDirs {
		dirs = append(dirs, dirSpec{name: name, mode: uint64(mode)})
	}
	sort.Slice(dirs, func(i, j int) bool { return dirs[i].name < dirs[j].name })
	return dirs
}

func run(args []string) error {
	fs := pflag.NewFlagSet("mkinitramfs", pflag.ContinueOnError)
	fs.SetOutput(new(bytes.Buffer)) // errors are reported once, by main
	out := fs.StringP("output", "o", "", "archive to write")
	initArg := fs.String("init", "", "guest-init binary: /init and its mount points")
	fileArgs := fs.StringArray("file", nil, "SRC:DEST:MODE, repeatable")
	dirArgs := fs.StringArray("dir", nil, "PATH:MODE, repeatable")
	devArgs := fs.StringArray("dev", nil, "NAME:TYPE:MAJOR:MINOR, repeatable")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if *out == "" {
		return usageError{fmt.Errorf("-o OUT.cpio is required")}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}

	var files []fileSpec
	var dirs []dirSpec
	if *initArg != "" {
		files = append(files, fileSpec{src: *initArg, dest: "init", mode: 0o755})
		dirs = append(dirs, guestInitDirs()...)
	}
	for _, a := range *fileArgs {
		f, err := parseFileSpec(a)
		if err != nil {
			return usageError{err}
		}
		files = append(files, f)
	}
	for _, a := range *dirArgs {
		d, err := parseDirSpec(a)
		if err != nil {
			return usageError{err}
		}
		dirs = append(dirs, d)
	}
	var devs []devSpec
	for _, a := range *devArgs {
		d, err := parseDevSpec(a)
		if err != nil {
			return usageError{err}
		}
		devs = append(devs, d)
	}

	recs, err := records(dirs, files, devs)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := writeArchive(&buf, recs); err != nil {
		return fmt.Errorf("write archive: %w", err)
	}
	// Write to a temporary file and rename, so a failed run never leaves a
	// half-written archive that a later boot would pick up.
	tmp, err := os.CreateTemp(filepath.Dir(*out), ".mkinitramfs-*")
	if err != nil {
		return fmt.Errorf("create %s: %w", *out, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", *out, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("chmod %s: %w", *out, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", *out, err)
	}
	if err := os.Rename(tmp.Name(), *out); err != nil {
		return fmt.Errorf("write %s: %w", *out, err)
	}
	return nil
}
