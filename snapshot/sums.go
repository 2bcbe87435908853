package snapshot

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
)

// Memory files carry a checksum per chunk (State.Memory.Sums): CRC-32C,
// which the CPU computes in hardware, over each SumChunk bytes of the file
// as a reader sees it (holes read as zeros). A restore checks each chunk
// before any of its bytes reach the guest: all at once when memory is
// loaded eagerly, chunk by chunk on first touch when it is restored
// lazily. A chunk that does not match is refused naming the file and the
// offset, never run.

// SumChunk is the size of a checksummed chunk: 64 KiB, 16 pages. Smaller
// chunks cost more checksum bytes in the state file; larger ones make the
// first touch of a lazily restored page read more of the file.
const SumChunk = 64 << 10

// SumCRC32C names the checksum algorithm in Sums.Algorithm.
const SumCRC32C = "crc32c"

// ErrCorrupt wraps every memory checksum mismatch.
var ErrCorrupt = errors.New("memory file does not match its checksum (corrupted on disk)")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// zeroChunkSum is the checksum of a chunk that is all zeros (a hole).
var zeroChunkSum = crc32.Checksum(make([]byte, SumChunk), castagnoli)

// Sums are a memory file's chunk checksums.
type Sums struct {
	Algorithm string // SumCRC32C
	Chunk     uint64 // SumChunk
	// CRC holds one little-endian uint32 per chunk, in file order (base64
	// in the state file).
	CRC []byte
}

// chunks is how many chunks size bytes of memory make.
func chunks(size uint64) uint64 { return (size + SumChunk - 1) / SumChunk }

// check says what is wrong with s for a memory file of size bytes.
func (s *Sums) check(size uint64) error {
	switch {
	case s.Algorithm != SumCRC32C:
		return fmt.Errorf("memory checksums: algorithm %q, want %q", s.Algorithm, SumCRC32C)
	case s.Chunk != SumChunk:
		return fmt.Errorf("memory checksums: chunk %d bytes, want %d", s.Chunk, SumChunk)
	case uint64(len(s.CRC)) != 4*chunks(size):
		return fmt.Errorf("memory checksums: %d bytes for %d bytes of memory, want %d", len(s.CRC), size, 4*chunks(size))
	}
	return nil
}

func (s *Sums) sum(chunk uint64) uint32 { return binary.LittleEndian.Uint32(s.CRC[4*chunk:]) }

// Verify checks data, the file's bytes of chunk i (the last chunk may be
// short). path names the file in the error.
func (s *Sums) Verify(path string, i uint64, data []byte) error {
	if got, want := crc32.Checksum(data, castagnoli), s.sum(i); got != want {
		return fmt.Errorf("%s: bytes %#x-%#x have CRC-32C %08x, the snapshot recorded %08x: %w",
			path, i*SumChunk, i*SumChunk+uint64(len(data)), got, want, ErrCorrupt)
	}
	return nil
}

// SumMemory computes the chunk checksums of the memory file at path (size
// bytes), reading only its data regions: chunks that are holes throughout
// are all zeros.
func SumMemory(path string, size uint64) (*Sums, error) {
	f, err := OpenMemory(path, size)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	n := chunks(size)
	s := &Sums{Algorithm: SumCRC32C, Chunk: SumChunk, CRC: make([]byte, 4*n)}
	data, err := dataChunks(f, size)
	if err != nil {
		return nil, fmt.Errorf("checksum %s: %w", path, err)
	}
	buf := make([]byte, SumChunk)
	for c := range n {
		sum := zeroChunkSum
		if data[c] || (c+1)*SumChunk > size {
			b := buf[:min(SumChunk, size-c*SumChunk)]
			if _, err := f.ReadAt(b, int64(c*SumChunk)); err != nil {
				return nil, fmt.Errorf("checksum %s at %#x: %w", path, c*SumChunk, err)
			}
			sum = crc32.Checksum(b, castagnoli)
		}
		binary.LittleEndian.PutUint32(s.CRC[4*c:], sum)
	}
	return s, nil
}

// verifyLoaded checks dst, a fresh all-zero mapping into which Populate
// loaded the memory file f: chunks with data in the file are checked in
// dst; a chunk that is a hole throughout must have been recorded as zeros
// (reading it from dst would only allocate zero pages).
func (s *Sums) verifyLoaded(f *os.File, dst []byte) error {
	size := uint64(len(dst))
	data, err := dataChunks(f, size)
	if err != nil {
		return fmt.Errorf("check %s: %w", f.Name(), err)
	}
	for c := range chunks(size) {
		b := dst[c*SumChunk : min((c+1)*SumChunk, size)]
		if !data[c] && len(b) == SumChunk {
			if s.sum(c) != zeroChunkSum {
				return fmt.Errorf("%s: bytes %#x-%#x are a hole (zeros), the snapshot recorded data there: %w",
					f.Name(), c*SumChunk, (c+1)*SumChunk, ErrCorrupt)
			}
			continue
		}
		if err := s.Verify(f.Name(), c, b); err != nil {
			return err
		}
	}
	return nil
}

// VerifyFile checks the chunks of the open memory file f (size bytes) for
// which want reports true, reading them into buf (SumChunk bytes).
func (s *Sums) verifyFile(f *os.File, size uint64, want func(chunk uint64) bool) error {
	buf := make([]byte, SumChunk)
	for c := range chunks(size) {
		if !want(c) {
			continue
		}
		b := buf[:min(SumChunk, size-c*SumChunk)]
		if _, err := f.ReadAt(b, int64(c*SumChunk)); err != nil {
			return fmt.Errorf("read %s at %#x: %w", f.Name(), c*SumChunk, err)
		}
		if err := s.Verify(f.Name(), c, b); err != nil {
			return err
		}
	}
	return nil
}

// dataChunks reports, per chunk of the first size bytes of f, whether it
// holds any data (SEEK_DATA), rather than being a hole throughout.
func dataChunks(f *os.File, size uint64) ([]bool, error) {
	n := chunks(size)
	data := make([]bool, n)
	err := dataRanges(f, size, func(start, end uint64) error {
		for c := start / SumChunk; c < n && c*SumChunk < end; c++ {
			data[c] = true
		}
		return nil
	})
	return data, err
}
