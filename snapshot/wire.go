package snapshot

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"

	"github.com/sietch-vm/sietch/devices"
	"github.com/sietch-vm/sietch/kvm"
	"github.com/sietch-vm/sietch/virtio"
)

// The state file is JSON so that a person can read it; the few large
// register blocks (LAPIC page, XSAVE area, irqchip state, x87/SSE
// registers) are base64 byte strings rather than arrays of numbers.
//
// This file owns the JSON form of every type State borrows from packages
// kvm, virtio and devices: each has a wire type here whose json tags are
// the names on disk, so renaming a field in those packages cannot change
// the format. A wire type whose source has no padding fields converts to
// and from it directly (regsJSON(r)), so any change to the source is a
// compile error here; the others copy field by field, and
// TestStateGoldenReads catches a field they do not copy. When the Go name
// of a source field changes, rename the wire field and keep its tag.
// testdata/state.golden.json pins the result.

// strictUnmarshal decodes data into v refusing unknown fields, as Read
// does. encoding/json hands a type's UnmarshalJSON the raw bytes without
// the caller's DisallowUnknownFields, so each UnmarshalJSON here decodes
// its wire form through this: otherwise a field renamed since the snapshot
// was written would read as zero instead of being refused.
func strictUnmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// convert maps a slice element by element; nil stays nil (JSON null).
func convert[T, U any](in []T, f func(T) U) []U {
	if in == nil {
		return nil
	}
	out := make([]U, len(in))
	for i, x := range in {
		out[i] = f(x)
	}
	return out
}

// vCPU state.

type vcpuJSON struct {
	ID        int           `json:"ID"`
	Regs      regsJSON      `json:"Regs"`
	Sregs     sregsJSON     `json:"Sregs"`
	FPU       fpuJSON       `json:"FPU"`
	XSave     []byte        `json:"XSave,omitempty"` // 4096 bytes, little-endian words
	XCRS      *xcrsJSON     `json:"XCRS,omitempty"`
	MSRs      []msrJSON     `json:"MSRs"`
	LAPIC     []byte        `json:"LAPIC"` // 1024 bytes
	Events    eventsJSON    `json:"Events"`
	MPState   mpStateJSON   `json:"MPState"`
	DebugRegs debugRegsJSON `json:"DebugRegs"`
	TSCKHz    uint32        `json:"TSCKHz"`
	CPUID     []cpuidJSON   `json:"CPUID"`
}

// regsJSON converts to and from kvm.Regs.
type regsJSON struct {
	RAX    uint64 `json:"RAX"`
	RBX    uint64 `json:"RBX"`
	RCX    uint64 `json:"RCX"`
	RDX    uint64 `json:"RDX"`
	RSI    uint64 `json:"RSI"`
	RDI    uint64 `json:"RDI"`
	RSP    uint64 `json:"RSP"`
	RBP    uint64 `json:"RBP"`
	R8     uint64 `json:"R8"`
	R9     uint64 `json:"R9"`
	R10    uint64 `json:"R10"`
	R11    uint64 `json:"R11"`
	R12    uint64 `json:"R12"`
	R13    uint64 `json:"R13"`
	R14    uint64 `json:"R14"`
	R15    uint64 `json:"R15"`
	RIP    uint64 `json:"RIP"`
	RFLAGS uint64 `json:"RFLAGS"`
}

type segmentJSON struct {
	Base     uint64 `json:"Base"`
	Limit    uint32 `json:"Limit"`
	Selector uint16 `json:"Selector"`
	Type     uint8  `json:"Type"`
	Present  uint8  `json:"Present"`
	DPL      uint8  `json:"DPL"`
	DB       uint8  `json:"DB"`
	S        uint8  `json:"S"`
	L        uint8  `json:"L"`
	G        uint8  `json:"G"`
	AVL      uint8  `json:"AVL"`
	Unusable uint8  `json:"Unusable"`
}

