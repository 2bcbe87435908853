package boot

import (
	"math/bits"

	"github.com/sietch-vm/sietch/kvm"
)

// CPUIDOptions shape the CPUID a vCPU sees.
type CPUIDOptions struct {
	// CPUs is the number of vCPUs in the VM (0 means 1).
	CPUs int
	// Compat is the profile for hosts whose guest CPL0 is emulated: it
	// also reports XSAVEERPTR (leaf 0x80000008 EBX bit 2), so Linux skips
	// the FXSAVE-leak workaround whose instructions the emulator lacks.
	Compat bool
}

// CPUID leaves and bits this package edits (Intel SDM Vol. 2A, CPUID;
// AMD APM Vol. 3, Appendix E).
const (
	leafFeatures   = 0x1
	leafCache      = 0x4
	leafPower      = 0x6
	leafPMU        = 0xa
	leafTopology   = 0xb
	leafTopologyV2 = 0x1f
	leafExtFeat    = 0x80000001
	leafAddrSizes  = 0x80000008

	ecxVMX         = 1 << 5
	ecxSMX         = 1 << 6
	ecxHypervisor  = 1 << 31
	edxHTT         = 1 << 28
	ecxSVM         = 1 << 2 // leaf 0x80000001
	eaxARAT        = 1 << 2 // leaf 6: the APIC timer runs in deep C-states
	ebxXSAVEERPTR  = 1 << 2 // leaf 0x80000008
	clflushLine64  = 8      // leaf 1 EBX[15:8], in 8-byte units
	topoLevelSMT   = 1
	topoLevelCore  = 2
	topoLevelCount = 3 // SMT, core, then the terminating invalid level
)

// CPUID returns the CPUID table for vCPU vcpu, derived from what KVM
// supports (KVM_GET_SUPPORTED_CPUID). supported is not modified.
//
// The topology is one socket of o.CPUs cores with one thread each; the
// initial APIC ID (leaf 1) and x2APIC ID (leaves 0xB, 0x1F) are vcpu, as
// in the MP table. Nested virtualization (VMX, SMX, SVM), the PMU (leaf
// 0xA) and power/thermal management (leaf 6, except ARAT) are hidden;
// TSC-deadline is passed through as KVM reports it; the hypervisor bit is
// set; KVM's paravirtual leaves (0x40000000...) are kept as they are.
func CPUID(supported []kvm.CPUIDEntry2, vcpu int, o CPUIDOptions) []kvm.CPUIDEntry2 {
	cpus := uint32(max(1, min(o.CPUs, MaxCPUs)))
	id := uint32(max(0, min(vcpu, 0xff)))
	out := make([]kvm.CPUIDEntry2, 0, len(supported)+2*topoLevelCount)
	var maxBasic uint32
	topoDone := map[uint32]bool{}
	for _, e := range supported {
		switch e.Function {
		case 0:
			maxBasic = e.EAX
		case leafFeatures:
			e.EBX = e.EBX&0xff | clflushLine64<<8 | min(cpus, 0xff)<<16 | id<<24
			e.ECX = e.ECX&^(ecxVMX|ecxSMX) | ecxHypervisor
			e.EDX &^= edxHTT
			if cpus > 1 {
				e.EDX |= edxHTT
			}
		case leafCache:
			e.EAX = cacheTopology(e.EAX, cpus)
		case leafPower:
			e.EAX &= eaxARAT
			e.EBX, e.ECX, e.EDX = 0, 0, 0
		case leafPMU:
			e.EAX, e.EBX, e.ECX, e.EDX = 0, 0, 0, 0
		case leafTopology, leafTopologyV2:
			// Replace KVM's entries (often all zero) by ours, once.
			if !topoDone[e.Function] {
				out = append(out, topology(e.Function, id, cpus)...)
				topoDone[e.Function] = true
			}
			continue
		case leafExtFeat:
			e.ECX &^= ecxSVM
		case leafAddrSizes:
			if o.Compat {
				e.EBX |= ebxXSAVEERPTR
			}
		}
		out = append(out, e)
	}
	if !topoDone[leafTopology] && maxBasic >= leafTopology {
		out = append(out, topology(leafTopology, id, cpus)...)
	}
	return out
}

// cacheTopology rewrites leaf 4's EAX for one thread per core: cores per
// package in bits 31:26, threads sharing the cache in bits 25:14 (one for
// L1 and L2, all for L3 and beyond).
func cacheTopology(eax, cpus uint32) uint32 {
	if eax&0x1f == 0 { // no more caches
		return eax
	}
	sharing := uint32(0)
	if level := eax >> 5 & 7; level >= 3 {
		sharing = min(cpus-1, 0xfff)
	}
	return eax&0x3fff | sharing<<14 | min(cpus-1, 0x3f)<<26
}

// topology is the x2APIC topology leaf (0xB or 0x1F): an SMT level of one
// thread, a core level of cpus cores, then the invalid level that ends the
// list; EDX is the x2APIC ID at every level.
func topology(leaf, id, cpus uint32) []kvm.CPUIDEntry2 {
	coreShift := uint32(bits.Len32(cpus - 1))
	return []kvm.CPUIDEntry2{
		{Function: leaf, Index: 0, Flags: kvm.CPUIDFlagSignificantIndex, EAX: 0, EBX: 1, ECX: 0 | topoLevelSMT<<8, EDX: id},
		{Function: leaf, Index: 1, Flags: kvm.CPUIDFlagSignificantIndex, EAX: coreShift, EBX: cpus, ECX: 1 | topoLevelCore<<8, EDX: id},
		{Function: leaf, Index: 2, Flags: kvm.CPUIDFlagSignificantIndex, EAX: 0, EBX: 0, ECX: 2, EDX: id},
	}
}
