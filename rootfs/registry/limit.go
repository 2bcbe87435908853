package registry

import (
	"fmt"
	"io"
	"net/http"
	"strings"
)

// manifestLimit refuses manifest responses (GET …/manifests/…) longer than
// max before they are read into memory: go-containerregistry's own bound
// is 100 MiB.
type manifestLimit struct {
	next http.RoundTripper
	max  int64
}

func (m *manifestLimit) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := m.next.RoundTrip(req)
	if err != nil || req.Method != http.MethodGet || !strings.Contains(req.URL.Path, "/manifests/") {
		return resp, err
	}
	if resp.ContentLength > m.max {
		resp.Body.Close()
		return nil, fmt.Errorf("%w: manifest of %d bytes, the limit is %d", ErrTooLarge, resp.ContentLength, m.max)
	}
	resp.Body = &limitedBody{rc: resp.Body, left: m.max}
	return resp, nil
}

// limitedBody fails a read past its limit instead of ending quietly, so a
// truncated manifest is never mistaken for a whole one.
type limitedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		return 0, fmt.Errorf("%w: manifest longer than the limit", ErrTooLarge)
	}
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }
