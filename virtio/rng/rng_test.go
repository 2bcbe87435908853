package rng

import (
	"bytes"
	"testing"

	"github.com/sietch-vm/sietch/virtio/virtiotest"
)

func TestRandomBytes(t *testing.T) {
	h := virtiotest.Start(t, New(), virtiotest.Options{})
	q := h.Queue(0)
	for _, n := range []int{1, 16, 4096} {
		a := q.Do(virtiotest.In(n))
		b := q.Do(virtiotest.Out([]byte("ignored")), virtiotest.In(n/2+1), virtiotest.In(n-n/2))
		if a.Len != uint32(n) || b.Len != uint32(n+1) {
			t.Fatalf("used lengths %d and %d for %d-byte requests", a.Len, b.Len, n)
		}
		if n >= 16 && bytes.Equal(a.Data(), b.Data()[:n]) {
			t.Fatalf("two %d-byte requests returned the same bytes", n)
		}
		if n >= 4096 && bytes.Equal(a.Data(), bytes.Repeat([]byte{virtiotest.Poison}, n)) {
			t.Fatal("buffer was not written")
		}
	}
}

func TestBoundedAndMalformed(t *testing.T) {
	h := virtiotest.Start(t, New(), virtiotest.Options{RAM: 8 << 20})
	q := h.Queue(0)
	u := q.Do(virtiotest.In(MaxPerRequest), virtiotest.In(4096))
	if u.Len != MaxPerRequest || u.In[1][0] != virtiotest.Poison {
		t.Fatalf("request for %d bytes got %d, want at most %d", MaxPerRequest+4096, u.Len, MaxPerRequest)
	}
	if u := q.Do(virtiotest.Out([]byte("no writable buffer"))); u.Len != 0 {
		t.Fatalf("readable-only chain: used len %d", u.Len)
	}
	q.PostRaw(virtiotest.RawDesc{Addr: 0x10, Len: 64, Flags: virtiotest.FlagWrite}) // not RAM
	q.Kick()
	if u := q.WaitUsed(); u.Len != 0 {
		t.Fatalf("chain outside RAM: used len %d", u.Len)
	}
	if u := q.Do(virtiotest.In(32)); u.Len != 32 {
		t.Fatalf("request after bad chains: used len %d", u.Len)
	}
	if base := h.GetVringBase(0); base != 4 {
		t.Fatalf("GetVringBase = %d, want 4", base)
	}
}
