package blk

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sietch-vm/sietch/virtio"
	"github.com/sietch-vm/sietch/virtio/virtiotest"
)

const diskSectors = 2048 // 1 MiB test disks

// newDisk creates a disk image of n bytes filled by fill (nil: zeros).
func newDisk(t testing.TB, n int, fill func([]byte)) string {
	t.Helper()
	b := make([]byte, n)
	if fill != nil {
		fill(b)
	}
	path := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func openDisk(t testing.TB, path string, readOnly bool) *os.File {
	t.Helper()
	flag := os.O_RDWR
	if readOnly {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// start serves a fresh disk of diskSectors sectors through the harness.
func start(t testing.TB, o Options, ho virtiotest.Options, fill func([]byte)) (*virtiotest.Harness, *Device, string) {
	t.Helper()
	path := newDisk(t, diskSectors*SectorSize, fill)
	d, err := New(openDisk(t, path, o.ReadOnly), o)
	if err != nil {
		t.Fatal(err)
	}
	return virtiotest.Start(t, d, ho), d, path
}

func hdr(typ uint32, sector uint64) []byte {
	b := make([]byte, headerSize)
	binary.LittleEndian.PutUint32(b, typ)
	binary.LittleEndian.PutUint64(b[8:], sector)
	return b
}

func seg(sector uint64, n, flags uint32) []byte {
	b := make([]byte, segmentSize)
	binary.LittleEndian.PutUint64(b, sector)
	binary.LittleEndian.PutUint32(b[8:], n)
	binary.LittleEndian.PutUint32(b[12:], flags)
	return b
}

// status is the last byte the device could write: the status.
func status(u virtiotest.Used) byte {
	last := u.In[len(u.In)-1]
	return last[len(last)-1]
}

func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func fileAt(t testing.TB, path string, off, n int) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b[off : off+n]
}

func write(t *testing.T, q *virtiotest.Queue, sector uint64, data []byte) byte {
	t.Helper()
	u := q.Do(virtiotest.Out(hdr(TypeOut, sector)), virtiotest.Out(data), virtiotest.In(1))
	if u.Len != 1 {
		t.Errorf("write: used len %d, want 1", u.Len)
	}
	return status(u)
}

func read(t *testing.T, q *virtiotest.Queue, sector uint64, n int) ([]byte, byte) {
	t.Helper()
	u := q.Do(virtiotest.Out(hdr(TypeIn, sector)), virtiotest.In(n), virtiotest.In(1))
	if status(u) == StatusOK && u.Len != uint32(n+1) {
		t.Errorf("read: used len %d, want %d", u.Len, n+1)
	}
	return u.In[0], status(u)
}

func TestConfigSpace(t *testing.T) {
	for _, ro := range []bool{false, true} {
		h, d, _ := start(t, Options{ReadOnly: ro}, virtiotest.Options{}, nil)
		cfg := h.Config(0, configSize)
		le := binary.LittleEndian
		want := map[string][2]uint64{ // field: offset, value
			"capacity":                 {0, diskSectors},
			"seg_max":                  {12, segMax},
			"blk_size":                 {20, 512},
			"max_discard_sectors":      {36, maxDiscardSectors},
			"max_discard_seg":          {40, maxDiscardSeg},
			"discard_sector_alignment": {44, discardAlignment},
			"max_write_zeroes_sectors": {48, maxWriteZeroesSectors},
			"max_write_zeroes_seg":     {52, maxWriteZeroesSeg},
		}
		for name, fv := range want {
			var got uint64
			if fv[0] == 0 {
				got = le.Uint64(cfg[0:])
			} else {
				got = uint64(le.Uint32(cfg[fv[0]:]))
			}
			if ro && fv[0] >= 36 {
				fv[1] = 0 // no discard/write zeroes on a read-only disk
			}
			if got != fv[1] {
				t.Errorf("read-only %v: config %s at %d = %d, want %d", ro, name, fv[0], got, fv[1])
			}
		}
		if got, want := cfg[56] == 1, !ro; got != want {
			t.Errorf("read-only %v: write_zeroes_may_unmap = %d", ro, cfg[56])
		}
		f := h.Features()
		if (f&FeatureRO != 0) != ro || (f&FeatureDiscard != 0) == ro || f&FeatureFlush == 0 ||
			f&virtio.FeatureEventIdx == 0 || f&virtio.FeatureIndirectDesc == 0 || f&FeatureSegMax == 0 || f&FeatureBlkSize == 0 {
			t.Errorf("read-only %v: negotiated features %#x", ro, f)
		}
		if err := h.Frontend().SetConfig(32, []byte{1}); err == nil {
			t.Errorf("writeback config write accepted without CONFIG_WCE")
		}
		if d.Capacity() != diskSectors {
			t.Errorf("Capacity = %d", d.Capacity())
		}
	}
}

func TestReadWriteRoundTrip(t *testing.T) {
	for _, tt := range []struct {
		name string
		ho   virtiotest.Options
	}{
		{"event idx", virtiotest.Options{}},
		{"no event idx", virtiotest.Options{Features: ^uint64(0) &^ virtio.FeatureEventIdx}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h, _, path := start(t, Options{}, tt.ho, nil)
			q := h.Queue(0)
			data := randBytes(1, 64<<10)
			// Data in three buffers of odd sizes summing to whole sectors.
			u := q.Do(virtiotest.Out(hdr(TypeOut, 8)), virtiotest.Out(data[:1000]),
				virtiotest.Out(data[1000:40000]), virtiotest.Out(data[40000:]), virtiotest.In(1))
			if status(u) != StatusOK {
				t.Fatalf("write status %d", status(u))
			}
			if got := fileAt(t, path, 8*512, len(data)); sha256.Sum256(got) != sha256.Sum256(data) {
				t.Fatal("file content differs from what was written")
			}
			// Read back with header and data framed differently (§2.6.4):
			// the status byte shares the last data buffer.
			u = q.Do(virtiotest.Out(hdr(TypeIn, 8)), virtiotest.In(333), virtiotest.In(len(data)-333+1))
			got := u.Data()
			if status(u) != StatusOK || u.Len != uint32(len(data)+1) || !bytes.Equal(got[:len(data)], data) {
				t.Fatalf("read back: status %d, len %d, equal %v", status(u), u.Len, bytes.Equal(got[:len(data)], data))
			}
			// Header and data in one readable buffer; indirect chain.
			more := randBytes(2, 4096)
			head := q.PostIndirect(virtiotest.Out(append(hdr(TypeOut, 2040), more...)), virtiotest.In(1))
			q.Kick()
			if u := q.WaitUsed(); u.Head != head || status(u) != StatusOK {
				t.Fatalf("indirect write: %+v", u)
			}
			if got, st := read(t, q, 2040, 4096); st != StatusOK || !bytes.Equal(got, more) {
				t.Fatalf("read of the last sectors: status %d", st)
			}
			if !bytes.Equal(fileAt(t, path, 2040*512, 4096), more) {
				t.Fatal("last sectors in the file differ")
			}
		})
	}
}

func TestFlush(t *testing.T) {
	for _, tt := range []struct {
		name string
		mask uint64
	}{
		{"flush acked", ^uint64(0)},
		{"write-through without FLUSH", ^uint64(FeatureFlush)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h, _, path := start(t, Options{}, virtiotest.Options{Features: tt.mask}, nil)
			q := h.Queue(0)
			data := randBytes(3, 8192)
			if st := write(t, q, 100, data); st != StatusOK {
				t.Fatalf("write status %d", st)
			}
			u := q.Do(virtiotest.Out(hdr(TypeFlush, 0)), virtiotest.In(1))
			if status(u) != StatusOK || u.Len != 1 {
				t.Fatalf("flush: status %d, len %d", status(u), u.Len)
			}
			if !bytes.Equal(fileAt(t, path, 100*512, len(data)), data) {
				t.Fatal("flushed data is not in the file")
			}
		})
	}
}

