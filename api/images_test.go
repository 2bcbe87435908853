package api

import (
	"archive/tar"
	"bytes"
	"net/http"
	"strings"
	"testing"
)

func contextTar(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for name, data := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data))}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(data))
	}
	tw.Close()
	return b.Bytes()
}

// A build is refused before it runs, as JSON, for a bad query, a context
// that is not a safe tar archive, or one without its Dockerfile.
func TestBuildImageRefusals(t *testing.T) {
	e := newEnv(t, nil)
	ok := contextTar(t, map[string]string{"Dockerfile": "FROM scratch\n"})
	for _, tc := range []struct {
		query string
		body  []byte
		want  string
	}{
		{"", ok, "name is required"},
		{"?name=x&color=red", ok, "unknown query parameter"},
		{"?name=x&build_arg=novalue", ok, "want NAME=VALUE"},
		{"?name=x&no_cache=maybe", ok, "want true or false"},
		{"?name=../x", ok, "image name"},
		{"?name=x", []byte("not a tar archive, just text that is long enough to be read as a header block by the reader......................................................................................................................................................................................................................................................................................................................................................................................................................................................................................."), "build context"},
		{"?name=x", contextTar(t, map[string]string{"../escape": "x"}), "build context"},
		{"?name=x", contextTar(t, map[string]string{"app.py": "x"}), "no Dockerfile"},
		{"?name=x&dockerfile=/etc/passwd", ok, "a path inside the build context"},
	} {
		st, b := e.do("POST", "/v1/images"+tc.query, tc.body)
		if st != http.StatusBadRequest || !strings.Contains(string(b), tc.want) {
			t.Errorf("POST /v1/images%s: %d %s; want 400 saying %q", tc.query, st, b, tc.want)
		}
	}
}
