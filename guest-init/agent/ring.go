package agent

import "sync"

// ringBytes bounds the output a detached process keeps for later
// readers; older output is dropped, and a reader that asks for it is told
// how much it missed.
const ringBytes = 256 << 10

// chunk is one read of a process's output.
type chunk struct {
	off    int64 // of its first byte, counting every byte ever written
	stderr bool
	data   []byte
}

// outputRing keeps the last ringBytes of a process's output, in order,
// for readers that attach at any time; they follow it as it grows.
type outputRing struct {
	mu      sync.Mutex
	chunks  []chunk
	size    int   // bytes held
	start   int64 // offset of the oldest byte held
	end     int64 // offset after the newest byte
	closed  bool  // no more output
	changed chan struct{}
}

func newOutputRing() *outputRing { return &outputRing{changed: make(chan struct{})} }

// write appends output, dropping the oldest beyond ringBytes.
func (r *outputRing) write(data []byte, stderr bool) {
	if len(data) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.chunks = append(r.chunks, chunk{off: r.end, stderr: stderr, data: append([]byte(nil), data...)})
	r.end += int64(len(data))
	r.size += len(data)
	for r.size > ringBytes {
		c := &r.chunks[0]
		drop := min(r.size-ringBytes, len(c.data))
		c.data, c.off = c.data[drop:], c.off+int64(drop)
		r.size -= drop
		if len(c.data) == 0 {
			r.chunks[0] = chunk{}
			r.chunks = r.chunks[1:]
		}
	}
	if len(r.chunks) > 0 {
		r.start = r.chunks[0].off
	} else {
		r.start = r.end
	}
	r.wake()
}

// close says no more output will come.
func (r *outputRing) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	r.wake()
}

func (r *outputRing) wake() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// read returns the output from offset from on: the chunks, how many bytes
// before them were dropped, the offset to read next, whether the output
// has ended there, and a channel closed when there is more.
func (r *outputRing) read(from int64) (out []chunk, dropped, next int64, ended bool, more <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if from < r.start {
		dropped, from = r.start-from, r.start
	}
	for _, c := range r.chunks {
		cend := c.off + int64(len(c.data))
		if cend <= from {
			continue
		}
		if c.off < from {
			c.data, c.off = c.data[from-c.off:], from
		}
		out = append(out, c)
	}
	return out, dropped, max(from, r.end), r.closed, r.changed
}

// total is how many bytes were ever written.
func (r *outputRing) total() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.end
}