func TestGetID(t *testing.T) {
	for _, id := range []string{"sietch-disk-0", "exactly-twenty-bytes", ""} {
		h, _, _ := start(t, Options{ID: id}, virtiotest.Options{}, nil)
		u := h.Queue(0).Do(virtiotest.Out(hdr(TypeGetID, 0)), virtiotest.In(IDBytes), virtiotest.In(1))
		want := make([]byte, IDBytes)
		copy(want, id)
		if status(u) != StatusOK || u.Len != IDBytes+1 || !bytes.Equal(u.In[0], want) {
			t.Errorf("GET_ID for %q: status %d, len %d, id %q", id, status(u), u.Len, u.In[0])
		}
	}
}

func TestDiscardAndWriteZeroes(t *testing.T) {
	ones := func(b []byte) {
		for i := range b {
			b[i] = 0xff
		}
	}
	h, _, path := start(t, Options{}, virtiotest.Options{}, ones)
	q := h.Queue(0)
	zero := make([]byte, 16*512)
	tests := []struct {
		name   string
		typ    uint32
		segs   [][]byte
		status byte
		zeroed [][2]int // sector ranges that must read zero
	}{
		{"discard", TypeDiscard, [][]byte{seg(16, 16, 0)}, StatusOK, [][2]int{{16, 16}}},
		{"write zeroes", TypeWriteZeroes, [][]byte{seg(64, 8, 0), seg(100, 3, 0)}, StatusOK, [][2]int{{64, 8}, {100, 3}}},
		{"write zeroes with unmap", TypeWriteZeroes, [][]byte{seg(200, 16, flagUnmap)}, StatusOK, [][2]int{{200, 16}}},
		{"discard with unmap", TypeDiscard, [][]byte{seg(300, 8, flagUnmap)}, StatusUnsupp, nil},
		{"unknown flag", TypeWriteZeroes, [][]byte{seg(300, 8, 4)}, StatusUnsupp, nil},
		{"beyond the disk", TypeWriteZeroes, [][]byte{seg(300, 8, 0), seg(diskSectors-1, 2, 0)}, StatusIOErr, nil},
		{"overflowing sector", TypeDiscard, [][]byte{seg(math.MaxUint64, 2, 0)}, StatusIOErr, nil},
		{"too many sectors", TypeDiscard, [][]byte{seg(0, maxDiscardSectors+1, 0)}, StatusIOErr, nil},
		{"partial segment", TypeDiscard, [][]byte{seg(300, 8, 0)[:10]}, StatusIOErr, nil},
		{"no segment", TypeDiscard, nil, StatusIOErr, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bufs := []virtiotest.Buf{virtiotest.Out(hdr(tt.typ, 0))}
			for _, s := range tt.segs {
				bufs = append(bufs, virtiotest.Out(s))
			}
			u := q.Do(append(bufs, virtiotest.In(1))...)
			if status(u) != tt.status {
				t.Fatalf("status %d, want %d", status(u), tt.status)
			}
			for _, r := range tt.zeroed {
				got, st := read(t, q, uint64(r[0]), r[1]*512)
				if st != StatusOK || !bytes.Equal(got, zero[:r[1]*512]) {
					t.Fatalf("sectors %d+%d do not read zero (status %d)", r[0], r[1], st)
				}
				if !bytes.Equal(fileAt(t, path, r[0]*512, r[1]*512), zero[:r[1]*512]) {
					t.Fatalf("sectors %d+%d are not zero in the file", r[0], r[1])
				}
			}
		})
	}
	// Nothing else changed: failed requests did not touch sector 300+, and
	// the file kept its size.
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != diskSectors*512 {
		t.Fatalf("disk is %d bytes after discards, want %d", len(b), diskSectors*512)
	}
	for i := 300 * 512; i < 308*512; i++ {
		if b[i] != 0xff {
			t.Fatalf("byte %d changed by a failed request", i)
		}
	}
}

