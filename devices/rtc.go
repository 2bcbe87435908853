package devices

import (
	"sync"
	"time"
)

// CMOS RTC (MC146818) at ports 0x70 (index) and 0x71 (data): just enough
// for Linux to read the wall clock at boot without polling. Without it,
// reads return all-ones, the "update in progress" bit looks stuck, and the
// guest spins for seconds (emulated kernel mode makes that worse).
const (
	RTCBase = 0x70
	RTCSize = 2
)

// CMOS register indexes (MC146818 data sheet; Linux include/linux/mc146818rtc.h).
const (
	rtcSeconds  = 0x00
	rtcMinutes  = 0x02
	rtcHours    = 0x04
	rtcWeekday  = 0x06
	rtcDay      = 0x07
	rtcMonth    = 0x08
	rtcYear     = 0x09
	rtcStatusA  = 0x0a
	rtcStatusB  = 0x0b
	rtcStatusC  = 0x0c
	rtcStatusD  = 0x0d
	rtcCentury  = 0x32
	statusB24h  = 0x02 // 24-hour mode; data mode BCD (bit 2, binary, clear)
	statusDVRT  = 0x80 // valid RAM and time
	rtcIndexMsk = 0x7f // bit 7 of the index port is the NMI mask
)

// RTC is the CMOS clock; it reads the host's clock (UTC) on every access
// and ignores writes to the time registers, as Firecracker's does. Time
// registers are BCD: Linux on x86 decodes them as BCD whatever status B
// says (RTC_ALWAYS_BCD in arch/x86/include/asm/mc146818rtc.h), so a
// binary clock would boot the guest years off.
type RTC struct {
	mu    sync.Mutex
	index uint8
	now   func() time.Time
}

// NewRTC returns an RTC reading now (nil: time.Now).
func NewRTC(now func() time.Time) *RTC {
	if now == nil {
		now = time.Now
	}
	return &RTC{now: now}
}

// Read implements Device.
func (r *RTC) Read(offset uint64, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range data {
		switch offset + uint64(i) {
		case 0:
			data[i] = r.index
		case 1:
			data[i] = r.register(r.index)
		default:
			data[i] = 0xff
		}
	}
}

// Write implements Device.
func (r *RTC) Write(offset uint64, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, b := range data {
		if offset+uint64(i) == 0 {
			r.index = b & rtcIndexMsk
		}
	}
}

func (r *RTC) register(idx uint8) uint8 {
	t := r.now().UTC()
	switch idx {
	case rtcSeconds:
		return bcd(t.Second())
	case rtcMinutes:
		return bcd(t.Minute())
	case rtcHours:
		return bcd(t.Hour())
	case rtcWeekday:
		return bcd(int(t.Weekday()) + 1)
	case rtcDay:
		return bcd(t.Day())
	case rtcMonth:
		return bcd(int(t.Month()))
	case rtcYear:
		return bcd(t.Year() % 100)
	case rtcCentury:
		return bcd(t.Year() / 100 % 100)
	case rtcStatusA:
		return 0x26 // 32.768 kHz time base, 1024 Hz rate; update-in-progress clear
	case rtcStatusB:
		return statusB24h
	case rtcStatusD:
		return statusDVRT
	}
	return 0 // status C (no interrupts pending) and CMOS RAM
}

// bcd encodes 0 <= n < 100 as two BCD digits.
func bcd(n int) uint8 { return uint8(n/10<<4 | n%10) }
