package devices

import "testing"

func TestPower(t *testing.T) {
	tests := []struct {
		name string
		off  uint64
		data []byte
		want []PowerEvent
	}{
		{"power off", 0, []byte{PowerOffValue}, []PowerEvent{PowerOff}},
		{"reset", 0, []byte{PowerResetValue}, []PowerEvent{PowerReset}},
		{"unknown value", 0, []byte{0x02}, nil},
		{"all ones", 0, []byte{0xff}, nil},
		{"wide write uses the first byte", 0, []byte{PowerResetValue, 0, 0, 0}, []PowerEvent{PowerReset}},
		{"past the port", 1, []byte{PowerOffValue}, nil},
		{"empty", 0, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []PowerEvent
			p := NewPower(func(e PowerEvent) { got = append(got, e) })
			p.Write(tt.off, tt.data)
			p.Write(tt.off, tt.data) // a second request is reported again
			want := append(append([]PowerEvent(nil), tt.want...), tt.want...)
			if len(got) != len(want) {
				t.Fatalf("events = %v, want %v", got, want)
			}
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("events = %v, want %v", got, want)
				}
			}
		})
	}
}

func TestPowerReadsZero(t *testing.T) {
	p := NewPower(nil)
	buf := []byte{1, 2, 3}
	p.Read(0, buf)
	if buf[0]|buf[1]|buf[2] != 0 {
		t.Fatalf("read %v, want zeros", buf)
	}
	p.Write(0, []byte{PowerOffValue}) // nil callback: ignored, no panic
}
