package boot

import "encoding/binary"

// guestMem is low guest RAM with bounds-checked access: every write boot
// makes goes through region, so a bad address is an error, not a panic.
type guestMem []byte

// region returns the n bytes at guest-physical addr, or an ErrTooLarge error
// naming what was to be placed there.
func (m guestMem) region(addr, n uint64, what string) ([]byte, error) {
	end := addr + n
	if end < addr || end > uint64(len(m)) {
		return nil, errorf(ErrTooLarge, "%s at %#x-%#x is beyond guest low memory, which ends at %#x", what, addr, addr+n, len(m))
	}
	return m[addr:end:end], nil
}

// write copies b to addr.
func (m guestMem) write(addr uint64, b []byte, what string) error {
	r, err := m.region(addr, uint64(len(b)), what)
	if err != nil {
		return err
	}
	copy(r, b)
	return nil
}

// zero clears n bytes at addr.
func (m guestMem) zero(addr, n uint64, what string) error {
	r, err := m.region(addr, n, what)
	if err != nil {
		return err
	}
	clear(r)
	return nil
}

// le is the byte order of every structure boot writes.
var le = binary.LittleEndian
