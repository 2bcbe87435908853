package boot

import (
	"reflect"
	"testing"

	"github.com/sietch-vm/sietch/kvm"
)

const sig = kvm.CPUIDFlagSignificantIndex

// hostCPUID is an abridged KVM_GET_SUPPORTED_CPUID from an Intel host.
func hostCPUID() []kvm.CPUIDEntry2 {
	return []kvm.CPUIDEntry2{
		{Function: 0, EAX: 0x20, EBX: 0x756e6547, ECX: 0x6c65746e, EDX: 0x49656e69},
		{Function: 1, EAX: 0xc06f2, EBX: 0x00020800, ECX: 0x81202000 | ecxVMX | ecxSMX, EDX: 0x0f8bfbff},
		{Function: 4, Index: 0, Flags: sig, EAX: 0x04000121, EBX: 0x02c0003f, ECX: 0x3f},
		{Function: 4, Index: 1, Flags: sig, EAX: 0x04000122, EBX: 0x01c0003f, ECX: 0x3f},
		{Function: 4, Index: 2, Flags: sig, EAX: 0x04000143, EBX: 0x03c0003f, ECX: 0x7ff},
		{Function: 4, Index: 3, Flags: sig, EAX: 0x04004163, EBX: 0x04c0003f, ECX: 0x3bfff, EDX: 4},
		{Function: 4, Index: 4, Flags: sig},
		{Function: 6, EAX: 0x77, EBX: 2, ECX: 9, EDX: 1},
		{Function: 7, Flags: sig, EAX: 2, EBX: 0x01802042, ECX: 0x1a010104, EDX: 0xbc010400},
		{Function: 0xa, EAX: 0x07300805, EBX: 0, EDX: 0x603},
		{Function: 0xb, Flags: sig},
		{Function: 0xd, Index: 0, Flags: sig, EAX: 0x2e7, EBX: 0xa88, ECX: 0xa88},
		{Function: 0x1f, Flags: sig},
		{Function: 0x80000000, EAX: 0x80000008},
		{Function: 0x80000001, ECX: 0x101 | ecxSVM, EDX: 0x20100800},
		{Function: 0x80000008, EAX: 0x392e, EBX: 0x0100d200},
		{Function: 0x40000000, EAX: 0x40000001, EBX: 0x4b4d564b, ECX: 0x564b4d56, EDX: 0x4d},
		{Function: 0x40000001, EAX: 0x01007efb},
	}
}

// find returns the entry for function/index, or fails.
func find(t *testing.T, es []kvm.CPUIDEntry2, fn, idx uint32) kvm.CPUIDEntry2 {
	t.Helper()
	var found []kvm.CPUIDEntry2
	for _, e := range es {
		if e.Function == fn && e.Index == idx {
			found = append(found, e)
		}
	}
	if len(found) != 1 {
		t.Fatalf("leaf %#x index %d appears %d times", fn, idx, len(found))
	}
	return found[0]
}

