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
		{rtcSeconds, 7}, {rtcMinutes, 58}, {rtcHours, 23}, {rtcDay, 27}, {rtcMonth, 11},
		{rtcYear, 26}, {rtcCentury, 20}, {rtcWeekday, uint8(time.Friday) + 1},
		{rtcStatusB, statusB24h | statusBBin}, {rtcStatusD, statusDVRT}, {rtcStatusC, 0},
	} {
		if got := read(tc.idx); got != tc.want {
			t.Errorf("register %#x = %d, want %d", tc.idx, got, tc.want)
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
