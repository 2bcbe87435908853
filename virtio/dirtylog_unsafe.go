package virtio

import (
	"sync/atomic"
	"unsafe"
)

// wordsOf views a page-aligned shared mapping as 64-bit words in place:
// the log is shared memory, so it cannot be copied.
func wordsOf(b []byte) []uint64 {
	if len(b) < 8 {
		return nil
	}
	return unsafe.Slice((*uint64)(unsafe.Pointer(&b[0])), len(b)/8)
}

func orWord(w *uint64, mask uint64) {
	if atomic.LoadUint64(w)&mask != mask {
		atomic.OrUint64(w, mask)
	}
}

func swapWord(w *uint64, v uint64) uint64 { return atomic.SwapUint64(w, v) }
