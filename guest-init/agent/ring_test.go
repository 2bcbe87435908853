package agent

import (
	"bytes"
	"testing"
)

func TestOutputRing(t *testing.T) {
	r := newOutputRing()
	r.write([]byte("out1 "), false)
	r.write([]byte("err1 "), true)
	got, dropped, next, ended, more := r.read(0)
	if len(got) != 2 || string(got[0].data) != "out1 " || !got[1].stderr || dropped != 0 || next != 10 || ended {
		t.Fatalf("read(0): %+v dropped %d next %d ended %v", got, dropped, next, ended)
	}
	// A reader from the middle of a chunk gets its rest.
	if got, _, _, _, _ := r.read(7); len(got) != 1 || string(got[0].data) != "r1 " {
		t.Errorf("read(7): %+v", got)
	}
	// Followers wake on new output, and on the end.
	r.write([]byte("x"), false)
	select {
	case <-more:
	default:
		t.Error("no wake-up after a write")
	}
	_, _, _, _, more = r.read(next)
	r.close()
	select {
	case <-more:
	default:
		t.Error("no wake-up at close")
	}
	if _, _, _, ended, _ := r.read(11); !ended {
		t.Error("not ended after close")
	}

	// Past the bound the oldest output goes, and a reader from 0 is told.
	r = newOutputRing()
	big := bytes.Repeat([]byte("a"), ringBytes-10)
	r.write([]byte("0123456789abcdefghij"), false)
	r.write(big, false)
	got, dropped, next, _, _ = r.read(0)
	var n int
	for _, c := range got {
		n += len(c.data)
	}
	if dropped != 10 || n != ringBytes || next != int64(ringBytes+10) {
		t.Errorf("after overflow: dropped %d, %d bytes back, next %d", dropped, n, next)
	}
	r.write([]byte("tail"), false)
	got, dropped, _, _, _ = r.read(0)
	if dropped != 14 || string(got[len(got)-1].data) != "tail" || r.total() != int64(ringBytes+14) {
		t.Errorf("after more output: dropped %d, last %q, total %d", dropped, got[len(got)-1].data, r.total())
	}
}
