// Package jail confines a device process: namespaces, an empty root, no capabilities, rlimits and a seccomp allowlist.
//
// The parent builds the command with [Command]; the child, re-executed from
// /proc/self/exe, calls [Enter] before it reads a byte from the guest.
package jail
