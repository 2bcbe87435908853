package snapshot

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Benchmarks for the choice of restore mechanism (docs/SNAPSHOTS.md):
//
//	go test ./snapshot -run '^$' -bench . -benchtime 3x
//
// "sparse" guests have 1% of their pages non-zero, "dense" ones all.

var benchSizes = []struct {
	name string
	size uint64
}{{"256MiB", 256 << 20}, {"1GiB", 1 << 30}}

// guestMemory makes a memfd of size bytes with every step-th page non-zero.
func guestMemory(b *testing.B, size uint64, step uint64) *os.File {
	b.Helper()
	f, m := newMemfd(b, size)
	for p := uint64(0); p < size/PageSize; p += step {
		page := m[p*PageSize : (p+1)*PageSize]
		for i := 0; i < PageSize; i += 512 {
			page[i] = byte(p) | 1
		}
	}
	return f
}

var densities = []struct {
	name string
	step uint64
}{{"sparse", 100}, {"dense", 1}}

// BenchmarkWriteFull is full-snapshot time per GiB of guest memory,
// including the fsync.
func BenchmarkWriteFull(b *testing.B) {
	for _, d := range densities {
		b.Run(d.name+"-1GiB", func(b *testing.B) {
			const size = 1 << 30
			mem := guestMemory(b, size, d.step)
			dir := b.TempDir()
			b.SetBytes(size)
			b.ResetTimer()
			for i := range b.N {
				// A new file each time: overwriting one would time the
				// release (and, with -o discard, the discard) of the old
				// file's blocks.
				path := filepath.Join(dir, fmt.Sprint("memory", i))
				if _, err := WriteFull(path, mem, size); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				os.Remove(path)
				b.StartTimer()
			}
			b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/GiB")
		})
	}
}

// memoryFile writes a snapshot memory file for the benchmarks.
func memoryFile(b *testing.B, size, step uint64) string {
	b.Helper()
	path := filepath.Join(b.TempDir(), "memory")
	if _, err := WriteFull(path, guestMemory(b, size, step), size); err != nil {
		b.Fatal(err)
	}
	return path
}

// dropCache evicts the file from the page cache (its pages are clean after
// WriteFull's fsync), for cold-cache runs. The host's own cache of the
// virtual disk is beyond reach, so "cold" is an optimistic lower bound.
func dropCache(b *testing.B, path string) {
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		b.Fatal(err)
	}
}

// freshMemory creates the guest memfd a restore starts from.
func freshMemory(b *testing.B, size uint64) (int, []byte) {
	fd, err := unix.MemfdCreate("restore", unix.MFD_CLOEXEC)
	if err != nil {
		b.Fatal(err)
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		b.Fatal(err)
	}
	m, err := unix.Mmap(fd, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_NORESERVE)
	if err != nil {
		b.Fatal(err)
	}
	return fd, m
}

// BenchmarkRestoreEager is mechanism (b): a fresh memfd filled from the
// memory file before the guest runs. Time per restore = time until the
// guest could run.
func BenchmarkRestoreEager(b *testing.B) {
	for _, s := range benchSizes {
		for _, d := range densities {
			for _, cache := range []string{"warm", "cold"} {
				b.Run(fmt.Sprintf("%s/%s/%s", s.name, d.name, cache), func(b *testing.B) {
					path := memoryFile(b, s.size, d.step)
					b.SetBytes(int64(s.size))
					b.ResetTimer()
					for range b.N {
						if cache == "cold" {
							b.StopTimer()
							dropCache(b, path)
							b.StartTimer()
						}
						f, err := OpenMemory(path, s.size)
						if err != nil {
							b.Fatal(err)
						}
						fd, m := freshMemory(b, s.size)
						if _, err := Populate(m, f); err != nil {
							b.Fatal(err)
						}
						b.StopTimer()
						unix.Munmap(m)
						unix.Close(fd)
						f.Close()
						b.StartTimer()
					}
				})
			}
		}
	}
}

// BenchmarkRestoreLazy is mechanism (a): a fresh memfd whose mapping a
// userfaultfd fills on first touch. It reports the time until the guest
// could run (ready-µs) and the cost of each first touch (fault-µs), here
// touching 1% of the pages one by one from user mode.
func BenchmarkRestoreLazy(b *testing.B) {
	for _, s := range benchSizes {
		b.Run(s.name+"/dense", func(b *testing.B) {
			path := memoryFile(b, s.size, 1)
			f, err := OpenMemory(path, s.size)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			file, err := unix.Mmap(int(f.Fd()), 0, int(s.size), unix.PROT_READ, unix.MAP_SHARED)
			if err != nil {
				b.Fatal(err)
			}
			defer unix.Munmap(file)
			var ready, faults time.Duration
			var touched int
			b.ResetTimer()
			for range b.N {
				t0 := time.Now()
				fd, m := freshMemory(b, s.size)
				u, err := newUserfault(false)
				if err != nil {
					b.Skipf("no userfaultfd: %v", err)
				}
				if err := u.register(m); err != nil {
					b.Fatal(err)
				}
				done := make(chan error, 1)
				go func() { done <- u.serve(m, file) }()
				t1 := time.Now()
				var sum byte
				for p := uint64(0); p < s.size/PageSize; p += 100 {
					sum += m[p*PageSize]
					touched++
				}
				t2 := time.Now()
				ready += t1.Sub(t0)
				faults += t2.Sub(t1)
				if sum == 0xff && touched < 0 {
					b.Log(sum) // keep the loads
				}
				u.shutdown()
				if err := <-done; err != nil {
					b.Fatal(err)
				}
				u.close()
				unix.Munmap(m)
				unix.Close(fd)
			}
			b.ReportMetric(float64(ready.Microseconds())/float64(b.N), "ready-µs")
			b.ReportMetric(float64(faults.Nanoseconds())/1e3/float64(touched), "fault-µs")
		})
	}
}

// BenchmarkRestorePrivate is mechanism (c): the memory file mapped
// MAP_PRIVATE (no device process could share it). Same metrics as
// BenchmarkRestoreLazy.
func BenchmarkRestorePrivate(b *testing.B) {
	for _, s := range benchSizes {
		b.Run(s.name+"/dense", func(b *testing.B) {
			path := memoryFile(b, s.size, 1)
			var ready, faults time.Duration
			var touched int
			b.ResetTimer()
			for range b.N {
				t0 := time.Now()
				f, err := OpenMemory(path, s.size)
				if err != nil {
					b.Fatal(err)
				}
				m, err := unix.Mmap(int(f.Fd()), 0, int(s.size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_NORESERVE)
				if err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				for p := uint64(0); p < s.size/PageSize; p += 100 {
					m[p*PageSize]++ // a guest write: copy-on-write of the page
					touched++
				}
				t2 := time.Now()
				ready += t1.Sub(t0)
				faults += t2.Sub(t1)
				unix.Munmap(m)
				f.Close()
			}
			b.ReportMetric(float64(ready.Microseconds())/float64(b.N), "ready-µs")
			b.ReportMetric(float64(faults.Nanoseconds())/1e3/float64(touched), "fault-µs")
		})
	}
}
