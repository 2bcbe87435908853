package desktop

import (
	"fmt"

	"github.com/jezek/xgb/xproto"
	"github.com/jezek/xgb/xtest"
)

// PointerEvent moves the pointer to (x, y) and presses or releases the
// buttons whose bits in mask (bit 0: button 1 … bit 7: button 8) differ
// from the last PointerEvent's: the pointer model of a VNC client. Events
// are sent without waiting for the server, as a stream of them comes.
func (d *Display) PointerEvent(x, y int, mask uint8) error {
	if err := d.inScreen(x, y); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	xtest.FakeInput(d.conn, xproto.MotionNotify, 0, 0, d.root, int16(x), int16(y), 0)
	for i := range 8 {
		bit := uint8(1) << i
		if (mask^d.buttons)&bit == 0 {
			continue
		}
		typ := byte(xproto.ButtonRelease)
		if mask&bit != 0 {
			typ = xproto.ButtonPress
		}
		xtest.FakeInput(d.conn, typ, byte(i+1), 0, d.root, 0, 0, 0)
	}
	d.buttons = mask
	return nil
}

// KeyEvent presses (down) or releases the key of an X keysym, as a VNC
// client sends them (shift and the other modifiers are keys of their
// own). A keysym no key produces is bound to a spare keycode while it is
// held.
func (d *Display) KeyEvent(sym uint32, down bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.freshKeymap(); err != nil {
		return err
	}
	ks := xproto.Keysym(sym)
	if code, ok := d.held[ks]; ok {
		if down {
			return nil // a repeat of a held, bound key
		}
		xtest.FakeInput(d.conn, xproto.KeyRelease, byte(code), 0, d.root, 0, 0, 0)
		delete(d.held, ks)
		return d.bind(code, 0)
	}
	code, _, ok := d.keycodeOf(ks)
	if !ok {
		if !down {
			return nil // released but never pressed here
		}
		spare, ok := d.spareKeycode()
		if !ok {
			return fmt.Errorf("keysym %#x: no key produces it and no keycode is free to bind it to", sym)
		}
		if err := d.bind(spare, ks); err != nil {
			return err
		}
		if d.held == nil {
			d.held = map[xproto.Keysym]xproto.Keycode{}
		}
		d.held[ks], code = spare, spare
	}
	typ := byte(xproto.KeyRelease)
	if down {
		typ = xproto.KeyPress
	}
	xtest.FakeInput(d.conn, typ, byte(code), 0, d.root, 0, 0, 0)
	return nil
}

// bind maps keycode code to sym at every level (0: unbinds it) and keeps
// the local copy of the mapping in step, so another held key gets another
// spare keycode.
func (d *Display) bind(code xproto.Keycode, sym xproto.Keysym) error {
	syms := make([]xproto.Keysym, d.perKey)
	for i := range syms {
		syms[i] = sym
	}
	if err := xproto.ChangeKeyboardMappingChecked(d.conn, 1, code, byte(d.perKey), syms).Check(); err != nil {
		return fmt.Errorf("bind keycode %d: %w", code, err)
	}
	i := int(code-d.minKey) * d.perKey
	copy(d.syms[i:i+d.perKey], syms)
	return nil
}
