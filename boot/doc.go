// Package boot prepares guest memory and initial vCPU state to start a Linux x86-64 kernel.
package boot
