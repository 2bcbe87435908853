package snapshot

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"

	"github.com/sietch-vm/sietch/kvm"
)

// maxCPUs bounds the vCPU count a state may claim (vmm.MaxCPUs).
const maxCPUs = 64

// validate checks that s describes a VM restore can rebuild; every problem
// found is reported, each wrapping ErrIncomplete.
func validate(s *State) error {
	var errs []error
	bad := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf(format+": %w", append(a, ErrIncomplete)...))
	}
	m := &s.Machine
	if len(s.VCPUs) == 0 {
		bad("no vCPUs")
	}
	if len(s.VCPUs) > maxCPUs {
		bad("%d vCPUs, at most %d", len(s.VCPUs), maxCPUs)
	}
	if m.CPUs != len(s.VCPUs) {
		bad("machine has %d vCPUs, the state holds %d", m.CPUs, len(s.VCPUs))
	}
	for i, v := range s.VCPUs {
		if v.ID != i {
			bad("vCPU %d has ID %d; IDs must be 0..%d in order", i, v.ID, len(s.VCPUs)-1)
		}
		if len(v.CPUID) == 0 {
			bad("vCPU %d has no CPUID leaves", i)
		}
		if v.TSCKHz == 0 {
			bad("vCPU %d has no TSC frequency", i)
		}
		if v.XCRS != nil && v.XCRS.NrXCRs > uint32(len(v.XCRS.XCRs)) {
			bad("vCPU %d claims %d XCRs, at most %d", i, v.XCRS.NrXCRs, len(v.XCRS.XCRs))
		}
	}
	for _, c := range []struct {
		chip *kvm.IRQChip
		id   uint32
		name string
	}{{&s.VM.PICMaster, kvm.IRQChipPICMaster, "PICMaster"}, {&s.VM.PICSlave, kvm.IRQChipPICSlave, "PICSlave"}, {&s.VM.IOAPIC, kvm.IRQChipIOAPIC, "IOAPIC"}} {
		if c.chip.ChipID != c.id {
			bad("VM %s has chip id %d, want %d", c.name, c.chip.ChipID, c.id)
		}
	}
	if m.MemSize == 0 || m.MemSize%PageSize != 0 {
		bad("guest memory size %d is not a positive multiple of %d", m.MemSize, PageSize)
	}
	for i, d := range m.Disks {
		if d.Path == "" {
			bad("disk %d has no path", i)
		}
		if d.SHA256 == "" && d.Clone == "" {
			bad("disk %d (%s) records neither a content hash nor a clone; restore could pair memory with a changed disk", i, d.Path)
		}
		if d.Size < 0 {
			bad("disk %d size %d is negative", i, d.Size)
		}
	}
	if n := m.Net; n != nil {
		if n.Tap == "" {
			bad("net device has no TAP interface")
		}
		if _, err := net.ParseMAC(n.MAC); err != nil {
			bad("net device MAC %q: %v", n.MAC, err)
		}
	}
	if v := m.Vsock; v != nil && (v.CID < 3 || v.CID > 0xffffffff || v.UDS == "") {
		bad("vsock CID %d / socket %q: need a CID in 3..2^32-1 and a socket path", v.CID, v.UDS)
	}
	names := map[string]bool{}
	for i, v := range s.Devices.Virtio {
		if v.Name == "" || v.Kind == "" || names[v.Name] {
			bad("virtio device %d: name %q kind %q; each needs a unique name and a kind", i, v.Name, v.Kind)
		}
		names[v.Name] = true
		if len(v.Queues) != len(v.Transport.Queues) {
			bad("virtio device %s: %d queue positions for %d transport queues", v.Name, len(v.Queues), len(v.Transport.Queues))
		}
	}
	validateMemory(&s.Memory, m.MemSize, bad)
	return errors.Join(errs...)
}

func validateMemory(mem *Memory, memSize uint64, bad func(string, ...any)) {
	if mem.File == "" || !filepath.IsLocal(mem.File) {
		bad("memory file name %q must be a file inside the snapshot directory", mem.File)
	}
	if mem.Size != memSize {
		bad("memory is %d bytes, the machine has %d", mem.Size, memSize)
	}
	switch mem.Kind {
	case KindFull:
		if mem.Base != "" || mem.DirtyPages != nil {
			bad("full memory file with a base or dirty pages")
		}
	case KindDiff:
		if mem.Base == "" {
			bad("diff memory file without a base")
		}
		if want := BitmapWords(mem.Size); len(mem.DirtyPages) != want {
			bad("diff dirty-page bitmap has %d words, %d bytes of memory need %d", len(mem.DirtyPages), mem.Size, want)
		}
	default:
		bad("memory kind %q is neither %q nor %q", mem.Kind, KindFull, KindDiff)
	}
	if len(mem.Regions) == 0 {
		bad("no memory regions")
	}
	var off uint64
	for i, r := range mem.Regions {
		if r.Size == 0 || r.GPA%PageSize != 0 || r.Size%PageSize != 0 {
			bad("memory region %d [%#x,+%#x) is empty or not page-aligned", i, r.GPA, r.Size)
		}
		if r.Offset != off {
			bad("memory region %d starts at file offset %#x, want %#x (regions must tile the file in order)", i, r.Offset, off)
		}
		if r.GPA+r.Size < r.GPA {
			bad("memory region %d [%#x,+%#x) wraps around", i, r.GPA, r.Size)
		}
		if i > 0 {
			if p := mem.Regions[i-1]; r.GPA < p.GPA+p.Size {
				bad("memory region %d at %#x overlaps or precedes region %d", i, r.GPA, i-1)
			}
		}
		off += r.Size
		if off < r.Size {
			bad("memory regions overflow")
			return
		}
	}
	if off != mem.Size {
		bad("memory regions cover %d bytes, the memory is %d", off, mem.Size)
	}
}