func segmentToJSON(s kvm.Segment) segmentJSON {
	return segmentJSON{Base: s.Base, Limit: s.Limit, Selector: s.Selector, Type: s.Type, Present: s.Present,
		DPL: s.DPL, DB: s.DB, S: s.S, L: s.L, G: s.G, AVL: s.AVL, Unusable: s.Unusable}
}

func (w segmentJSON) toKVM() kvm.Segment {
	return kvm.Segment{Base: w.Base, Limit: w.Limit, Selector: w.Selector, Type: w.Type, Present: w.Present,
		DPL: w.DPL, DB: w.DB, S: w.S, L: w.L, G: w.G, AVL: w.AVL, Unusable: w.Unusable}
}

type dtableJSON struct {
	Base  uint64 `json:"Base"`
	Limit uint16 `json:"Limit"`
}

type sregsJSON struct {
	CS              segmentJSON `json:"CS"`
	DS              segmentJSON `json:"DS"`
	ES              segmentJSON `json:"ES"`
	FS              segmentJSON `json:"FS"`
	GS              segmentJSON `json:"GS"`
	SS              segmentJSON `json:"SS"`
	TR              segmentJSON `json:"TR"`
	LDT             segmentJSON `json:"LDT"`
	GDT             dtableJSON  `json:"GDT"`
	IDT             dtableJSON  `json:"IDT"`
	CR0             uint64      `json:"CR0"`
	CR2             uint64      `json:"CR2"`
	CR3             uint64      `json:"CR3"`
	CR4             uint64      `json:"CR4"`
	CR8             uint64      `json:"CR8"`
	EFER            uint64      `json:"EFER"`
	APICBase        uint64      `json:"APICBase"`
	InterruptBitmap [4]uint64   `json:"InterruptBitmap"`
}

func sregsToJSON(s *kvm.Sregs) sregsJSON {
	return sregsJSON{
		CS: segmentToJSON(s.CS), DS: segmentToJSON(s.DS), ES: segmentToJSON(s.ES), FS: segmentToJSON(s.FS),
		GS: segmentToJSON(s.GS), SS: segmentToJSON(s.SS), TR: segmentToJSON(s.TR), LDT: segmentToJSON(s.LDT),
		GDT: dtableJSON{Base: s.GDT.Base, Limit: s.GDT.Limit}, IDT: dtableJSON{Base: s.IDT.Base, Limit: s.IDT.Limit},
		CR0: s.CR0, CR2: s.CR2, CR3: s.CR3, CR4: s.CR4, CR8: s.CR8, EFER: s.EFER, APICBase: s.APICBase,
		InterruptBitmap: s.InterruptBitmap,
	}
}

func (w *sregsJSON) toKVM() kvm.Sregs {
	return kvm.Sregs{
		CS: w.CS.toKVM(), DS: w.DS.toKVM(), ES: w.ES.toKVM(), FS: w.FS.toKVM(),
		GS: w.GS.toKVM(), SS: w.SS.toKVM(), TR: w.TR.toKVM(), LDT: w.LDT.toKVM(),
		GDT: kvm.DTable{Base: w.GDT.Base, Limit: w.GDT.Limit}, IDT: kvm.DTable{Base: w.IDT.Base, Limit: w.IDT.Limit},
		CR0: w.CR0, CR2: w.CR2, CR3: w.CR3, CR4: w.CR4, CR8: w.CR8, EFER: w.EFER, APICBase: w.APICBase,
		InterruptBitmap: w.InterruptBitmap,
	}
}

// fpuJSON is kvm.FPU with its register arrays as byte strings.
type fpuJSON struct {
	FPR        []byte `json:"FPR"` // 8 × 16 bytes
	FCW        uint16 `json:"FCW"`
	FSW        uint16 `json:"FSW"`
	FTWX       uint8  `json:"FTWX"`
	LastOpcode uint16 `json:"LastOpcode"`
	LastIP     uint64 `json:"LastIP"`
	LastDP     uint64 `json:"LastDP"`
	XMM        []byte `json:"XMM"` // 16 × 16 bytes
	MXCSR      uint32 `json:"MXCSR"`
}

