package api

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/sietch-vm/sietch/api/model"
)

// Request decoding never panics, and every refusal is a 4xx with a
// stable code.
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{
		`{"image":"counter","limits":{"cpus":2,"memory_mib":256,"timeout_s":60,"on_timeout":"snapshot"},"labels":{"a":"b"}}`,
		`{"snapshot":"snap-1"}`, `{"cmd":"sh","args":["-c","echo"],"env":{"A":"1"},"stdin":"aGk=","timeout_ms":5}`,
		`{"count":3,"snapshot":"s"}`, `{"guest_port":80,"host_port":0,"host_addr":"127.0.0.1"}`, `{"kind":"diff"}`,
		`{"name":"web","image":"default","start_cmd":"srv","ready_port":8000,"ready_cmd":"true","ready_timeout_s":60,"limits":{"memory_mib":512}}`,
		`{"to_disk":true}`, `{"template":"web","env":{"A":"1"}}`,
		`{"cmd":"bash","tty":{"rows":24,"cols":80},"detach":true}`, `{"signal":"TERM"}`, `{"code":"1+1","timeout_ms":10}`,
		`{"id":"c","language":"python","cwd":"/","env":{"A":"b"}}`, `{"tty":{"rows":-1}}`,
		``, `{`, `[]`, `{"x":1}`, `{"image":1}`, `{} {}`, `null`, `{"labels":{"a":null}}`, "\xff",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		targets := []any{&model.CreateRequest{}, &model.ExecRequest{}, &model.ForkRequest{}, &model.PortRequest{}, &model.SnapshotRequest{},
			&model.TemplateRequest{}, &model.PauseRequest{}, &model.SignalRequest{}, &model.RunRequest{}, &model.ContextRequest{}}
		for _, v := range targets {
			for _, emptyOK := range []bool{false, true} {
				req := httptest.NewRequest("POST", "/", bytes.NewReader(b))
				rerr := decodeRequest(httptest.NewRecorder(), req, v, emptyOK)
				if rerr == nil {
					continue
				}
				if rerr.Status < 400 || rerr.Status > 499 || rerr.Code == "" || rerr.Message == "" {
					t.Fatalf("decode %q: %+v", b, rerr)
				}
				if rerr.Status == http.StatusBadRequest && rerr.Code != model.CodeInvalidJSON && rerr.Code != model.CodeUnknownField {
					t.Fatalf("decode %q: code %s", b, rerr.Code)
				}
			}
		}
	})
}
