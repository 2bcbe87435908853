package snapshot

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"testing"

	"github.com/sietch-vm/sietch/kvm"
)

// seedState is a small valid state without KVM, for fuzz seeds.
func seedState() *State {
	return &State{
		Version: FormatVersion,
		Machine: Machine{MemSize: 1 << 20, CPUs: 1, Cmdline: "console=ttyS0"},
		VCPUs:   []VCPU{{ID: 0, TSCKHz: 2000000, CPUID: make([]kvmCPUIDEntry, 1)}},
		VM:      VM{PICSlave: chip(1), IOAPIC: chip(2)},
		Memory:  Memory{File: "memory", Size: 1 << 20, Kind: KindFull, Regions: []Region{{Size: 1 << 20}}},
	}
}

// FuzzRead feeds arbitrary state files to the decoder: it must refuse or
// accept, never panic, and whatever it accepts must write back.
func FuzzRead(f *testing.F) {
	p, err := json.Marshal(seedState())
	if err != nil {
		f.Fatal(err)
	}
	good := frame(p)
	f.Add(good)
	f.Add(good[:headerSize])
	f.Add(good[:len(good)-3])
	f.Add([]byte("SIETCHSN"))
	f.Add([]byte{})
	bad := bytes.Clone(good)
	binary.LittleEndian.PutUint32(bad[8:], 7)
	f.Add(bad)
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := decode(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		if err := validate(s); err != nil {
			t.Fatalf("decode accepted a state validate refuses: %v", err)
		}
	})
}

// FuzzPayload frames arbitrary payloads with a correct checksum, so that the
// fuzzer reaches the JSON decoder and the consistency checks.
func FuzzPayload(f *testing.F) {
	p, err := json.Marshal(seedState())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(p)
	f.Add([]byte(`{"Version":1,"VCPUs":[{"LAPIC":"AAAA"}]}`))
	f.Add([]byte(`{"Version":1,"Memory":{"DirtyPages":"AAAAAAAAAAA="}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		data := frame(payload)
		s, err := decode(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		out, err := json.Marshal(s)
		if err != nil {
			t.Fatalf("accepted state does not encode: %v", err)
		}
		if _, err := decode(bytes.NewReader(frame(out)), int64(len(out)+headerSize)); err != nil {
			t.Fatalf("accepted state does not read back: %v", err)
		}
	})
}

type kvmCPUIDEntry = kvm.CPUIDEntry2

func chip(id uint32) kvm.IRQChip { return kvm.IRQChip{ChipID: id} }