type xcrJSON struct {
	XCR   uint32 `json:"XCR"`
	Value uint64 `json:"Value"`
}

type xcrsJSON struct {
	NrXCRs uint32      `json:"NrXCRs"`
	Flags  uint32      `json:"Flags"`
	XCRs   [16]xcrJSON `json:"XCRs"`
}

func xcrsToJSON(x *kvm.XCRS) *xcrsJSON {
	if x == nil {
		return nil
	}
	w := &xcrsJSON{NrXCRs: x.NrXCRs, Flags: x.Flags}
	for i, r := range x.XCRs {
		w.XCRs[i] = xcrJSON{XCR: r.XCR, Value: r.Value}
	}
	return w
}

func (w *xcrsJSON) toKVM() *kvm.XCRS {
	if w == nil {
		return nil
	}
	x := &kvm.XCRS{NrXCRs: w.NrXCRs, Flags: w.Flags}
	for i, r := range w.XCRs {
		x.XCRs[i] = kvm.XCR{XCR: r.XCR, Value: r.Value}
	}
	return x
}

type msrJSON struct {
	Index uint32 `json:"Index"`
	Data  uint64 `json:"Data"`
}

// exceptionJSON converts to and from kvm.VCPUEventException.
type exceptionJSON struct {
	Injected     uint8  `json:"Injected"`
	Nr           uint8  `json:"Nr"`
	HasErrorCode uint8  `json:"HasErrorCode"`
	Pending      uint8  `json:"Pending"`
	ErrorCode    uint32 `json:"ErrorCode"`
}

// interruptJSON converts to and from kvm.VCPUEventInterrupt.
type interruptJSON struct {
	Injected uint8 `json:"Injected"`
	Nr       uint8 `json:"Nr"`
	Soft     uint8 `json:"Soft"`
	Shadow   uint8 `json:"Shadow"`
}

type nmiJSON struct {
	Injected uint8 `json:"Injected"`
	Pending  uint8 `json:"Pending"`
	Masked   uint8 `json:"Masked"`
}

// smiJSON converts to and from kvm.VCPUEventSMI.
type smiJSON struct {
	SMM          uint8 `json:"SMM"`
	Pending      uint8 `json:"Pending"`
	SMMInsideNMI uint8 `json:"SMMInsideNMI"`
	LatchedInit  uint8 `json:"LatchedInit"`
}

type eventsJSON struct {
	Exception           exceptionJSON `json:"Exception"`
	Interrupt           interruptJSON `json:"Interrupt"`
	NMI                 nmiJSON       `json:"NMI"`
	SIPIVector          uint32        `json:"SIPIVector"`
	Flags               uint32        `json:"Flags"`
	SMI                 smiJSON       `json:"SMI"`
	TripleFaultPending  uint8         `json:"TripleFaultPending"`
	ExceptionHasPayload uint8         `json:"ExceptionHasPayload"`
	ExceptionPayload    uint64        `json:"ExceptionPayload"`
}

func eventsToJSON(e *kvm.VCPUEvents) eventsJSON {
	return eventsJSON{
		Exception: exceptionJSON(e.Exception), Interrupt: interruptJSON(e.Interrupt),
		NMI:        nmiJSON{Injected: e.NMI.Injected, Pending: e.NMI.Pending, Masked: e.NMI.Masked},
		SIPIVector: e.SIPIVector, Flags: e.Flags, SMI: smiJSON(e.SMI), TripleFaultPending: e.TripleFaultPending,
		ExceptionHasPayload: e.ExceptionHasPayload, ExceptionPayload: e.ExceptionPayload,
	}
}

