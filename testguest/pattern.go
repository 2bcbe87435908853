package testguest

import "encoding/binary"

// Pattern is the byte stream the virtio guests write and check
// (xorshift64 words from seed, little-endian; src/virtio.c xorshift64), so
// host-side tests can recompute what a guest wrote.
func Pattern(seed uint64, n int) []byte {
	b := make([]byte, (n+7)/8*8)
	x := seed
	for i := 0; i < len(b); i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		binary.LittleEndian.PutUint64(b[i:], x)
	}
	return b[:n]
}

// FNVOffset is the FNV-1a 64-bit offset basis, the guests' checksum seed.
const FNVOffset = 0xcbf29ce484222325

// FNV1a folds b into the FNV-1a 64-bit hash h, as the guests' fnv1a does.
func FNV1a(h uint64, b []byte) uint64 {
	for _, c := range b {
		h = (h ^ uint64(c)) * 0x100000001b3
	}
	return h
}
