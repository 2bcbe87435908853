package blk

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/sietch-vm/sietch/virtio"
)

// Request types and status values (virtio 1.2 §5.2.6).
const (
	TypeIn          = 0
	TypeOut         = 1
	TypeFlush       = 4
	TypeGetID       = 8
	TypeDiscard     = 11
	TypeWriteZeroes = 13

	StatusOK     = 0
	StatusIOErr  = 1
	StatusUnsupp = 2
)

const (
	headerSize  = 16 // le32 type, le32 reserved, le64 sector
	segmentSize = 16 // struct virtio_blk_discard_write_zeroes
	flagUnmap   = 1  // VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP
)

// Header is the fixed head of every request.
type Header struct {
	Type   uint32
	Sector uint64
}

// ParseHeader decodes a request header; b must hold at least 16 bytes.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < headerSize {
		return Header{}, fmt.Errorf("virtio-blk request header is %d bytes, want %d", len(b), headerSize)
	}
	return Header{Type: binary.LittleEndian.Uint32(b), Sector: binary.LittleEndian.Uint64(b[8:])}, nil
}

// Segment is one range of a discard or write-zeroes request.
type Segment struct {
	Sector  uint64
	Sectors uint32
	Flags   uint32
}

// ParseSegments decodes the payload of a discard or write-zeroes request:
// a non-empty whole number of 16-byte segments, at most max of them.
func ParseSegments(b []byte, max int) ([]Segment, error) {
	if len(b) == 0 || len(b)%segmentSize != 0 {
		return nil, fmt.Errorf("discard/write-zeroes payload is %d bytes, want a non-zero multiple of %d", len(b), segmentSize)
	}
	if n := len(b) / segmentSize; n > max {
		return nil, fmt.Errorf("discard/write-zeroes request has %d segments, at most %d allowed", n, max)
	}
	segs := make([]Segment, len(b)/segmentSize)
	for i := range segs {
		s := b[i*segmentSize:]
		segs[i] = Segment{
			Sector:  binary.LittleEndian.Uint64(s),
			Sectors: binary.LittleEndian.Uint32(s[8:]),
			Flags:   binary.LittleEndian.Uint32(s[12:]),
		}
	}
	return segs, nil
}

// errMalformed marks a chain the device cannot even answer: no complete
// header or no status byte. It is returned with written 0.
var errMalformed = errors.New("malformed virtio-blk request")

// request is one chain cut into its parts (§5.2.6: header, data, status);
// the parts may straddle descriptors in any way (§2.6.4).
type request struct {
	hdr     Header
	out     [][]byte // device-readable data after the header
	outLen  uint64
	in      [][]byte // device-writable data before the status byte
	inLen   uint64
	status  *byte
	written uint32 // bytes written into in, for the used length
}

// parse maps c's buffers through mem and finds header, data and status.
func parse(mem virtio.GuestMemory, c *virtio.Chain) (*request, error) {
	var rd, wr [][]byte
	var rdLen, wrLen uint64
	for _, d := range c.Descs {
		b, err := mem.Slice(d.Addr, uint64(d.Len))
		if err != nil || uint64(len(b)) != uint64(d.Len) {
			return nil, fmt.Errorf("%w: buffer [%#x, +%#x) is not guest RAM", errMalformed, d.Addr, d.Len)
		}
		if d.Write {
			wr, wrLen = append(wr, b), wrLen+uint64(d.Len)
		} else {
			rd, rdLen = append(rd, b), rdLen+uint64(d.Len)
		}
	}
	if rdLen < headerSize {
		return nil, fmt.Errorf("%w: %d readable bytes, header needs %d", errMalformed, rdLen, headerSize)
	}
	if wrLen == 0 {
		return nil, fmt.Errorf("%w: no writable byte for the status", errMalformed)
	}
	var hb [headerSize]byte
	gather(hb[:], cut(rd, 0, headerSize))
	hdr, _ := ParseHeader(hb[:])
	r := &request{hdr: hdr, outLen: rdLen - headerSize, inLen: wrLen - 1}
	r.out = cut(rd, headerSize, r.outLen)
	r.in = cut(wr, 0, r.inLen)
	last := cut(wr, r.inLen, 1)
	r.status = &last[0][0]
	return r, nil
}

// cut returns bytes [off, off+n) of the concatenation of bs, without
// copying. The caller guarantees the range is inside.
func cut(bs [][]byte, off, n uint64) [][]byte {
	var out [][]byte
	for _, b := range bs {
		if n == 0 {
			break
		}
		if off >= uint64(len(b)) {
			off -= uint64(len(b))
			continue
		}
		b = b[off:]
		off = 0
		if uint64(len(b)) > n {
			b = b[:n]
		}
		if len(b) > 0 {
			out = append(out, b)
		}
		n -= uint64(len(b))
	}
	return out
}

