package blk

import (
	"math/rand/v2"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sietch-vm/sietch/virtio/virtiotest"
)

// Benchmarks: the device through a full vhost-user session against the
// host's own pread/pwrite of the same (page-cached) file. Run with
//
//	go test -run '^$' -bench . ./virtio/blk
//
// MB/s comes from SetBytes; iops is reported as a metric.

const benchDisk = 64 << 20

type benchCase struct {
	name  string
	write bool
	size  int
	rand  bool
}

var benchCases = []benchCase{
	{"seq-read-1MiB", false, 1 << 20, false},
	{"seq-write-1MiB", true, 1 << 20, false},
	{"rand-read-4KiB", false, 4 << 10, true},
	{"rand-write-4KiB", true, 4 << 10, true},
}

// offsets yields the byte offset of each operation.
func offsets(c benchCase) func() int64 {
	r := rand.New(rand.NewPCG(7, 7))
	next := int64(0)
	return func() int64 {
		if c.rand {
			return r.Int64N(benchDisk/int64(c.size)) * int64(c.size)
		}
		off := next
		next = (next + int64(c.size)) % benchDisk
		return off
	}
}

// benchFile creates the disk once per BenchmarkBlk run and makes it
// durable, so that writeback of its creation does not disturb the runs.
func benchFile(b *testing.B) string {
	path := newDisk(b, benchDisk, func(p []byte) {
		for i := 0; i < len(p); i += 4096 {
			p[i] = byte(i >> 12) // not sparse: every page is in the page cache
		}
	})
	f := openDisk(b, path, false)
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	return path
}

func BenchmarkBlk(b *testing.B) {
	path := benchFile(b)
	for _, c := range benchCases {
		b.Run(c.name+"/host", func(b *testing.B) { benchHost(b, path, c) })
		for _, depth := range []int{1, 16} {
			b.Run(c.name+"/virtio-qd"+map[int]string{1: "1", 16: "16"}[depth], func(b *testing.B) { benchVirtio(b, path, c, depth) })
		}
	}
}

func benchHost(b *testing.B, path string, c benchCase) {
	f := openDisk(b, path, false)
	fd := int(f.Fd())
	buf := make([]byte, c.size)
	next := offsets(c)
	b.SetBytes(int64(c.size))
	b.ResetTimer()
	for b.Loop() {
		var err error
		if c.write {
			_, err = unix.Pwrite(fd, buf, next())
		} else {
			_, err = unix.Pread(fd, buf, next())
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "iops")
}

func benchVirtio(b *testing.B, path string, c benchCase, depth int) {
	f := openDisk(b, path, false)
	d, err := New(f, Options{})
	if err != nil {
		b.Fatal(err)
	}
	h := virtiotest.Start(b, d, virtiotest.Options{RAM: 64 << 20, Bench: true})
	q := h.Queue(0)
	// Each slot has its own data and status buffers in guest RAM; the
	// header is copied in per request, as small as a real driver's.
	type slot struct{ data, status uint64 }
	slots := make([]slot, depth)
	for i := range slots {
		slots[i] = slot{h.Alloc(c.size), h.Alloc(1)}
	}
	bySlot := map[uint16]int{}
	next := offsets(c)
	typ := uint32(TypeIn)
	if c.write {
		typ = TypeOut
	}
	post := func(i int) {
		s := slots[i]
		head := q.Post(virtiotest.Out(hdr(typ, uint64(next()/SectorSize))),
			virtiotest.At(s.data, c.size, !c.write), virtiotest.At(s.status, 1, true))
		bySlot[head] = i
	}
	for i := range depth {
		post(i)
	}
	q.Kick()
	b.SetBytes(int64(c.size))
	b.ResetTimer()
	for b.Loop() {
		u := q.WaitUsed()
		i := bySlot[u.Head]
		if st := h.Bytes(slots[i].status, 1)[0]; st != StatusOK {
			b.Fatalf("status %d", st)
		}
		post(i)
		q.Kick()
	}
	b.StopTimer()
	for q.InFlight() > 0 {
		q.WaitUsed()
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "iops")
}
