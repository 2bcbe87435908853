package virtio

import (
	"encoding/binary"
	"errors"
	"testing"
)

// Fuzz layout: 4 KiB of RAM holding rings of up to 64 entries and buffers.
const (
	fuzzDesc  = testBase
	fuzzAvail = testBase + 0x400
	fuzzUsed  = testBase + 0x600
	fuzzBufs  = testBase + 0x900
	fuzzRAM   = 0x1000
)

// FuzzQueuePop lets the fuzzer write all of guest RAM (rings, descriptors,
// indirect tables) and the device's position; Pop must never panic or hang,
// and every buffer it returns must be guest RAM.
func FuzzQueuePop(f *testing.F) {
	// Seeds (size 8): a valid two-descriptor chain, an indirect chain, a loop.
	seed := func(heads []uint16, descs ...[5]uint64) []byte {
		ram := make([]byte, fuzzRAM)
		for _, d := range descs { // table gpa, index, addr, len, flags<<16|next
			b := ram[d[0]-testBase+16*d[1]:]
			binary.LittleEndian.PutUint64(b[0:], d[2])
			binary.LittleEndian.PutUint32(b[8:], uint32(d[3]))
			binary.LittleEndian.PutUint16(b[12:], uint16(d[4]>>16))
			binary.LittleEndian.PutUint16(b[14:], uint16(d[4]))
		}
		for i, h := range heads {
			binary.LittleEndian.PutUint16(ram[fuzzAvail-testBase+4+2*i:], h)
		}
		binary.LittleEndian.PutUint16(ram[fuzzAvail-testBase+2:], uint16(len(heads)))
		return append([]byte{3, 0, 0}, ram...)
	}
	f.Add(seed([]uint16{0},
		[5]uint64{fuzzDesc, 0, fuzzBufs, 16, descFNext<<16 | 1},
		[5]uint64{fuzzDesc, 1, fuzzBufs + 16, 16, descFWrite << 16}))
	f.Add(seed([]uint16{2, 2},
		[5]uint64{fuzzBufs, 0, fuzzBufs + 0x100, 8, descFNext<<16 | 1},
		[5]uint64{fuzzBufs, 1, fuzzBufs + 0x200, 8, descFWrite << 16},
		[5]uint64{fuzzDesc, 2, fuzzBufs, 32, descFIndirect << 16}))
	f.Add(seed([]uint16{0}, [5]uint64{fuzzDesc, 0, fuzzBufs, 1, descFNext << 16}))
	f.Add([]byte{0xff, 0xff, 0xff})

	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 3 {
			return
		}
		size := uint16(1) << (data[0] % 7) // 1..64: fits the layout
		eventIdx := data[0]&0x80 != 0
		start := binary.LittleEndian.Uint16(data[1:])
		mem := &testMem{base: testBase, b: make([]byte, fuzzRAM)}
		copy(mem.b, data[3:])
		q, err := NewQueue(mem, QueueConfig{Size: size, Desc: fuzzDesc, Avail: fuzzAvail, Used: fuzzUsed, EventIdx: eventIdx})
		if err != nil {
			t.Fatalf("NewQueue: %v", err)
		}
		q.SetState(QueueState{NextAvail: start, NextUsed: start})
		for range int(size) + 2 {
			c, ok, err := q.Pop()
			var ce *ChainError
			switch {
			case errors.As(err, &ce):
				if ce.Head < size {
					if err := q.Push(ce.Head, 0); err != nil {
						t.Fatalf("Push after ChainError: %v", err)
					}
				}
				continue
			case err != nil:
				if !errors.Is(err, ErrRingBroken) {
					t.Fatalf("Pop: unexpected error %v", err)
				}
			case ok:
				if c.Head >= size || len(c.Descs) == 0 || len(c.Descs) > 2*int(size) {
					t.Fatalf("Pop returned head %d with %d descriptors (size %d)", c.Head, len(c.Descs), size)
				}
				seenWrite := false
				for _, d := range c.Descs {
					if !mem.inRAM(d.Addr, uint64(d.Len)) {
						t.Fatalf("Pop returned %+v outside RAM", d)
					}
					if seenWrite && !d.Write {
						t.Fatalf("readable descriptor after writable in %+v", c.Descs)
					}
					seenWrite = seenWrite || d.Write
				}
				if err := q.Push(c.Head, c.Descs[0].Len); err != nil {
					t.Fatalf("Push: %v", err)
				}
				continue
			}
			break
		}
		q.NeedsNotify()
		q.DisableNotify()
		q.EnableNotify()
	})
}

