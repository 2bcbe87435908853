// Command qemu-cpu prints the -cpu value with which QEMU starts under KVM
// on this host (see package qemupeer), for scripts that run QEMU as a
// peer. It exits 1, printing why, when QEMU starts with none.
//
//	qemu-cpu [QEMU]   (default: qemu-system-x86_64 on PATH)
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/sietch-vm/sietch/internal/qemupeer"
)

func main() {
	qemu := "qemu-system-x86_64"
	if len(os.Args) > 2 {
		fmt.Fprintln(os.Stderr, "usage: qemu-cpu [QEMU]")
		os.Exit(2)
	}
	if len(os.Args) == 2 {
		qemu = os.Args[1]
	}
	model, err := qemupeer.CPUModel(context.Background(), qemu)
	if err != nil {
		fmt.Fprintln(os.Stderr, "qemu-cpu:", err)
		os.Exit(1)
	}
	fmt.Println(model)
}
