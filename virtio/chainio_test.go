package virtio

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestChainReaderWriter(t *testing.T) {
	d := newTestDriver(t, 8, false)
	r1, r2 := d.buf(5), d.buf(7)
	w1, w2 := d.buf(4), d.buf(6)
	copy(d.at(r1, 5), "hello")
	copy(d.at(r2, 7), ", world")
	d.desc(0, r1, 5, descFNext, 1)
	d.desc(1, r2, 7, descFNext, 2)
	d.desc(2, w1, 4, descFWrite|descFNext, 3)
	d.desc(3, w2, 6, descFWrite, 0)
	d.publish(0)
	c, ok, err := d.q.Pop()
	if !ok || err != nil {
		t.Fatalf("Pop = %v, %v", ok, err)
	}

	r := NewChainReader(d.mem, c)
	if r.Remaining() != 12 {
		t.Fatalf("reader Remaining = %d, want 12", r.Remaining())
	}
	got, err := io.ReadAll(r)
	if err != nil || string(got) != "hello, world" {
		t.Fatalf("ReadAll = %q, %v", got, err)
	}
	if r.Remaining() != 0 {
		t.Fatalf("reader Remaining = %d after ReadAll", r.Remaining())
	}

	w := NewChainWriter(d.mem, c)
	if w.Remaining() != 10 {
		t.Fatalf("writer Remaining = %d, want 10", w.Remaining())
	}
	if n, err := w.Write([]byte("abcdefg")); n != 7 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if n, err := w.Write([]byte("hijkl")); n != 3 || !errors.Is(err, io.ErrShortWrite) {
		t.Fatalf("Write past the end = %d, %v; want 3, ErrShortWrite", n, err)
	}
	if w.Written() != 10 {
		t.Fatalf("Written = %d, want 10", w.Written())
	}
	all := append(append([]byte{}, d.at(w1, 4)...), d.at(w2, 6)...)
	if !bytes.Equal(all, []byte("abcdefghij")) {
		t.Fatalf("guest buffers hold %q", all)
	}
}

func TestChainIOEmpty(t *testing.T) {
	mem := &testMem{b: make([]byte, 64)}
	r := NewChainReader(mem, &Chain{Descs: []Desc{{Addr: 0, Len: 4, Write: true}}})
	if n, err := r.Read(make([]byte, 4)); n != 0 || err != io.EOF {
		t.Fatalf("Read from a chain without readable buffers = %d, %v", n, err)
	}
	w := NewChainWriter(mem, &Chain{Descs: []Desc{{Addr: 0, Len: 4}}})
	if n, err := w.Write([]byte{1}); n != 0 || !errors.Is(err, io.ErrShortWrite) {
		t.Fatalf("Write to a chain without writable buffers = %d, %v", n, err)
	}
	// Memory that shrank under a chain is an error, not a panic.
	r = NewChainReader(mem, &Chain{Descs: []Desc{{Addr: 60, Len: 8}}})
	if _, err := r.Read(make([]byte, 8)); !errors.Is(err, ErrBufferNotInRAM) {
		t.Fatalf("Read of a buffer outside RAM = %v", err)
	}
}
