package devices

import (
	"testing"
	"time"
)

func TestRTCReadsHostClock(t *testing.T) {
	at := time.Date(2026, 11, 27, 23, 58, 7, 0, time.UTC)
	r := NewRTC(func() time.Time { return at })
	read := func(idx uint8) uint8 {
		r.Write(0, []byte{idx | 0x80}) // NMI-disable bit set, as Linux does
		b := []byte{0}
		r.Read(1, b)
		return b[0]
	}
	for _, tc := range []struct {
		idx  uint8
		want uint8
	}{
		// BCD, as Linux on x86 always reads it: 0x58 is 58.
		{rtcSeconds, 0x07}, {rtcMinutes, 0x58}, {rtcHours, 0x23}, {rtcDay, 0x27}, {rtcMonth, 0x11},
		{rtcYear, 0x26}, {rtcCentury, 0x20}, {rtcWeekday, uint8(time.Friday) + 1},
		{rtcStatusB, statusB24h}, {rtcStatusD, statusDVRT}, {rtcStatusC, 0},
	} {
		if got := read(tc.idx); got != tc.want {
			t.Errorf("register %#x = %#x, want %#x", tc.idx, got, tc.want)
		}
	}
	if read(rtcStatusA)&0x80 != 0 {
		t.Error("update-in-progress is set: Linux would poll")
	}
	b := []byte{0, 0, 0}
	r.Read(0, b)
	if b[0] != rtcStatusA || b[2] != 0xff {
		t.Errorf("index read back %#x, out-of-range byte %#x", b[0], b[2])
	}
}