func TestCPUIDRules(t *testing.T) {
	tests := []struct {
		name  string
		vcpu  int
		opts  CPUIDOptions
		check func(t *testing.T, out []kvm.CPUIDEntry2)
	}{
		{"leaf 1: APIC ID, logical count, CLFLUSH, HTT", 3, CPUIDOptions{CPUs: 4}, func(t *testing.T, out []kvm.CPUIDEntry2) {
			e := find(t, out, 1, 0)
			if e.EBX>>24 != 3 || e.EBX>>16&0xff != 4 || e.EBX>>8&0xff != 8 || e.EDX&edxHTT == 0 {
				t.Errorf("leaf 1 EBX %#x EDX %#x", e.EBX, e.EDX)
			}
		}},
		{"leaf 1: one CPU has no HTT", 0, CPUIDOptions{CPUs: 1}, func(t *testing.T, out []kvm.CPUIDEntry2) {
			if e := find(t, out, 1, 0); e.EDX&edxHTT != 0 || e.EBX>>16&0xff != 1 || e.EBX>>24 != 0 {
				t.Errorf("leaf 1 EBX %#x EDX %#x", e.EBX, e.EDX)
			}
		}},
		{"leaf 1: hypervisor on, VMX and SMX off, TSC-deadline kept", 0, CPUIDOptions{CPUs: 1}, func(t *testing.T, out []kvm.CPUIDEntry2) {
			e := find(t, out, 1, 0)
			if e.ECX&ecxHypervisor == 0 || e.ECX&(ecxVMX|ecxSMX) != 0 || e.ECX&(1<<24) == 0 || e.ECX&(1<<21) == 0 {
				t.Errorf("leaf 1 ECX %#x", e.ECX)
			}
			if e.EAX != 0xc06f2 || e.EDX&^edxHTT != 0x0f8bfbff&^edxHTT {
				t.Errorf("leaf 1 EAX %#x EDX %#x changed", e.EAX, e.EDX)
			}
		}},
		{"leaf 4: cores and sharing follow CPUs", 0, CPUIDOptions{CPUs: 6}, func(t *testing.T, out []kvm.CPUIDEntry2) {
			for idx, wantShare := range []uint32{0, 0, 0, 5} {
				e := find(t, out, 4, uint32(idx))
				if e.EAX>>26 != 5 || e.EAX>>14&0xfff != wantShare || e.EAX&0x3fff != hostCPUID()[2+idx].EAX&0x3fff {
					t.Errorf("leaf 4.%d EAX %#x", idx, e.EAX)
				}
			}
			if e := find(t, out, 4, 4); e.EAX != 0 {
				t.Errorf("leaf 4.4 (end of list) EAX %#x", e.EAX)
			}
		}},
		{"leaf 6: only ARAT", 0, CPUIDOptions{CPUs: 1}, func(t *testing.T, out []kvm.CPUIDEntry2) {
			if e := find(t, out, 6, 0); e.EAX != eaxARAT || e.EBX|e.ECX|e.EDX != 0 {
				t.Errorf("leaf 6 %+v", e)
			}
		}},
		{"leaf 0xA: no PMU", 0, CPUIDOptions{CPUs: 1}, func(t *testing.T, out []kvm.CPUIDEntry2) {
			if e := find(t, out, 0xa, 0); e.EAX|e.EBX|e.ECX|e.EDX != 0 {
				t.Errorf("leaf 0xA %+v", e)
			}
		}},
		{"leaves 0xB and 0x1F: x2APIC topology", 5, CPUIDOptions{CPUs: 6}, func(t *testing.T, out []kvm.CPUIDEntry2) {
			for _, leaf := range []uint32{0xb, 0x1f} {
				want := []kvm.CPUIDEntry2{
					{Function: leaf, Index: 0, Flags: sig, EAX: 0, EBX: 1, ECX: 0x100, EDX: 5},
					{Function: leaf, Index: 1, Flags: sig, EAX: 3, EBX: 6, ECX: 0x201, EDX: 5},
					{Function: leaf, Index: 2, Flags: sig, EAX: 0, EBX: 0, ECX: 2, EDX: 5},
				}
				for i, w := range want {
					if got := find(t, out, leaf, uint32(i)); got != w {
						t.Errorf("leaf %#x.%d = %+v, want %+v", leaf, i, got, w)
					}
				}
			}
		}},
		{"leaf 0x80000001: no SVM", 0, CPUIDOptions{CPUs: 1}, func(t *testing.T, out []kvm.CPUIDEntry2) {
			if e := find(t, out, 0x80000001, 0); e.ECX != 0x101 || e.EDX != 0x20100800 {
				t.Errorf("leaf 0x80000001 %+v", e)
			}
		}},
		{"XSAVEERPTR only with Compat", 0, CPUIDOptions{CPUs: 1}, func(t *testing.T, out []kvm.CPUIDEntry2) {
			if e := find(t, out, 0x80000008, 0); e.EBX != 0x0100d200 {
				t.Errorf("leaf 0x80000008 EBX %#x", e.EBX)
			}
		}},
		{"Compat reports XSAVEERPTR", 0, CPUIDOptions{CPUs: 1, Compat: true}, func(t *testing.T, out []kvm.CPUIDEntry2) {
			if e := find(t, out, 0x80000008, 0); e.EBX != 0x0100d200|ebxXSAVEERPTR || e.EAX != 0x392e {
				t.Errorf("leaf 0x80000008 %+v", e)
			}
		}},
		{"other leaves, KVM paravirt leaves kept", 1, CPUIDOptions{CPUs: 2, Compat: true}, func(t *testing.T, out []kvm.CPUIDEntry2) {
			for _, e := range hostCPUID() {
				switch e.Function {
				case 0, 7, 0xd, 0x80000000, 0x40000000, 0x40000001:
					if got := find(t, out, e.Function, e.Index); got != e {
						t.Errorf("leaf %#x.%d = %+v, want unchanged %+v", e.Function, e.Index, got, e)
					}
				}
			}
		}},
		{"CPUs 0 means 1", 0, CPUIDOptions{}, func(t *testing.T, out []kvm.CPUIDEntry2) {
			if e := find(t, out, 0xb, 1); e.EBX != 1 || e.EAX != 0 {
				t.Errorf("leaf 0xB.1 %+v", e)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := hostCPUID()
			out := CPUID(in, tt.vcpu, tt.opts)
			if !reflect.DeepEqual(in, hostCPUID()) {
				t.Fatal("CPUID modified its input")
			}
			tt.check(t, out)
		})
	}
}

// A host list without leaf 0xB still gets the topology if leaf 0 says the
// leaf exists, and only then.
func TestCPUIDAddsTopology(t *testing.T) {
	in := []kvm.CPUIDEntry2{{Function: 0, EAX: 0xd}, {Function: 1}}
	if out := CPUID(in, 1, CPUIDOptions{CPUs: 2}); len(out) != 5 || find(t, out, 0xb, 1).EBX != 2 {
		t.Errorf("got %+v", out)
	}
	in[0].EAX = 7
	if out := CPUID(in, 1, CPUIDOptions{CPUs: 2}); len(out) != 2 {
		t.Errorf("got %+v", out)
	}
	if out := CPUID(nil, 0, CPUIDOptions{}); len(out) != 0 {
		t.Errorf("CPUID(nil) = %+v", out)
	}
}