func TestReadOnly(t *testing.T) {
	fill := func(b []byte) { copy(b, randBytes(4, len(b))) }
	h, _, path := start(t, Options{ReadOnly: true}, virtiotest.Options{}, fill)
	before, _ := os.ReadFile(path)
	q := h.Queue(0)
	if st := write(t, q, 0, make([]byte, 512)); st != StatusIOErr {
		t.Errorf("write to a read-only disk: status %d, want IOERR", st)
	}
	for _, typ := range []uint32{TypeDiscard, TypeWriteZeroes} {
		u := q.Do(virtiotest.Out(hdr(typ, 0)), virtiotest.Out(seg(0, 8, 0)), virtiotest.In(1))
		if status(u) != StatusIOErr {
			t.Errorf("request type %d on a read-only disk: status %d, want IOERR", typ, status(u))
		}
	}
	if got, st := read(t, q, 4, 1024); st != StatusOK || !bytes.Equal(got, before[4*512:5*512+512]) {
		t.Errorf("read from a read-only disk: status %d", st)
	}
	if u := q.Do(virtiotest.Out(hdr(TypeFlush, 0)), virtiotest.In(1)); status(u) != StatusOK {
		t.Errorf("flush on a read-only disk: status %d", status(u))
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Error("read-only disk file changed")
	}
}

