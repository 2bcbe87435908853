package boot

import "fmt"

// Intel MultiProcessor Specification 1.4 structures (chapter 4).
const (
	mpFloatSize     = 16 // §4.1, Figure 4-2
	mpHeaderSize    = 44 // §4.2, Table 4-2
	mpProcessorSize = 20 // §4.3.1
	mpEntrySize     = 8  // bus, I/O APIC, I/O and local interrupt entries
	mpSpecRev       = 4  // version 1.4

	mpTypeProcessor = 0
	mpTypeBus       = 1
	mpTypeIOAPIC    = 2
	mpTypeIOInt     = 3
	mpTypeLocalInt  = 4

	mpIntINT    = 0 // vectored interrupt from the I/O APIC
	mpIntNMI    = 1
	mpIntExtINT = 3 // 8259-compatible, on LINT0

	mpCPUEnabled = 1 << 0
	mpCPUBSP     = 1 << 1
	// mpCPUSignature and mpCPUFeatures describe a generic family-6 CPU
	// with an FPU and a local APIC (§4.3.1, Table 4-5); Linux reads the
	// real values from CPUID.
	mpCPUSignature = 0x600
	mpCPUFeatures  = 1<<0 | 1<<9

	// Interrupt flags (§4.3.4, Table 4-10): polarity bits 1:0, trigger
	// bits 3:2; 0 means "conforms to the bus" (ISA: edge, active high).
	mpFlagsConform  = 0
	mpFlagsEdgeHigh = 1 | 1<<2

	localAPICVersion = 0x14
	ioapicVersion    = 0x11
	localAPICAddr    = 0xfee00000
	// IOAPICAddr is where the in-kernel IOAPIC sits (KVM's default).
	IOAPICAddr = 0xfec00000
	// IOAPICPins is the number of IOAPIC inputs; ISA IRQ n is routed to
	// pin n for n below IOAPICPins.
	IOAPICPins = 24
	// mpLocalInts: ExtINT on LINT0, NMI on LINT1.
	mpLocalInts = 2
	// MaxCPUs is the most vCPUs the MP table describes: APIC IDs are 8
	// bits, 0xff is broadcast, and the IOAPIC takes the ID after the CPUs.
	MaxCPUs = 254
)

// WriteMPTable writes an MP floating pointer at MPTableAddr and the MP
// configuration table right after it for cpus processors (APIC IDs 0 to
// cpus-1, CPU 0 the bootstrap processor), one ISA bus and one IOAPIC (ID
// cpus) at IOAPICAddr.
//
// IRQs 0-15 are ISA interrupts with the bus's default (edge, active high).
// IRQs 16-23, for virtio-mmio devices, are declared edge-triggered and
// active high too: the devices signal through irqfd without a resample fd,
// which is a pulse, and a level-triggered pin would drop a pulse that
// arrives while the previous one is unacknowledged. Each IRQ goes to the
// IOAPIC pin of the same number.
func WriteMPTable(low []byte, cpus int) error {
	if cpus < 1 || cpus > MaxCPUs {
		return fmt.Errorf("MP table: %d vCPUs; the MP table describes 1 to %d", cpus, MaxCPUs)
	}
	entries := cpus + 1 + 1 + IOAPICPins + mpLocalInts
	tableLen := mpHeaderSize + cpus*mpProcessorSize + (entries-cpus)*mpEntrySize
	total := uint64(mpFloatSize + tableLen)
	if MPTableAddr+total > HighMemStart {
		return fmt.Errorf("MP table for %d vCPUs ends at %#x, above 1 MiB", cpus, MPTableAddr+total)
	}
	b, err := guestMem(low).region(MPTableAddr, total, "MP table")
	if err != nil {
		return fmt.Errorf("MP table: %w", err)
	}
	clear(b)

	fp, t := b[:mpFloatSize], b[mpFloatSize:]
	copy(fp[0:], "_MP_")
	le.PutUint32(fp[4:], MPTableAddr+mpFloatSize)
	fp[8] = 1 // length in 16-byte units
	fp[9] = mpSpecRev
	// Feature bytes stay 0: a configuration table is present and the
	// IMCR is absent (virtual wire mode).
	fp[10] = checksum(fp)

	copy(t[0:], "PCMP")
	le.PutUint16(t[4:], uint16(tableLen))
	t[6] = mpSpecRev
	copy(t[8:16], "SIETCH  ")
	copy(t[16:28], "SIETCH VM   ")
	le.PutUint16(t[34:], uint16(entries))
	le.PutUint32(t[36:], localAPICAddr)

	e := t[mpHeaderSize:]
	for i := range cpus {
		e[0] = mpTypeProcessor
		e[1] = byte(i)
		e[2] = localAPICVersion
		e[3] = mpCPUEnabled
		if i == 0 {
			e[3] |= mpCPUBSP
		}
		le.PutUint32(e[4:], mpCPUSignature)
		le.PutUint32(e[8:], mpCPUFeatures)
		e = e[mpProcessorSize:]
	}
	const isaBus = 0
	e[0], e[1] = mpTypeBus, isaBus
	copy(e[2:8], "ISA   ")
	e = e[mpEntrySize:]

	ioapicID := byte(cpus)
	e[0], e[1], e[2], e[3] = mpTypeIOAPIC, ioapicID, ioapicVersion, mpCPUEnabled
	le.PutUint32(e[4:], IOAPICAddr)
	e = e[mpEntrySize:]

	for irq := range IOAPICPins {
		flags := uint16(mpFlagsConform)
		if irq >= 16 {
			flags = mpFlagsEdgeHigh
		}
		e[0], e[1] = mpTypeIOInt, mpIntINT
		le.PutUint16(e[2:], flags)
		e[4], e[5], e[6], e[7] = isaBus, byte(irq), ioapicID, byte(irq)
		e = e[mpEntrySize:]
	}
	for lint, typ := range []byte{mpIntExtINT, mpIntNMI} {
		e[0], e[1] = mpTypeLocalInt, typ
		e[4], e[5], e[6], e[7] = isaBus, 0, 0xff, byte(lint) // 0xff: every local APIC
		e = e[mpEntrySize:]
	}
	t[7] = checksum(t[:tableLen])
	return nil
}

// checksum is the byte that makes b sum to zero (MP spec §4.1, §4.2).
func checksum(b []byte) byte {
	var s byte
	for _, c := range b {
		s += c
	}
	return -s
}