// gather copies bs into dst.
func gather(dst []byte, bs [][]byte) {
	for _, b := range bs {
		dst = dst[copy(dst, b):]
	}
}

// scatter copies src into bs and returns the number of bytes copied.
func scatter(bs [][]byte, src []byte) int {
	n := 0
	for _, b := range bs {
		if n == len(src) {
			break
		}
		n += copy(b, src[n:])
	}
	return n
}

// handle runs one chain and returns the used length: data written plus the
// status byte, or 0 for a malformed chain (nothing done).
func (d *Device) handle(mem virtio.GuestMemory, c *virtio.Chain, writeThrough bool) uint32 {
	r, err := parse(mem, c)
	if err != nil {
		d.log.Debug("virtio-blk: dropping request", "head", c.Head, "err", err)
		return 0
	}
	status := d.execute(r, writeThrough)
	*r.status = status
	return r.written + 1
}

// execute performs r and returns its status. Nothing touches the disk
// unless the whole request is valid.
func (d *Device) execute(r *request, writeThrough bool) byte {
	switch r.hdr.Type {
	case TypeIn:
		off, ok := d.dataRange(r.hdr.Sector, r.inLen)
		if !ok {
			return StatusIOErr
		}
		if err := rwFull(d.fd, r.in, off, false); err != nil {
			d.log.Warn("virtio-blk: read failed", "sector", r.hdr.Sector, "bytes", r.inLen, "err", err)
			return StatusIOErr
		}
		r.written = uint32(min(r.inLen, 1<<32-2))
		return StatusOK
	case TypeOut:
		off, ok := d.dataRange(r.hdr.Sector, r.outLen)
		if !ok || d.readOnly {
			return StatusIOErr
		}
		if err := rwFull(d.fd, r.out, off, true); err != nil {
			d.log.Warn("virtio-blk: write failed", "sector", r.hdr.Sector, "bytes", r.outLen, "err", err)
			return StatusIOErr
		}
		if writeThrough {
			return d.flush()
		}
		return StatusOK
	case TypeFlush:
		return d.flush()
	case TypeGetID:
		// Up to 20 bytes, NUL-padded when shorter (§5.2.6).
		r.written = uint32(scatter(r.in, d.id[:]))
		return StatusOK
	case TypeDiscard, TypeWriteZeroes:
		return d.discardOrZero(r, writeThrough)
	default:
		return StatusUnsupp
	}
}

// dataRange checks an IN/OUT transfer of n bytes at sector: whole sectors,
// inside the disk, without overflow. It returns the byte offset.
func (d *Device) dataRange(sector, n uint64) (int64, bool) {
	if n%SectorSize != 0 || !d.inDisk(sector, n/SectorSize) {
		return 0, false
	}
	return int64(sector * SectorSize), true
}

func (d *Device) inDisk(sector, count uint64) bool {
	return sector <= d.sectors && count <= d.sectors-sector
}

func (d *Device) flush() byte {
	if err := fdatasync(d.fd); err != nil {
		d.log.Warn("virtio-blk: flush failed", "err", err)
		return StatusIOErr
	}
	return StatusOK
}

// discardOrZero validates every segment first (§5.2.6.2: unknown flags and
// UNMAP on a discard are UNSUPP; ranges beyond the disk IOERR), then acts.
func (d *Device) discardOrZero(r *request, writeThrough bool) byte {
	if d.readOnly {
		return StatusIOErr
	}
	discard := r.hdr.Type == TypeDiscard
	maxSeg, maxSectors := maxWriteZeroesSeg, uint32(maxWriteZeroesSectors)
	if discard {
		maxSeg, maxSectors = maxDiscardSeg, maxDiscardSectors
	}
	if r.outLen > uint64(maxSeg*segmentSize) {
		return StatusIOErr // more segments than config space allows
	}
	buf := make([]byte, r.outLen)
	gather(buf, r.out)
	segs, err := ParseSegments(buf, maxSeg)
	if err != nil {
		return StatusIOErr
	}
	for _, s := range segs {
		if s.Flags&^flagUnmap != 0 || (discard && s.Flags&flagUnmap != 0) {
			return StatusUnsupp
		}
		if s.Sectors > maxSectors || !d.inDisk(s.Sector, uint64(s.Sectors)) {
			return StatusIOErr
		}
	}
	for _, s := range segs {
		off, n := int64(s.Sector*SectorSize), int64(s.Sectors)*SectorSize
		if n == 0 {
			continue
		}
		if discard {
			err = d.zeroes.discard(off, n)
		} else {
			err = d.zeroes.zero(off, n, s.Flags&flagUnmap != 0)
		}
		if err != nil {
			d.log.Warn("virtio-blk: discard/write-zeroes failed", "sector", s.Sector, "sectors", s.Sectors, "err", err)
			return StatusIOErr
		}
	}
	if writeThrough && !discard {
		return d.flush()
	}
	return StatusOK
}
