package snapshot

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/bits"
)

// PageSize is the granularity of memory files and dirty bitmaps.
const PageSize = 4096

// Bitmap is a set of 4 KiB pages, one bit each, in KVM_GET_DIRTY_LOG's
// layout: page i is bit i%64 of word i/64. In JSON it is the base64 of its
// little-endian bytes (a 1 GiB guest's bitmap is 32 KiB).
type Bitmap []uint64

// BitmapWords is the length of a Bitmap covering size bytes.
func BitmapWords(size uint64) int { return int((size/PageSize + 63) / 64) }

// Set adds page i.
func (b Bitmap) Set(i uint64) { b[i/64] |= 1 << (i % 64) }

// Has reports whether page i is in the set; pages beyond the bitmap are not.
func (b Bitmap) Has(i uint64) bool { return i/64 < uint64(len(b)) && b[i/64]&(1<<(i%64)) != 0 }

// Count is the number of pages in the set.
func (b Bitmap) Count() int {
	n := 0
	for _, w := range b {
		n += bits.OnesCount64(w)
	}
	return n
}

// MarshalJSON encodes the bitmap compactly.
func (b Bitmap) MarshalJSON() ([]byte, error) {
	raw := make([]byte, 0, 8*len(b))
	for _, w := range b {
		raw = binary.LittleEndian.AppendUint64(raw, w)
	}
	return json.Marshal(raw)
}

// UnmarshalJSON decodes what MarshalJSON wrote.
func (b *Bitmap) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("dirty page bitmap: %w", err)
	}
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return fmt.Errorf("dirty page bitmap: %w", err)
	}
	if len(raw)%8 != 0 {
		return fmt.Errorf("dirty page bitmap is %d bytes, not a whole number of 64-bit words", len(raw))
	}
	out := make(Bitmap, len(raw)/8)
	for i := range out {
		out[i] = binary.LittleEndian.Uint64(raw[8*i:])
	}
	*b = out
	return nil
}

// runs calls f for each maximal run [first, first+n) of pages in the set
// below pages, in order, and stops at f's first error.
func (b Bitmap) runs(pages uint64, f func(first, n uint64) error) error {
	var start, n uint64
	for i := uint64(0); i < pages; i++ {
		w := b[i/64]
		if i%64 == 0 && w == 0 {
			// Skip whole empty words: most of a diff's bitmap.
			i += 63
			if n > 0 {
				if err := f(start, n); err != nil {
					return err
				}
				n = 0
			}
			continue
		}
		if w&(1<<(i%64)) != 0 {
			if n == 0 {
				start = i
			}
			n++
			continue
		}
		if n > 0 {
			if err := f(start, n); err != nil {
				return err
			}
			n = 0
		}
	}
	if n > 0 {
		return f(start, n)
	}
	return nil
}
