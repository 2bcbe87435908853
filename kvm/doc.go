// Package kvm is a thin, typed wrapper over the /dev/kvm ioctl API for x86-64;
// it holds the kernel ABI structs and nothing else (no policy, no device logic).
package kvm
