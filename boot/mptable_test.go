package boot

import (
	"bytes"
	"testing"
)

func sum(b []byte) byte {
	var s byte
	for _, c := range b {
		s += c
	}
	return s
}

func TestWriteMPTable(t *testing.T) {
	for _, cpus := range []int{1, 2, 8, MaxCPUs} {
		low := make([]byte, 2*mib)
		if err := WriteMPTable(low, cpus); err != nil {
			t.Fatalf("%d CPUs: %v", cpus, err)
		}
		fp := low[MPTableAddr : MPTableAddr+16]
		if string(fp[:4]) != "_MP_" || sum(fp) != 0 || fp[8] != 1 || fp[9] != 4 || fp[11] != 0 {
			t.Fatalf("%d CPUs: bad floating pointer % x", cpus, fp)
		}
		if MPTableAddr%16 != 0 {
			t.Fatal("floating pointer is not 16-byte aligned")
		}
		ct := low[u32(fp, 4):]
		n := u16(ct, 4)
		if string(ct[:4]) != "PCMP" || ct[6] != 4 || sum(ct[:n]) != 0 || u32(ct, 36) != 0xfee00000 || u16(ct, 40) != 0 {
			t.Fatalf("%d CPUs: bad configuration table header % x", cpus, ct[:44])
		}

		// Walk the entries as Linux's mpparse does.
		counts := map[byte]int{}
		var ioapicID byte
		var ioIRQs []byte
		off := 44
		for range u16(ct, 34) {
			e := ct[off:]
			counts[e[0]]++
			switch e[0] {
			case mpTypeProcessor:
				id := int(e[1])
				if id != counts[0]-1 || e[2] != 0x14 || e[3]&1 == 0 || (e[3]&2 != 0) != (id == 0) {
					t.Errorf("%d CPUs: processor entry % x", cpus, e[:20])
				}
				off += 20
				continue
			case mpTypeBus:
				if string(e[2:8]) != "ISA   " {
					t.Errorf("bus entry % x", e[:8])
				}
			case mpTypeIOAPIC:
				ioapicID = e[1]
				if e[1] != byte(cpus) || e[2] != 0x11 || e[3] != 1 || u32(e, 4) != IOAPICAddr {
					t.Errorf("IOAPIC entry % x", e[:8])
				}
			case mpTypeIOInt:
				irq := e[5]
				ioIRQs = append(ioIRQs, irq)
				wantFlags := uint16(0)
				if irq >= 16 {
					wantFlags = 0x5 // edge, active high
				}
				if e[1] != mpIntINT || u16(e, 2) != wantFlags || e[4] != 0 || e[6] != byte(cpus) || e[7] != irq {
					t.Errorf("I/O interrupt entry % x", e[:8])
				}
			case mpTypeLocalInt:
				want := map[byte]byte{0: mpIntExtINT, 1: mpIntNMI}[e[7]]
				if e[1] != want || e[6] != 0xff {
					t.Errorf("local interrupt entry % x", e[:8])
				}
			default:
				t.Fatalf("unknown entry type %d at %d", e[0], off)
			}
			off += 8
		}
		if off != int(n) {
			t.Errorf("%d CPUs: entries end at %d, table length %d", cpus, off, n)
		}
		if counts[0] != cpus || counts[1] != 1 || counts[2] != 1 || counts[3] != 24 || counts[4] != 2 {
			t.Errorf("%d CPUs: entry counts %v", cpus, counts)
		}
		if ioapicID != byte(cpus) {
			t.Errorf("IOAPIC id %d", ioapicID)
		}
		if !bytes.Equal(ioIRQs, []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23}) {
			t.Errorf("IRQs routed: %v", ioIRQs)
		}
		if end := MPTableAddr + 16 + int(n); end > HighMemStart {
			t.Errorf("%d CPUs: table ends at %#x", cpus, end)
		}
	}
}

func TestWriteMPTableRejects(t *testing.T) {
	for _, tt := range []struct {
		name string
		size int
		cpus int
	}{
		{"no CPUs", 2 * mib, 0},
		{"negative", 2 * mib, -1},
		{"255 CPUs", 2 * mib, 255},
		{"memory ends before the EBDA", 0x9f000, 1},
		{"memory ends inside the table", MPTableAddr + 40, 1},
		{"too small for 254 CPUs", MPTableAddr + 1024, MaxCPUs},
	} {
		if err := WriteMPTable(make([]byte, tt.size), tt.cpus); err == nil {
			t.Errorf("%s: no error", tt.name)
		}
	}
}
