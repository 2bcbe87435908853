package virtiotest

import (
	"fmt"
	"sort"
	"sync"
)

// arena hands out buffer space in guest RAM: first fit over a sorted list of
// free ranges, merged again on free. Offsets are relative to RAM's start.
type arena struct {
	mu   sync.Mutex
	free []span // sorted by off, never adjacent
}

type span struct{ off, n uint64 }

// allocAlign keeps buffers cache-line aligned; big ones page aligned, which
// is what a real driver's page-cache buffers look like.
func allocAlign(n uint64) uint64 {
	if n >= 4096 {
		return 4096
	}
	return 64
}

func newArena(off, n uint64) *arena {
	return &arena{free: []span{{off, n}}}
}

func (a *arena) alloc(n uint64) (uint64, error) {
	if n == 0 {
		n = 1
	}
	al := allocAlign(n)
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, s := range a.free {
		start := (s.off + al - 1) &^ (al - 1)
		if start+n > s.off+s.n {
			continue
		}
		end := s.off + s.n
		// Split s into [s.off, start) and [start+n, end), dropping empties.
		var rest []span
		if start > s.off {
			rest = append(rest, span{s.off, start - s.off})
		}
		if start+n < end {
			rest = append(rest, span{start + n, end - start - n})
		}
		a.free = append(a.free[:i], append(rest, a.free[i+1:]...)...)
		return start, nil
	}
	return 0, fmt.Errorf("guest RAM arena: no %d free bytes (raise Options.RAM or wait for used buffers)", n)
}

func (a *arena) release(off, n uint64) {
	if n == 0 {
		n = 1
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	i := sort.Search(len(a.free), func(i int) bool { return a.free[i].off > off })
	a.free = append(a.free, span{})
	copy(a.free[i+1:], a.free[i:])
	a.free[i] = span{off, n}
	// Merge with the right, then the left neighbour.
	if i+1 < len(a.free) && a.free[i].off+a.free[i].n == a.free[i+1].off {
		a.free[i].n += a.free[i+1].n
		a.free = append(a.free[:i+1], a.free[i+2:]...)
	}
	if i > 0 && a.free[i-1].off+a.free[i-1].n == a.free[i].off {
		a.free[i-1].n += a.free[i].n
		a.free = append(a.free[:i], a.free[i+1:]...)
	}
}
