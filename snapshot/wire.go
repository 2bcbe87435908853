package snapshot

import (
	"encoding/binary"
	"encoding/json"
	"fmt"

	"github.com/sietch-vm/sietch/kvm"
)

// The state file is JSON so that a person can read it; the few large
// register blocks (LAPIC page, XSAVE area, irqchip state, x87/SSE
// registers) are base64 byte strings rather than arrays of numbers.

type fpuJSON struct {
	FPR        []byte // 8 × 16 bytes
	FCW        uint16
	FSW        uint16
	FTWX       uint8
	LastOpcode uint16
	LastIP     uint64
	LastDP     uint64
	XMM        []byte // 16 × 16 bytes
	MXCSR      uint32
}

type vcpuJSON struct {
	ID        int
	Regs      kvm.Regs
	Sregs     kvm.Sregs
	FPU       fpuJSON
	XSave     []byte    `json:",omitempty"` // 4096 bytes, little-endian words
	XCRS      *kvm.XCRS `json:",omitempty"`
	MSRs      []kvm.MSREntry
	LAPIC     []byte // 1024 bytes
	Events    kvm.VCPUEvents
	MPState   kvm.MPState
	DebugRegs kvm.DebugRegs
	TSCKHz    uint32
	CPUID     []kvm.CPUIDEntry2
}

// MarshalJSON writes the vCPU with its register blocks as byte strings.
func (v VCPU) MarshalJSON() ([]byte, error) {
	w := vcpuJSON{
		ID: v.ID, Regs: v.Regs, Sregs: v.Sregs, XCRS: v.XCRS, MSRs: v.MSRs,
		LAPIC: v.LAPIC.Regs[:], Events: v.Events, MPState: v.MPState,
		DebugRegs: v.DebugRegs, TSCKHz: v.TSCKHz, CPUID: v.CPUID,
		FPU: fpuJSON{
			FCW: v.FPU.FCW, FSW: v.FPU.FSW, FTWX: v.FPU.FTWX, LastOpcode: v.FPU.LastOpcode,
			LastIP: v.FPU.LastIP, LastDP: v.FPU.LastDP, MXCSR: v.FPU.MXCSR,
		},
	}
	for _, r := range v.FPU.FPR {
		w.FPU.FPR = append(w.FPU.FPR, r[:]...)
	}
	for _, r := range v.FPU.XMM {
		w.FPU.XMM = append(w.FPU.XMM, r[:]...)
	}
	if v.XSave != nil {
		w.XSave = make([]byte, 0, 4*len(v.XSave.Region))
		for _, x := range v.XSave.Region {
			w.XSave = binary.LittleEndian.AppendUint32(w.XSave, x)
		}
	}
	return json.Marshal(w)
}

// UnmarshalJSON reads what MarshalJSON wrote, checking each block's size.
func (v *VCPU) UnmarshalJSON(data []byte) error {
	var w vcpuJSON
	if err := json.Unmarshal(data, &w); err != nil {
		return err
	}
	out := VCPU{
		ID: w.ID, Regs: w.Regs, Sregs: w.Sregs, XCRS: w.XCRS, MSRs: w.MSRs,
		Events: w.Events, MPState: w.MPState, DebugRegs: w.DebugRegs,
		TSCKHz: w.TSCKHz, CPUID: w.CPUID,
		FPU: kvm.FPU{
			FCW: w.FPU.FCW, FSW: w.FPU.FSW, FTWX: w.FPU.FTWX, LastOpcode: w.FPU.LastOpcode,
			LastIP: w.FPU.LastIP, LastDP: w.FPU.LastDP, MXCSR: w.FPU.MXCSR,
		},
	}
	if err := fixed(out.LAPIC.Regs[:], w.LAPIC, "vCPU", w.ID, "LAPIC"); err != nil {
		return err
	}
	var fpr [8 * 16]byte
	if err := fixed(fpr[:], w.FPU.FPR, "vCPU", w.ID, "FPU.FPR"); err != nil {
		return err
	}
	for i := range out.FPU.FPR {
		copy(out.FPU.FPR[i][:], fpr[16*i:])
	}
	var xmm [16 * 16]byte
	if err := fixed(xmm[:], w.FPU.XMM, "vCPU", w.ID, "FPU.XMM"); err != nil {
		return err
	}
	for i := range out.FPU.XMM {
		copy(out.FPU.XMM[i][:], xmm[16*i:])
	}
	if w.XSave != nil {
		var raw [4 * len(kvm.XSave{}.Region)]byte
		if err := fixed(raw[:], w.XSave, "vCPU", w.ID, "XSave"); err != nil {
			return err
		}
		out.XSave = new(kvm.XSave)
		for i := range out.XSave.Region {
			out.XSave.Region[i] = binary.LittleEndian.Uint32(raw[4*i:])
		}
	}
	*v = out
	return nil
}

type irqChipJSON struct {
	ChipID uint32
	Chip   []byte // 512 bytes: struct kvm_pic_state or kvm_ioapic_state
}

type vmJSON struct {
	PICMaster, PICSlave, IOAPIC irqChipJSON
	PIT                         kvm.PITState2
	Clock                       kvm.ClockData
}

func chipJSON(c *kvm.IRQChip) irqChipJSON { return irqChipJSON{ChipID: c.ChipID, Chip: c.Chip[:]} }

// MarshalJSON writes the VM state with irqchip blocks as byte strings.
func (v VM) MarshalJSON() ([]byte, error) {
	return json.Marshal(vmJSON{
		PICMaster: chipJSON(&v.PICMaster), PICSlave: chipJSON(&v.PICSlave), IOAPIC: chipJSON(&v.IOAPIC),
		PIT: v.PIT, Clock: v.Clock,
	})
}

// UnmarshalJSON reads what MarshalJSON wrote, checking each block's size.
func (v *VM) UnmarshalJSON(data []byte) error {
	var w vmJSON
	if err := json.Unmarshal(data, &w); err != nil {
		return err
	}
	out := VM{PIT: w.PIT, Clock: w.Clock}
	for _, c := range []struct {
		dst  *kvm.IRQChip
		src  irqChipJSON
		name string
	}{{&out.PICMaster, w.PICMaster, "PICMaster"}, {&out.PICSlave, w.PICSlave, "PICSlave"}, {&out.IOAPIC, w.IOAPIC, "IOAPIC"}} {
		c.dst.ChipID = c.src.ChipID
		if len(c.src.Chip) != len(c.dst.Chip) {
			return fmt.Errorf("VM %s: %d bytes of chip state, want %d", c.name, len(c.src.Chip), len(c.dst.Chip))
		}
		copy(c.dst.Chip[:], c.src.Chip)
	}
	*v = out
	return nil
}

// fixed copies src into dst, which must be exactly as long.
func fixed(dst, src []byte, what string, id int, field string) error {
	if len(src) != len(dst) {
		return fmt.Errorf("%s %d %s: %d bytes, want %d", what, id, field, len(src), len(dst))
	}
	copy(dst, src)
	return nil
}
