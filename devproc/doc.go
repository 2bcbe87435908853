// Package devproc is what the vmm and its device processes share: the one
// table of device kinds, a device process's command line and descriptors,
// starting it jailed, and the vsock dial broker. The device process's own
// main is package devmain, the only one that links the device models.
package devproc
