package virtio

import (
	"encoding/binary"
	"fmt"
	"testing"
)

// testMem is guest RAM [base, base+len(b)) in a byte slice.
type testMem struct {
	base uint64
	b    []byte
}

func (m *testMem) Slice(gpa, n uint64) ([]byte, error) {
	if gpa < m.base || gpa-m.base > uint64(len(m.b)) || n > uint64(len(m.b))-(gpa-m.base) {
		return nil, fmt.Errorf("guest range [%#x, +%#x) is not RAM", gpa, n)
	}
	off := gpa - m.base
	return m.b[off : off+n : off+n], nil
}

// inRAM reports whether [gpa, gpa+n) is inside m.
func (m *testMem) inRAM(gpa, n uint64) bool {
	_, err := m.Slice(gpa, n)
	return err == nil
}

// Test layout: RAM at testBase; rings at fixed places, buffers above.
const (
	testBase  = 0x10000
	testDesc  = testBase
	testAvail = testBase + 0x1000
	testUsed  = testBase + 0x2000
	testBufs  = testBase + 0x4000
	testRAM   = 0x10000
)

// testDriver plays the guest driver of one split virtqueue.
type testDriver struct {
	t    testing.TB
	mem  *testMem
	cfg  QueueConfig
	idx  uint16 // avail->idx the driver has published
	q    *Queue
	next uint64 // next free buffer address
}

func newTestDriver(t testing.TB, size uint16, eventIdx bool) *testDriver {
	t.Helper()
	mem := &testMem{base: testBase, b: make([]byte, testRAM)}
	cfg := QueueConfig{Index: 3, Size: size, Desc: testDesc, Avail: testAvail, Used: testUsed, EventIdx: eventIdx}
	q, err := NewQueue(mem, cfg)
	if err != nil {
		t.Fatalf("NewQueue: %v", err)
	}
	return &testDriver{t: t, mem: mem, cfg: cfg, q: q, next: testBufs}
}

func (d *testDriver) at(gpa uint64, n int) []byte {
	b, err := d.mem.Slice(gpa, uint64(n))
	if err != nil {
		d.t.Fatalf("driver: %v", err)
	}
	return b
}

// descAt writes descriptor i of the table at table.
func (d *testDriver) descAt(table uint64, i int, addr uint64, length uint32, flags, next uint16) {
	b := d.at(table+uint64(i)*16, 16)
	binary.LittleEndian.PutUint64(b[0:], addr)
	binary.LittleEndian.PutUint32(b[8:], length)
	binary.LittleEndian.PutUint16(b[12:], flags)
	binary.LittleEndian.PutUint16(b[14:], next)
}

func (d *testDriver) desc(i int, addr uint64, length uint32, flags, next uint16) {
	d.descAt(testDesc, i, addr, length, flags, next)
}

// buf reserves n bytes of buffer space in RAM.
func (d *testDriver) buf(n uint32) uint64 {
	a := d.next
	d.next += uint64(n+15) &^ 15
	return a
}

// publish makes head available and bumps avail->idx.
func (d *testDriver) publish(head uint16) {
	binary.LittleEndian.PutUint16(d.at(testAvail+4+2*uint64(d.idx%d.cfg.Size), 2), head)
	d.idx++
	d.setAvailIdx(d.idx)
}

func (d *testDriver) setAvailIdx(v uint16) {
	binary.LittleEndian.PutUint16(d.at(testAvail+2, 2), v)
}

func (d *testDriver) setAvailFlags(v uint16) {
	binary.LittleEndian.PutUint16(d.at(testAvail, 2), v)
}

func (d *testDriver) setUsedEvent(v uint16) {
	binary.LittleEndian.PutUint16(d.at(testAvail+4+2*uint64(d.cfg.Size), 2), v)
}

func (d *testDriver) usedIdx() uint16 { return binary.LittleEndian.Uint16(d.at(testUsed+2, 2)) }

func (d *testDriver) usedFlags() uint16 { return binary.LittleEndian.Uint16(d.at(testUsed, 2)) }

func (d *testDriver) availEvent() uint16 {
	return binary.LittleEndian.Uint16(d.at(testUsed+4+8*uint64(d.cfg.Size), 2))
}

func (d *testDriver) usedElem(slot uint16) (id, length uint32) {
	b := d.at(testUsed+4+8*uint64(slot%d.cfg.Size), 8)
	return binary.LittleEndian.Uint32(b[0:]), binary.LittleEndian.Uint32(b[4:])
}
