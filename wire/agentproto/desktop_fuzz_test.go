package agentproto

import (
	"net/url"
	"testing"
)

// FuzzParseShot: a screenshot query parses to a region of non-negative
// 16-bit coordinates (or none) and a scale from MinScale to 1, or is
// refused; never anything else.
func FuzzParseShot(f *testing.F) {
	f.Add("x=0&y=0&w=10&h=10&scale=0.5")
	f.Add("x=1&scale=NaN")
	f.Add("w=99999999999999999999&scale=1e-300")
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		if r, err := ParseRegion(q); err == nil && !r.Empty() {
			if r.Min.X < 0 || r.Min.Y < 0 || r.Dx() <= 0 || r.Dy() <= 0 || r.Max.X > 2*maxRegionCoord || r.Max.Y > 2*maxRegionCoord {
				t.Fatalf("%q: region %v", raw, r)
			}
		}
		if s, err := ParseScale(q); err == nil && (s < MinScale || s > 1) {
			t.Fatalf("%q: scale %v", raw, s)
		}
	})
}
