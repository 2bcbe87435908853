package virtiotest

import (
	"bytes"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/sietch-vm/sietch/virtio"
)

// echo is a two-queue toy device: each chain's readable bytes come back
// upper-cased in its writable buffers. Config space is "ECHO".
type echo struct {
	mu    sync.Mutex
	acked uint64
}

func newEcho() *echo { return &echo{} }

func (d *echo) Features() uint64 {
	return virtio.FeatureVersion1 | virtio.FeatureEventIdx | virtio.FeatureIndirectDesc
}
func (d *echo) ProtocolFeatures() uint64 { return ^uint64(0) }
func (d *echo) NumQueues() int           { return 2 }
func (d *echo) MaxQueueSize() uint16     { return 256 }
func (d *echo) ReadConfig(off uint32, data []byte) {
	for i := range data {
		data[i] = 0
		if o := int(off) + i; o < 4 {
			data[i] = "ECHO"[o]
		}
	}
}
func (d *echo) WriteConfig(uint32, []byte) error { return errors.New("read-only") }
func (d *echo) SetFeatures(acked uint64) error {
	d.mu.Lock()
	d.acked = acked
	d.mu.Unlock()
	return nil
}

func (d *echo) HandleChain(_ int, c *virtio.Chain, mem virtio.GuestMemory) (uint32, error) {
	in, _ := io.ReadAll(virtio.NewChainReader(mem, c))
	w := virtio.NewChainWriter(mem, c)
	w.Write(bytes.ToUpper(in))
	return w.Written(), nil
}

func TestHarnessEcho(t *testing.T) {
	for _, tt := range []struct {
		name     string
		features uint64
	}{
		{"event idx", 0},
		{"no event idx", ^uint64(0) &^ virtio.FeatureEventIdx},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := newEcho()
			h := Start(t, d, Options{QueueSize: 8, Features: tt.features})
			if got := string(h.Config(0, 4)); got != "ECHO" {
				t.Fatalf("Config = %q", got)
			}
			if (h.Features()&virtio.FeatureEventIdx != 0) != (tt.features == 0) {
				t.Fatalf("acked features %#x", h.Features())
			}
			for qi := range 2 {
				q := h.Queue(qi)
				// More requests than the ring has entries: descriptors and
				// buffers are recycled.
				for i := range 20 {
					u := q.Do(Out([]byte("hello, ")), Out([]byte("world")), In(4), In(20))
					if u.Len != 12 || string(u.Data()) != "HELLO, WORLD" {
						t.Fatalf("queue %d request %d: used %+v, data %q", qi, i, u, u.Data())
					}
					if u.In[1][8] != Poison {
						t.Fatalf("byte past the written ones is %#x, want poison", u.In[1][8])
					}
				}
				head := q.PostIndirect(Out([]byte("indi")), Out([]byte("rect")), In(3), In(5))
				q.Kick()
				if u := q.WaitUsed(); u.Head != head || string(u.Data()) != "INDIRECT" {
					t.Fatalf("data %q", u.Data())
				}
			}
			// Several in flight at once, then a malformed chain, then a
			// restart from GET_VRING_BASE.
			q := h.Queue(0)
			for range 5 {
				q.PostIndirect(Out([]byte("abc")), In(3))
			}
			q.Kick()
			for range 5 {
				if u := q.WaitUsed(); string(u.Data()) != "ABC" {
					t.Fatalf("data %q", u.Data())
				}
			}
			q.PostRaw(RawDesc{Addr: 1, Len: 16}) // below RAMBase: not RAM
			q.Kick()
			if u := q.WaitUsed(); u.Len != 0 {
				t.Fatalf("bad chain used with len %d", u.Len)
			}
			if base := h.GetVringBase(0); base != 20+1+5+1 {
				t.Fatalf("GetVringBase = %d, want 27", base)
			}
			q.Post(Out([]byte("late")), In(4))
			if _, ok := q.WaitUsedFor(50 * time.Millisecond); ok {
				t.Fatal("a stopped queue used a chain")
			}
			h.SetupQueue(0, 27)
			if u := q.WaitUsed(); string(u.Data()) != "LATE" {
				t.Fatalf("after restart: data %q", u.Data())
			}
			if q.InFlight() != 0 {
				t.Fatalf("%d chains still in flight", q.InFlight())
			}
		})
	}
}
