package vsock

// byteQueue is a FIFO of bytes. Its callers bound its length; the backing
// array stays within about twice that bound because consumed space is
// reclaimed before growing.
type byteQueue struct {
	b   []byte
	off int
}

func (q *byteQueue) Len() int { return len(q.b) - q.off }

func (q *byteQueue) Write(p []byte) {
	if q.off > 0 && len(q.b)+len(p) > cap(q.b) {
		n := copy(q.b, q.b[q.off:])
		q.b, q.off = q.b[:n], 0
	}
	q.b = append(q.b, p...)
}

// Peek returns the first n bytes (n <= Len) without consuming them.
func (q *byteQueue) Peek(n int) []byte { return q.b[q.off : q.off+n] }

// Discard consumes the first n bytes (n <= Len).
func (q *byteQueue) Discard(n int) {
	q.off += n
	if q.off == len(q.b) {
		q.b, q.off = q.b[:0], 0
	}
}

// Reset empties the queue and lets its memory go.
func (q *byteQueue) Reset() { q.b, q.off = nil, 0 }