func TestOutOfRangeAndBadLengths(t *testing.T) {
	h, _, path := start(t, Options{}, virtiotest.Options{}, nil)
	q := h.Queue(0)
	tests := []struct {
		name   string
		typ    uint32
		sector uint64
		n      int
		status byte
	}{
		{"read last sector", TypeIn, diskSectors - 1, 512, StatusOK},
		{"read empty at the end", TypeIn, diskSectors, 0, StatusOK},
		{"read past the end", TypeIn, diskSectors - 1, 1024, StatusIOErr},
		{"read at capacity", TypeIn, diskSectors, 512, StatusIOErr},
		{"read at a huge sector", TypeIn, 1 << 62, 512, StatusIOErr},
		{"read at max sector", TypeIn, math.MaxUint64, 512, StatusIOErr},
		{"read partial sector", TypeIn, 0, 100, StatusIOErr},
		{"write past the end", TypeOut, diskSectors - 1, 1024, StatusIOErr},
		{"write at an overflowing sector", TypeOut, math.MaxUint64 / 512, 1024, StatusIOErr},
		{"write partial sector", TypeOut, 0, 513, StatusIOErr},
		{"unknown type", 99, 0, 0, StatusUnsupp},
		{"get lifetime (not offered)", 10, 0, 0, StatusUnsupp},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bufs := []virtiotest.Buf{virtiotest.Out(hdr(tt.typ, tt.sector))}
			switch {
			case tt.typ == TypeOut:
				bufs = append(bufs, virtiotest.Out(bytes.Repeat([]byte{7}, tt.n)))
			case tt.n > 0:
				bufs = append(bufs, virtiotest.In(tt.n))
			}
			u := q.Do(append(bufs, virtiotest.In(1))...)
			if status(u) != tt.status {
				t.Fatalf("status %d, want %d", status(u), tt.status)
			}
		})
	}
	if b, _ := os.ReadFile(path); bytes.IndexByte(b, 7) >= 0 || len(b) != diskSectors*512 {
		t.Fatal("a refused write touched the file")
	}
}

