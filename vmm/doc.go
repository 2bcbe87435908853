// Package vmm runs one virtual machine: guest memory, vCPU threads, the exit
// loop, the platform device buses and the start-up sequence that wires them.
package vmm
