package mcpserver

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// FuzzToolArguments calls every tool with arbitrary arguments, as a model
// might send them: the server answers each call (a result, an error
// result or a protocol error) without panicking or hanging, and the
// session still works afterwards.
func FuzzToolArguments(f *testing.F) {
	fx := newFixture(f)
	tools, err := fx.cs.ListTools(f.Context(), nil)
	if err != nil {
		f.Fatal(err)
	}
	names := make([]string, len(tools.Tools))
	for i, tl := range tools.Tools {
		names[i] = tl.Name
	}
	for i := range names {
		for _, a := range []string{`{}`, `{"sandbox_id":"sb-1","cmd":"echo hi"}`, `{"code":"1+1","language":"python"}`,
			`{"path":"/etc/hostname","content":"x"}`, `{"action":{"type":"click","x":1,"y":2}}`, `{"url":"http://example.test"}`,
			`{"sandbox_id":1e400}`, `{"timeout_s":-1}`, `null`, `[]`, `"x"`} {
			f.Add(byte(i), []byte(a))
		}
	}
	f.Fuzz(func(t *testing.T, pick byte, raw []byte) {
		name := names[int(pick)%len(names)]
		var args any
		if json.Unmarshal(raw, &args) != nil {
			return // not JSON: the client library would not send it
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		res, err := fx.cs.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			t.Fatalf("%s(%s): no answer within 10 s", name, raw)
		}
		if err == nil && res == nil {
			t.Fatalf("%s(%s): no result and no error", name, raw)
		}
		if err == nil && res.IsError && len(res.Content) == 0 {
			t.Fatalf("%s(%s): an error result that says nothing", name, raw)
		}
	})
}