func TestMalformedChains(t *testing.T) {
	h, _, _ := start(t, Options{}, virtiotest.Options{}, nil)
	q := h.Queue(0)
	tests := []struct {
		name string
		post func() uint16
	}{
		{"short header", func() uint16 { return q.Post(virtiotest.Out(hdr(TypeIn, 0)[:8]), virtiotest.In(513)) }},
		{"no status byte", func() uint16 { return q.Post(virtiotest.Out(hdr(TypeFlush, 0))) }},
		{"read-only status buffer", func() uint16 {
			return q.Post(virtiotest.Out(hdr(TypeOut, 0)), virtiotest.Out(make([]byte, 512)), virtiotest.Out([]byte{0}))
		}},
		{"buffer outside RAM", func() uint16 {
			return q.PostRaw(virtiotest.RawDesc{Addr: 0x1000, Len: 16, Flags: virtiotest.FlagNext, Next: 1},
				virtiotest.RawDesc{Addr: virtiotest.RAMBase, Len: 1, Flags: virtiotest.FlagWrite})
		}},
		{"descriptor loop", func() uint16 {
			gpa := h.Alloc(16)
			return q.PostRaw(virtiotest.RawDesc{Addr: gpa, Len: 16, Flags: virtiotest.FlagNext, Next: 0})
		}},
		{"nested indirect", func() uint16 {
			inner := q.IndirectTable(virtiotest.RawDesc{Addr: h.Alloc(16), Len: 16})
			return q.PostRaw(q.IndirectTable(inner))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			head := tt.post()
			q.Kick()
			u := q.WaitUsed()
			if u.Head != head || u.Len != 0 {
				t.Fatalf("used %+v, want head %d with len 0", u, head)
			}
			for _, in := range u.In {
				if !bytes.Equal(in, bytes.Repeat([]byte{virtiotest.Poison}, len(in))) {
					t.Fatalf("device wrote into a malformed chain's buffers: % x", in)
				}
			}
			// The device carries on.
			if _, st := read(t, q, 0, 512); st != StatusOK {
				t.Fatalf("read after a malformed chain: status %d", st)
			}
		})
	}
}

func TestConcurrentRequests(t *testing.T) {
	h, _, path := start(t, Options{}, virtiotest.Options{QueueSize: 256, RAM: 32 << 20}, nil)
	q := h.Queue(0)
	const n = 80 // 3 descriptors each: fills most of the ring
	heads := map[uint16]int{}
	for i := range n {
		heads[q.Post(virtiotest.Out(hdr(TypeOut, uint64(i*16))), virtiotest.Out(randBytes(uint64(100+i), 8192)), virtiotest.In(1))] = i
	}
	q.Kick()
	for range n {
		u := q.WaitUsed()
		if _, ok := heads[u.Head]; !ok || status(u) != StatusOK {
			t.Fatalf("used %+v: unknown head or bad status", u)
		}
		delete(heads, u.Head)
	}
	file, _ := os.ReadFile(path)
	for i := range n {
		heads[q.Post(virtiotest.Out(hdr(TypeIn, uint64(i*16))), virtiotest.In(8192), virtiotest.In(1))] = i
	}
	q.Kick()
	for range n {
		u := q.WaitUsed()
		i := heads[u.Head]
		want := randBytes(uint64(100+i), 8192)
		if status(u) != StatusOK || !bytes.Equal(u.In[0], want) || !bytes.Equal(file[i*16*512:i*16*512+8192], want) {
			t.Fatalf("request %d: status %d, data equal %v", i, status(u), bytes.Equal(u.In[0], want))
		}
	}
	// Everything consumed is reported back by GET_VRING_BASE.
	if base := h.GetVringBase(0); base != 2*n {
		t.Fatalf("GetVringBase = %d, want %d", base, 2*n)
	}
	q.Post(virtiotest.Out(hdr(TypeGetID, 0)), virtiotest.In(20), virtiotest.In(1))
	h.SetupQueue(0, 2*n)
	if u := q.WaitUsed(); status(u) != StatusOK {
		t.Fatalf("request after restart: status %d", status(u))
	}
}

func TestNew(t *testing.T) {
	path := newDisk(t, 3*512+100, nil)
	var logBuf bytes.Buffer
	d, err := New(openDisk(t, path, false), Options{Log: slog.New(slog.NewTextHandler(&logBuf, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if d.Capacity() != 3 || !strings.Contains(logBuf.String(), "not a multiple of 512") {
		t.Errorf("capacity %d, log %q: want 3 sectors and a warning about the tail", d.Capacity(), logBuf.String())
	}
	if _, err := New(openDisk(t, path, true), Options{}); err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Errorf("read-only file for a writable disk: err = %v", err)
	}
	if _, err := New(openDisk(t, path, false), Options{ID: strings.Repeat("x", 21)}); err == nil {
		t.Error("21-byte ID accepted")
	}
	dir, err := os.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	if _, err := New(dir, Options{ReadOnly: true}); err == nil {
		t.Error("a directory accepted as a disk")
	}
	if _, err := New(nil, Options{}); err == nil {
		t.Error("nil disk accepted")
	}
}
