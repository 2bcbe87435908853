package desktop

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/jezek/xgb/xproto"
)

// Pointer buttons.
const (
	ButtonLeft       = 1
	ButtonMiddle     = 2
	ButtonRight      = 3
	buttonScrollUp   = 4
	buttonScrollDown = 5
)

// Bounds on one call.
const (
	MaxText   = 4096 // runes typed by one Type
	MaxClicks = 3    // a triple click at most
	maxScroll = 100  // wheel steps
)

// Move puts the pointer at (x, y).
func (d *Display) Move(x, y int) error {
	if err := d.inScreen(x, y); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.fake(xproto.MotionNotify, 0, x, y); err != nil {
		return fmt.Errorf("move to (%d, %d): %w", x, y, err)
	}
	return d.sync()
}

// Click moves to (x, y) and clicks button count times.
func (d *Display) Click(x, y, button, count int) error {
	if err := d.inScreen(x, y); err != nil {
		return err
	}
	if button < ButtonLeft || button > ButtonRight {
		return fmt.Errorf("button %d: want 1 (left), 2 (middle) or 3 (right)", button)
	}
	if count < 1 || count > MaxClicks {
		return fmt.Errorf("%d clicks: want 1 to %d", count, MaxClicks)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.fake(xproto.MotionNotify, 0, x, y); err != nil {
		return fmt.Errorf("click: %w", err)
	}
	for range count {
		if err := d.fake(xproto.ButtonPress, byte(button), 0, 0); err != nil {
			return fmt.Errorf("click: %w", err)
		}
		if err := d.fake(xproto.ButtonRelease, byte(button), 0, 0); err != nil {
			return fmt.Errorf("click: %w", err)
		}
	}
	return d.sync()
}

// Drag presses the left button at (x1, y1), moves to (x2, y2) and releases.
func (d *Display) Drag(x1, y1, x2, y2 int) error {
	if err := d.inScreen(x1, y1); err != nil {
		return err
	}
	if err := d.inScreen(x2, y2); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, ev := range []struct {
		typ    byte
		detail byte
		x, y   int
	}{{xproto.MotionNotify, 0, x1, y1}, {xproto.ButtonPress, ButtonLeft, 0, 0}, {xproto.MotionNotify, 0, x2, y2}, {xproto.ButtonRelease, ButtonLeft, 0, 0}} {
		if err := d.fake(ev.typ, ev.detail, ev.x, ev.y); err != nil {
			return fmt.Errorf("drag: %w", err)
		}
	}
	return d.sync()
}

// Scroll turns the wheel dy steps: negative up, positive down.
func (d *Display) Scroll(dy int) error {
	if dy == 0 || dy < -maxScroll || dy > maxScroll {
		return fmt.Errorf("scroll %d: want 1 to %d steps either way", dy, maxScroll)
	}
	button := byte(buttonScrollDown)
	if dy < 0 {
		button, dy = buttonScrollUp, -dy
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for range dy {
		if err := d.fake(xproto.ButtonPress, button, 0, 0); err != nil {
			return fmt.Errorf("scroll: %w", err)
		}
		if err := d.fake(xproto.ButtonRelease, button, 0, 0); err != nil {
			return fmt.Errorf("scroll: %w", err)
		}
	}
	return d.sync()
}

// Type types text as key presses into whatever has the focus. A
// character no key produces is bound to a spare keycode for its press
// and unbound after, as xdotool does, so any Unicode text can be typed.
func (d *Display) Type(text string) error {
	if !utf8.ValidString(text) {
		return fmt.Errorf("text is not UTF-8")
	}
	if n := utf8.RuneCountInString(text); n > MaxText {
		return fmt.Errorf("text of %d characters: at most %d per action", n, MaxText)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.freshKeymap(); err != nil {
		return err
	}
	for _, r := range text {
		if err := d.typeRune(r); err != nil {
			return fmt.Errorf("type %q: %w", r, err)
		}
	}
	return d.sync()
}

// Key presses a combination such as "ctrl+l", "shift+Tab" or "Return":
// modifiers in order, then the key, then releases in reverse.
func (d *Display) Key(combo string) error {
	parts := strings.Split(combo, "+")
	if combo == "" || len(parts) > 5 {
		return fmt.Errorf("key %q: want key names joined by +, such as ctrl+l", combo)
	}
	var codes []xproto.Keycode
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.freshKeymap(); err != nil {
		return err
	}
	for _, p := range parts {
		sym, ok := keysymOf(p)
		if !ok {
			return fmt.Errorf("key %q: unknown key name %q (names: ctrl, shift, alt, super, enter, tab, esc, backspace, delete, up, down, left, right, home, end, pageup, pagedown, space, f1…f12, or one character)", combo, p)
		}
		code, _, ok := d.keycodeOf(sym)
		if !ok {
			return fmt.Errorf("key %q: no key on this keyboard produces %q", combo, p)
		}
		codes = append(codes, code)
	}
	for _, c := range codes {
		if err := d.fake(xproto.KeyPress, byte(c), 0, 0); err != nil {
			return fmt.Errorf("key %q: %w", combo, err)
		}
	}
	for i := len(codes) - 1; i >= 0; i-- {
		if err := d.fake(xproto.KeyRelease, byte(codes[i]), 0, 0); err != nil {
			return fmt.Errorf("key %q: %w", combo, err)
		}
	}
	return d.sync()
}

// Keysyms used here (X11/keysymdef.h).
const (
	symShiftL = 0xffe1
	symCtrlL  = 0xffe3
	symAltL   = 0xffe9
	symSuperL = 0xffeb
)

var named = map[string]xproto.Keysym{
	"ctrl": symCtrlL, "control": symCtrlL, "shift": symShiftL, "alt": symAltL, "super": symSuperL, "meta": symSuperL,
	"enter": 0xff0d, "return": 0xff0d, "tab": 0xff09, "esc": 0xff1b, "escape": 0xff1b, "backspace": 0xff08,
	"delete": 0xffff, "insert": 0xff63, "up": 0xff52, "down": 0xff54, "left": 0xff51, "right": 0xff53,
	"home": 0xff50, "end": 0xff57, "pageup": 0xff55, "pagedown": 0xff56, "space": 0x20,
}

// keysymOf is a key name's keysym: a name above, f1 to f12, or one
// character.
func keysymOf(name string) (xproto.Keysym, bool) {
	if s, ok := named[strings.ToLower(name)]; ok {
		return s, true
	}
	var n int
	if _, err := fmt.Sscanf(strings.ToLower(name), "f%d", &n); err == nil && n >= 1 && n <= 12 && fmt.Sprintf("f%d", n) == strings.ToLower(name) {
		return xproto.Keysym(0xffbe + n - 1), true
	}
	if r, size := utf8.DecodeRuneInString(name); size == len(name) && r != utf8.RuneError {
		return runeKeysym(r), true
	}
	return 0, false
}

// runeKeysym is the keysym of a character: Latin-1 ones are their code,
// others 0x01000000 + the code point (X11's Unicode keysyms).
func runeKeysym(r rune) xproto.Keysym {
	switch {
	case r == '\n':
		return 0xff0d
	case r == '\t':
		return 0xff09
	case r >= 0x20 && r <= 0x7e, r >= 0xa0 && r <= 0xff:
		return xproto.Keysym(r)
	}
	return xproto.Keysym(0x01000000 + r)
}

// readKeymap reads the keyboard mapping.
func (d *Display) readKeymap() error {
	count := byte(d.maxKey - d.minKey + 1)
	rep, err := xproto.GetKeyboardMapping(d.conn, d.minKey, count).Reply()
	if err != nil {
		return fmt.Errorf("read the keyboard mapping of %s: %w", d.name, err)
	}
	d.perKey, d.syms = int(rep.KeysymsPerKeycode), rep.Keysyms
	return nil
}

// keycodeOf finds the key producing sym, and whether it needs shift.
func (d *Display) keycodeOf(sym xproto.Keysym) (xproto.Keycode, bool, bool) {
	for level := 0; level < min(2, d.perKey); level++ {
		for i := 0; i*d.perKey+level < len(d.syms); i++ {
			if d.syms[i*d.perKey+level] == sym {
				return d.minKey + xproto.Keycode(i), level == 1, true
			}
		}
	}
	return 0, false, false
}

// spareKeycode is a keycode bound to nothing, for characters no key has.
func (d *Display) spareKeycode() (xproto.Keycode, bool) {
	for i := d.perKey; i+d.perKey <= len(d.syms); i += d.perKey {
		free := true
		for _, s := range d.syms[i : i+d.perKey] {
			if s != 0 {
				free = false
				break
			}
		}
		if free {
			return d.minKey + xproto.Keycode(i/d.perKey), true
		}
	}
	return 0, false
}

// typeRune presses and releases the key of r (with shift if it needs it).
func (d *Display) typeRune(r rune) error {
	sym := runeKeysym(r)
	code, shift, ok := d.keycodeOf(sym)
	if !ok {
		spare, ok := d.spareKeycode()
		if !ok {
			return fmt.Errorf("no key produces it and no keycode is free to bind it to")
		}
		return d.withBinding(spare, sym, func() error { return d.press(spare, false) })
	}
	return d.press(code, shift)
}

func (d *Display) press(code xproto.Keycode, shift bool) error {
	var shiftCode xproto.Keycode
	if shift {
		c, _, ok := d.keycodeOf(symShiftL)
		if !ok {
			return fmt.Errorf("the keyboard has no shift key")
		}
		shiftCode = c
		if err := d.fake(xproto.KeyPress, byte(shiftCode), 0, 0); err != nil {
			return err
		}
	}
	if err := d.fake(xproto.KeyPress, byte(code), 0, 0); err != nil {
		return err
	}
	if err := d.fake(xproto.KeyRelease, byte(code), 0, 0); err != nil {
		return err
	}
	if shift {
		return d.fake(xproto.KeyRelease, byte(shiftCode), 0, 0)
	}
	return nil
}

// withBinding binds code to sym for fn, then unbinds it. The server
// tells clients of the change (MappingNotify); the press is synced before
// the binding goes, so the client reads the key while it is bound.
func (d *Display) withBinding(code xproto.Keycode, sym xproto.Keysym, fn func() error) error {
	if err := d.bind(code, sym); err != nil {
		return err
	}
	err := fn()
	if err == nil {
		err = d.sync()
	}
	if uerr := d.bind(code, 0); err == nil && uerr != nil {
		err = fmt.Errorf("unbind keycode %d: %w", code, uerr)
	}
	return err
}