// FuzzMMIO replays random register access sequences: no panic, and the
// transport's invariants hold after every access.
func FuzzMMIO(f *testing.F) {
	// Each access: op (bit 0 write), offset (2 bytes), width code, value (4).
	enc := func(accs ...[3]uint32) []byte {
		var b []byte
		for _, a := range accs {
			b = append(b, byte(a[0]), byte(a[1]), byte(a[1]>>8), 2)
			b = binary.LittleEndian.AppendUint32(b, a[2])
		}
		return b
	}
	const w, r = 1, 0
	f.Add(enc(
		[3]uint32{r, regMagic, 0}, [3]uint32{w, regStatus, 0}, [3]uint32{w, regStatus, 1},
		[3]uint32{w, regStatus, 3}, [3]uint32{w, regDriverFeatSel, 1}, [3]uint32{w, regDriverFeatures, 1},
		[3]uint32{w, regStatus, 0xb}, [3]uint32{w, regQueueSel, 0}, [3]uint32{w, regQueueNum, 16},
		[3]uint32{w, regQueueDescLow, 0x4000}, [3]uint32{w, regQueueAvailLow, 0x5000},
		[3]uint32{w, regQueueUsedLow, 0x6000}, [3]uint32{w, regQueueReady, 1},
		[3]uint32{w, regStatus, 0xf}, [3]uint32{w, regQueueNotify, 0}, [3]uint32{r, regInterruptStatus, 0},
		[3]uint32{w, regInterruptACK, 1}, [3]uint32{w, regStatus, 0},
	))
	f.Add([]byte{1, 0x70, 0, 0, 0xff, 0xff, 0xff, 0xff})

	f.Fuzz(func(t *testing.T, data []byte) {
		m, b, _ := newTestMMIO(t)
		offered := features(m)
		buf := make([]byte, 8)
		for len(data) >= 8 {
			op, off, width := data[0], uint64(binary.LittleEndian.Uint16(data[1:])), []int{1, 2, 4, 8}[data[3]%4]
			copy(buf, data[4:8])
			data = data[8:]
			if op&1 != 0 {
				m.Write(off%0x240, buf[:width])
			} else {
				m.Read(off%0x240, buf[:width])
			}
			s := m.State()
			if s.Status&StatusFeaturesOK != 0 && (s.DriverFeatures&^offered != 0 || s.DriverFeatures&FeatureVersion1 == 0) {
				t.Fatalf("FEATURES_OK with driver features %#x (offered %#x)", s.DriverFeatures, offered)
			}
			if s.Status&StatusDriverOK != 0 && s.Status&StatusFeaturesOK == 0 {
				t.Fatalf("DRIVER_OK without FEATURES_OK: %#x", s.Status)
			}
			for i, q := range s.Queues {
				if q.Num > b.maxSizes[i] || q.Num&(q.Num-1) != 0 || (q.Ready && q.Num == 0) {
					t.Fatalf("queue %d in impossible state %+v", i, q)
				}
			}
			for _, a := range b.activations {
				for _, q := range a.queues {
					if q.Size != 0 && (q.Size > b.maxSizes[q.Index] || q.Size&(q.Size-1) != 0) {
						t.Fatalf("Activate got queue %+v", q)
					}
				}
			}
		}
	})
}