func (w *eventsJSON) toKVM() kvm.VCPUEvents {
	return kvm.VCPUEvents{
		Exception: kvm.VCPUEventException(w.Exception), Interrupt: kvm.VCPUEventInterrupt(w.Interrupt),
		NMI:        kvm.VCPUEventNMI{Injected: w.NMI.Injected, Pending: w.NMI.Pending, Masked: w.NMI.Masked},
		SIPIVector: w.SIPIVector, Flags: w.Flags, SMI: kvm.VCPUEventSMI(w.SMI), TripleFaultPending: w.TripleFaultPending,
		ExceptionHasPayload: w.ExceptionHasPayload, ExceptionPayload: w.ExceptionPayload,
	}
}

// mpStateJSON converts to and from kvm.MPState.
type mpStateJSON struct {
	State uint32 `json:"State"`
}

type debugRegsJSON struct {
	DB    [4]uint64 `json:"DB"`
	DR6   uint64    `json:"DR6"`
	DR7   uint64    `json:"DR7"`
	Flags uint64    `json:"Flags"`
}

type cpuidJSON struct {
	Function uint32 `json:"Function"`
	Index    uint32 `json:"Index"`
	Flags    uint32 `json:"Flags"`
	EAX      uint32 `json:"EAX"`
	EBX      uint32 `json:"EBX"`
	ECX      uint32 `json:"ECX"`
	EDX      uint32 `json:"EDX"`
}

// MarshalJSON writes the vCPU in its wire form.
func (v VCPU) MarshalJSON() ([]byte, error) {
	w := vcpuJSON{
		ID: v.ID, Regs: regsJSON(v.Regs), Sregs: sregsToJSON(&v.Sregs), XCRS: xcrsToJSON(v.XCRS),
		MSRs:  convert(v.MSRs, func(m kvm.MSREntry) msrJSON { return msrJSON{Index: m.Index, Data: m.Data} }),
		LAPIC: v.LAPIC.Regs[:], Events: eventsToJSON(&v.Events), MPState: mpStateJSON(v.MPState),
		DebugRegs: debugRegsJSON{DB: v.DebugRegs.DB, DR6: v.DebugRegs.DR6, DR7: v.DebugRegs.DR7, Flags: v.DebugRegs.Flags},
		TSCKHz:    v.TSCKHz,
		CPUID: convert(v.CPUID, func(e kvm.CPUIDEntry2) cpuidJSON {
			return cpuidJSON{Function: e.Function, Index: e.Index, Flags: e.Flags, EAX: e.EAX, EBX: e.EBX, ECX: e.ECX, EDX: e.EDX}
		}),
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
	if err := strictUnmarshal(data, &w); err != nil {
		return fmt.Errorf("vCPU: %w", err)
	}
	out := VCPU{
		ID: w.ID, Regs: kvm.Regs(w.Regs), Sregs: w.Sregs.toKVM(), XCRS: w.XCRS.toKVM(),
		MSRs:   convert(w.MSRs, func(m msrJSON) kvm.MSREntry { return kvm.MSREntry{Index: m.Index, Data: m.Data} }),
		Events: w.Events.toKVM(), MPState: kvm.MPState(w.MPState),
		DebugRegs: kvm.DebugRegs{DB: w.DebugRegs.DB, DR6: w.DebugRegs.DR6, DR7: w.DebugRegs.DR7, Flags: w.DebugRegs.Flags},
		TSCKHz:    w.TSCKHz,
		CPUID: convert(w.CPUID, func(e cpuidJSON) kvm.CPUIDEntry2 {
			return kvm.CPUIDEntry2{Function: e.Function, Index: e.Index, Flags: e.Flags, EAX: e.EAX, EBX: e.EBX, ECX: e.ECX, EDX: e.EDX}
		}),
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

// VM-wide state.

type irqChipJSON struct {
	ChipID uint32 `json:"ChipID"`
	Chip   []byte `json:"Chip"` // 512 bytes: struct kvm_pic_state or kvm_ioapic_state
}

// pitChannelJSON converts to and from kvm.PITChannelState.
type pitChannelJSON struct {
	Count         uint32 `json:"Count"`
	LatchedCount  uint16 `json:"LatchedCount"`
	CountLatched  uint8  `json:"CountLatched"`
	StatusLatched uint8  `json:"StatusLatched"`
	Status        uint8  `json:"Status"`
	ReadState     uint8  `json:"ReadState"`
	WriteState    uint8  `json:"WriteState"`
	WriteLatch    uint8  `json:"WriteLatch"`
	RWMode        uint8  `json:"RWMode"`
	Mode          uint8  `json:"Mode"`
	BCD           uint8  `json:"BCD"`
	Gate          uint8  `json:"Gate"`
	CountLoadTime int64  `json:"CountLoadTime"`
}

type pitJSON struct {
	Channels [3]pitChannelJSON `json:"Channels"`
	Flags    uint32            `json:"Flags"`
}

type clockJSON struct {
	Clock    uint64 `json:"Clock"`
	Flags    uint32 `json:"Flags"`
	Realtime uint64 `json:"Realtime"`
	HostTSC  uint64 `json:"HostTSC"`
}

type vmJSON struct {
	PICMaster irqChipJSON `json:"PICMaster"`
	PICSlave  irqChipJSON `json:"PICSlave"`
	IOAPIC    irqChipJSON `json:"IOAPIC"`
	PIT       pitJSON     `json:"PIT"`
	Clock     clockJSON   `json:"Clock"`
}

func chipJSON(c *kvm.IRQChip) irqChipJSON { return irqChipJSON{ChipID: c.ChipID, Chip: c.Chip[:]} }

// MarshalJSON writes the VM state in its wire form.
func (v VM) MarshalJSON() ([]byte, error) {
	w := vmJSON{
		PICMaster: chipJSON(&v.PICMaster), PICSlave: chipJSON(&v.PICSlave), IOAPIC: chipJSON(&v.IOAPIC),
		PIT:   pitJSON{Flags: v.PIT.Flags},
		Clock: clockJSON{Clock: v.Clock.Clock, Flags: v.Clock.Flags, Realtime: v.Clock.Realtime, HostTSC: v.Clock.HostTSC},
	}
	for i, c := range v.PIT.Channels {
		w.PIT.Channels[i] = pitChannelJSON(c)
	}
	return json.Marshal(w)
}

// UnmarshalJSON reads what MarshalJSON wrote, checking each block's size.
func (v *VM) UnmarshalJSON(data []byte) error {
	var w vmJSON
	if err := strictUnmarshal(data, &w); err != nil {
		return fmt.Errorf("VM: %w", err)
	}
	out := VM{
		PIT:   kvm.PITState2{Flags: w.PIT.Flags},
		Clock: kvm.ClockData{Clock: w.Clock.Clock, Flags: w.Clock.Flags, Realtime: w.Clock.Realtime, HostTSC: w.Clock.HostTSC},
	}
	for i, c := range w.PIT.Channels {
		out.PIT.Channels[i] = kvm.PITChannelState(c)
	}
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

// The vmm's own devices.

// serialJSON converts to and from devices.SerialState.
type serialJSON struct {
	IER         uint8  `json:"IER"`
	LCR         uint8  `json:"LCR"`
	MCR         uint8  `json:"MCR"`
	LSR         uint8  `json:"LSR"`
	MSR         uint8  `json:"MSR"`
	SCR         uint8  `json:"SCR"`
	FCR         uint8  `json:"FCR"`
	DLL         uint8  `json:"DLL"`
	DLM         uint8  `json:"DLM"`
	THREPending bool   `json:"THREPending"`
	RX          []byte `json:"RX"`
}

// i8042JSON converts to and from devices.I8042State.
type i8042JSON struct {
	CommandByte    uint8 `json:"CommandByte"`
	OutputPort     uint8 `json:"OutputPort"`
	Output         uint8 `json:"Output"`
	OutputFull     bool  `json:"OutputFull"`
	Pending        uint8 `json:"Pending"`
	LastWasCommand bool  `json:"LastWasCommand"`
}

// mmioQueueJSON converts to and from virtio.MMIOQueueState.
type mmioQueueJSON struct {
	Num   uint16 `json:"Num"`
	Ready bool   `json:"Ready"`
	Desc  uint64 `json:"Desc"`
	Avail uint64 `json:"Avail"`
	Used  uint64 `json:"Used"`
}

type mmioJSON struct {
	DeviceFeaturesSel uint32          `json:"DeviceFeaturesSel"`
	DriverFeaturesSel uint32          `json:"DriverFeaturesSel"`
	DriverFeatures    uint64          `json:"DriverFeatures"`
	QueueSel          uint32          `json:"QueueSel"`
	SHMSel            uint32          `json:"SHMSel"`
	Status            uint32          `json:"Status"`
	InterruptStatus   uint32          `json:"InterruptStatus"`
	ConfigGeneration  uint32          `json:"ConfigGeneration"`
	Queues            []mmioQueueJSON `json:"Queues"`
}

// queueJSON converts to and from virtio.QueueState.
type queueJSON struct {
	NextAvail uint16 `json:"NextAvail"`
	NextUsed  uint16 `json:"NextUsed"`
}

type virtioJSON struct {
	Name      string      `json:"Name"`
	Kind      string      `json:"Kind"`
	Transport mmioJSON    `json:"Transport"`
	Queues    []queueJSON `json:"Queues"`
}

type devicesJSON struct {
	Serial serialJSON   `json:"Serial"`
	I8042  i8042JSON    `json:"I8042"`
	Virtio []virtioJSON `json:"Virtio"`
}

func virtioToJSON(v Virtio) virtioJSON {
	t := &v.Transport
	return virtioJSON{
		Name: v.Name, Kind: v.Kind,
		Transport: mmioJSON{
			DeviceFeaturesSel: t.DeviceFeaturesSel, DriverFeaturesSel: t.DriverFeaturesSel, DriverFeatures: t.DriverFeatures,
			QueueSel: t.QueueSel, SHMSel: t.SHMSel, Status: t.Status, InterruptStatus: t.InterruptStatus,
			ConfigGeneration: t.ConfigGeneration,
			Queues:           convert(t.Queues, func(q virtio.MMIOQueueState) mmioQueueJSON { return mmioQueueJSON(q) }),
		},
		Queues: convert(v.Queues, func(q virtio.QueueState) queueJSON { return queueJSON(q) }),
	}
}

func (w virtioJSON) state() Virtio {
	t := &w.Transport
	return Virtio{
		Name: w.Name, Kind: w.Kind,
		Transport: virtio.MMIOState{
			DeviceFeaturesSel: t.DeviceFeaturesSel, DriverFeaturesSel: t.DriverFeaturesSel, DriverFeatures: t.DriverFeatures,
			QueueSel: t.QueueSel, SHMSel: t.SHMSel, Status: t.Status, InterruptStatus: t.InterruptStatus,
			ConfigGeneration: t.ConfigGeneration,
			Queues:           convert(t.Queues, func(q mmioQueueJSON) virtio.MMIOQueueState { return virtio.MMIOQueueState(q) }),
		},
		Queues: convert(w.Queues, func(q queueJSON) virtio.QueueState { return virtio.QueueState(q) }),
	}
}

// MarshalJSON writes the device state in its wire form.
func (d Devices) MarshalJSON() ([]byte, error) {
	return json.Marshal(devicesJSON{
		Serial: serialJSON(d.Serial), I8042: i8042JSON(d.I8042),
		Virtio: convert(d.Virtio, virtioToJSON),
	})
}

// UnmarshalJSON reads what MarshalJSON wrote.
func (d *Devices) UnmarshalJSON(data []byte) error {
	var w devicesJSON
	if err := strictUnmarshal(data, &w); err != nil {
		return fmt.Errorf("devices: %w", err)
	}
	*d = Devices{
		Serial: devices.SerialState(w.Serial), I8042: devices.I8042State(w.I8042),
		Virtio: convert(w.Virtio, virtioJSON.state),
	}
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
