package api

import (
	"net/http"
	"strings"
	"testing"

	"github.com/sietch-vm/sietch/api/model"
)

// The network routes' refusals, on a sietchd without sandbox networking
// (as every api test's) and a test guest: a create that asks for network
// says why it gets none, a sandbox without an interface has no network to show or change,
// and a malformed policy is refused before anything is looked up. The
// policy itself is tested for real in internal/hostnet, its wiring in
// sandbox (TestNetworkWithFakeVMM).
func TestNetworkRoutes(t *testing.T) {
	e := newEnv(t, nil)
	st, body := e.do("POST", "/v1/sandboxes", model.CreateRequest{Image: "counter", Network: &model.NetworkSpec{Enabled: true}})
	if got := apiError(t, body); st != http.StatusBadRequest || !strings.Contains(got.Message, "no network stack") {
		t.Errorf("create with network: %d %+v", st, got)
	}
	sb := e.create(model.CreateRequest{Image: "counter"})
	if sb.Network != nil {
		t.Errorf("a sandbox created without network has %+v", sb.Network)
	}
	st, body = e.do("GET", "/v1/sandboxes/"+sb.ID+"/network", nil)
	if got := apiError(t, body); st != http.StatusConflict || got.Code != model.CodeWrongState || !strings.Contains(got.Message, "no network interface") {
		t.Errorf("GET network of a sandbox without one: %d %+v", st, got)
	}
	for _, bad := range []string{"0.0.0.0/0;", "::/0", "*.example.org", strings.Repeat("a", 300)} {
		st, body = e.do("PUT", "/v1/sandboxes/"+sb.ID+"/network", model.NetworkSpec{Enabled: true, Allow: []string{bad}})
		if got := apiError(t, body); st != http.StatusBadRequest || got.Code != model.CodeBadRequest {
			t.Errorf("PUT network allowing %.20q: %d %+v", bad, st, got)
		}
	}
	long := make([]string, 65)
	for i := range long {
		long[i] = "example.org"
	}
	st, body = e.do("PUT", "/v1/sandboxes/"+sb.ID+"/network", model.NetworkSpec{Enabled: true, Deny: long})
	if got := apiError(t, body); st != http.StatusBadRequest || !strings.Contains(got.Message, "at most 64") {
		t.Errorf("PUT network with 65 entries: %d %+v", st, got)
	}
	st, body = e.do("PUT", "/v1/sandboxes/"+sb.ID+"/network", map[string]any{"enabled": true, "egress": "all"})
	if got := apiError(t, body); st != http.StatusBadRequest || got.Code != model.CodeUnknownField {
		t.Errorf("PUT network with an unknown field: %d %+v", st, got)
	}
	st, _ = e.do("GET", "/v1/sandboxes/sb-nope/network", nil)
	if st != http.StatusNotFound {
		t.Errorf("GET network of no sandbox: %d", st)
	}
	e.call("DELETE", "/v1/sandboxes/"+sb.ID, nil, http.StatusNoContent, nil)
}
