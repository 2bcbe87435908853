package virtio

import (
	"fmt"
	"io"
)

// ChainReader reads the driver-readable buffers of a chain in order, mapping
// each one through GuestMemory as it gets to it.
type ChainReader struct {
	mem       GuestMemory
	descs     []Desc
	cur       []byte
	remaining uint64
}

// NewChainReader returns an io.Reader over c's driver-readable descriptors.
func NewChainReader(mem GuestMemory, c *Chain) *ChainReader {
	r := &ChainReader{mem: mem}
	if c == nil {
		return r
	}
	for _, d := range c.Descs {
		if d.Write {
			break
		}
		r.descs = append(r.descs, d)
		r.remaining += uint64(d.Len)
	}
	return r
}

// Remaining is the number of readable bytes not read yet.
func (r *ChainReader) Remaining() uint64 { return r.remaining }

// Read copies the next bytes of the chain into p; io.EOF at the end.
func (r *ChainReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(r.cur) == 0 {
			if len(r.descs) == 0 {
				break
			}
			b, err := mapDesc(r.mem, r.descs[0])
			if err != nil {
				return n, err
			}
			r.cur, r.descs = b, r.descs[1:]
			continue
		}
		k := copy(p[n:], r.cur)
		r.cur = r.cur[k:]
		r.remaining -= uint64(k)
		n += k
	}
	if n == 0 && len(p) > 0 {
		return 0, io.EOF
	}
	return n, nil
}

// ChainWriter writes into the device-writable buffers of a chain in order and
// counts the bytes, which is what Queue.Push wants as "written".
type ChainWriter struct {
	mem       GuestMemory
	descs     []Desc
	cur       []byte
	written   uint64
	remaining uint64
}

// NewChainWriter returns an io.Writer over c's device-writable descriptors.
func NewChainWriter(mem GuestMemory, c *Chain) *ChainWriter {
	w := &ChainWriter{mem: mem}
	if c == nil {
		return w
	}
	for _, d := range c.Descs {
		if d.Write {
			w.descs = append(w.descs, d)
			w.remaining += uint64(d.Len)
		}
	}
	return w
}

// Written is the number of bytes written so far, saturated at 2^32-1 (the
// used ring's len field).
func (w *ChainWriter) Written() uint32 {
	return uint32(min(w.written, 1<<32-1))
}

// Remaining is the writable space left.
func (w *ChainWriter) Remaining() uint64 { return w.remaining }

// Write copies p into the chain's writable buffers. If they are too small it
// writes what fits and returns io.ErrShortWrite.
func (w *ChainWriter) Write(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(w.cur) == 0 {
			if len(w.descs) == 0 {
				return n, io.ErrShortWrite
			}
			b, err := mapDesc(w.mem, w.descs[0])
			if err != nil {
				return n, err
			}
			w.cur, w.descs = b, w.descs[1:]
			continue
		}
		k := copy(w.cur, p[n:])
		w.cur = w.cur[k:]
		w.written += uint64(k)
		w.remaining -= uint64(k)
		n += k
	}
	return n, nil
}

func mapDesc(mem GuestMemory, d Desc) ([]byte, error) {
	if mem == nil {
		return nil, fmt.Errorf("map buffer [%#x, +%#x): no guest memory", d.Addr, d.Len)
	}
	b, err := slice(mem, d.Addr, uint64(d.Len))
	if err != nil {
		return nil, fmt.Errorf("map buffer [%#x, +%#x): %w: %v", d.Addr, d.Len, ErrBufferNotInRAM, err)
	}
	return b, nil
}
