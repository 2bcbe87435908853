package execstream

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	var b bytes.Buffer
	w := NewWriter(&b)
	big := bytes.Repeat([]byte("x"), MaxPayload+10)
	w.Write(Stdin, []byte("hello"))
	w.Write(StdinEOF, nil)
	w.WriteJSON(Resize, Size{Rows: 40, Cols: 100})
	w.Write(Stdout, big) // split in two frames
	r := NewReader(&b)
	want := []struct {
		typ byte
		n   int
	}{{Stdin, 5}, {StdinEOF, 0}, {Resize, len(`{"rows":40,"cols":100}`)}, {Stdout, MaxPayload}, {Stdout, 10}}
	for i, w := range want {
		f, err := r.Next()
		if err != nil || f.Type != w.typ || len(f.Payload) != w.n {
			t.Fatalf("frame %d: type %d, %d bytes, %v; want type %d, %d bytes", i, f.Type, len(f.Payload), err, w.typ, w.n)
		}
	}
	if _, err := r.Next(); err != io.EOF {
		t.Errorf("after the last frame: %v, want io.EOF", err)
	}
}

func TestHostileFrames(t *testing.T) {
	over := make([]byte, 5)
	over[0] = Stdout
	binary.BigEndian.PutUint32(over[1:], MaxPayload+1)
	for name, in := range map[string][]byte{
		"payload over the bound": over,
		"cut header":             {Stdout, 0, 0},
		"cut payload":            {Stdout, 0, 0, 0, 9, 'a'},
	} {
		if _, err := NewReader(bytes.NewReader(in)).Next(); err == nil || errors.Is(err, io.EOF) {
			t.Errorf("%s: %v, want an error", name, err)
		}
	}
	var s Size
	for _, p := range []string{`{"rows":1,"cols":2,"x":3}`, `{"rows":1}{}`, `[1]`, `{"rows":-1}`} {
		if err := Decode(Frame{Type: Resize, Payload: []byte(p)}, &s); err == nil {
			t.Errorf("Decode(%s): want an error", p)
		}
	}
	if err := Decode(Frame{Type: Resize, Payload: []byte(`{"rows":1,"cols":2}`)}, &s); err != nil || s != (Size{1, 2}) {
		t.Errorf("Decode: %+v, %v", s, err)
	}
}

func FuzzReader(f *testing.F) {
	f.Add([]byte{Stdin, 0, 0, 0, 2, 'h', 'i', Resize, 0, 0, 0, 2, '{', '}'})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := NewReader(bytes.NewReader(b))
		for {
			fr, err := r.Next()
			if err != nil {
				return
			}
			if len(fr.Payload) > MaxPayload {
				t.Fatalf("payload of %d bytes", len(fr.Payload))
			}
			var s Size
			_ = Decode(fr, &s)
		}
	})
}
