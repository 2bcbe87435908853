package mcpserver

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/sietch-vm/sietch/api/client"
	"github.com/sietch-vm/sietch/api/client/clienttest"
	"github.com/sietch-vm/sietch/api/model"
)

// fixture is an MCP client session with a Server over an in-memory
// transport, in front of a fake sietchd.
type fixture struct {
	t    testing.TB
	fake *clienttest.Server
	api  *client.Client
	srv  *Server
	cs   *mcp.ClientSession
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	fake := clienttest.NewServer()
	t.Cleanup(fake.Close)
	api, err := client.New(fake.URL, clienttest.Token)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, fake: fake, api: api, srv: New(api, Options{Version: "test"})}
	f.cs = f.connect()
	t.Cleanup(f.srv.Close)
	return f
}

// connect opens another client session.
func (f *fixture) connect() *mcp.ClientSession {
	f.t.Helper()
	st, ct := mcp.NewInMemoryTransports()
	if _, err := f.srv.MCP().Connect(f.t.Context(), st, nil); err != nil {
		f.t.Fatal(err)
	}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "test"}, nil).Connect(f.t.Context(), ct, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { cs.Close() })
	return cs
}

// call calls a tool, failing the test on a protocol error, and decodes
// its structured output into out (if not nil).
func call(t *testing.T, cs *mcp.ClientSession, name string, args map[string]any, out any) *mcp.CallToolResult {
	t.Helper()
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if out != nil && !res.IsError {
		b, _ := json.Marshal(res.StructuredContent)
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s: structured output %s: %v", name, b, err)
		}
	}
	return res
}

// textOf joins a result's text contents.
func textOf(res *mcp.CallToolResult) string {
	var parts []string
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			parts = append(parts, tc.Text)
		}
	}
	return strings.Join(parts, "\n")
}

func TestToolsHaveSchemasAndDescriptions(t *testing.T) {
	f := newFixture(t)
	want := map[string][]string{ // tool: required inputs
		"create_sandbox": nil, "list_sandboxes": nil, "list_templates": nil, "delete_sandbox": {"sandbox_id"},
		"exec": {"sandbox_id"}, "run_code": {"sandbox_id", "code"},
		"read_file": {"sandbox_id", "path"}, "write_file": {"sandbox_id", "path", "content"}, "list_directory": {"sandbox_id", "path"},
		"snapshot": {"sandbox_id"}, "restore": {"snapshot_id"}, "fork": {"sandbox_id"},
		"screenshot": {"sandbox_id"}, "computer": {"sandbox_id", "actions"}, "open_url": {"sandbox_id", "url"},
	}
	res, err := f.cs.ListTools(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, tool := range res.Tools {
		seen[tool.Name] = true
		req, ok := want[tool.Name]
		if !ok {
			t.Errorf("unexpected tool %s", tool.Name)
			continue
		}
		if len(tool.Description) < 60 {
			t.Errorf("%s: description %q is too thin for a model to choose by", tool.Name, tool.Description)
		}
		in, _ := tool.InputSchema.(map[string]any)
		if in["type"] != "object" {
			t.Errorf("%s: input schema %v is not an object", tool.Name, tool.InputSchema)
		}
		var got []string
		reqd, _ := in["required"].([]any)
		for _, r := range reqd {
			got = append(got, r.(string))
		}
		if strings.Join(got, ",") != strings.Join(req, ",") {
			t.Errorf("%s: required %v, want %v", tool.Name, got, req)
		}
		props, _ := in["properties"].(map[string]any)
		for name, p := range props {
			if d, _ := p.(map[string]any)["description"].(string); d == "" && name != "value" {
				t.Errorf("%s: input %s has no description", tool.Name, name)
			}
		}
		if out, _ := tool.OutputSchema.(map[string]any); out["type"] != "object" {
			t.Errorf("%s: output schema %v is not an object", tool.Name, tool.OutputSchema)
		}
	}
	for name := range want {
		if !seen[name] {
			t.Errorf("tool %s is missing", name)
		}
	}
}

func TestExec(t *testing.T) {
	f := newFixture(t)
	var sb SandboxOutput
	call(t, f.cs, "create_sandbox", map[string]any{"env": map[string]string{"A": "1"}}, &sb)

	var out ExecOutput
	res := call(t, f.cs, "exec", map[string]any{"sandbox_id": sb.Sandbox.ID, "cmd": "echo", "args": []string{"hi", "there"}}, &out)
	if res.IsError || out.ExitCode != 0 || out.Stdout != "hi there\n" || !strings.Contains(textOf(res), "exit code 0\n--- stdout ---\nhi there\n") {
		t.Errorf("exec echo: %+v %q", out, textOf(res))
	}
	res = call(t, f.cs, "exec", map[string]any{"sandbox_id": sb.Sandbox.ID, "cmd": "nope"}, &out)
	if res.IsError || out.ExitCode != 127 || !strings.Contains(out.Stderr, "not found") {
		t.Errorf("a failing command is a result, not a tool error: %+v", out)
	}

	// A shell line runs as sh -c; output past the bound keeps head and tail.
	f.fake.Exec = func(req model.ExecRequest, o *clienttest.ExecOutput) model.ExecExit {
		if req.Cmd != "sh" || len(req.Args) != 2 || req.Args[0] != "-c" || req.TimeoutMS != 5000 {
			o.Stderr([]byte("unexpected request"))
			return model.ExecExit{Code: 99}
		}
		o.Stdout([]byte("START"))
		for range 100 {
			o.Stdout(bytes.Repeat([]byte("x"), 1000))
		}
		o.Stdout([]byte("END"))
		return model.ExecExit{Code: 3}
	}
	res = call(t, f.cs, "exec", map[string]any{"sandbox_id": sb.Sandbox.ID, "command": "yes | head", "timeout_s": 5, "max_output_bytes": 100}, &out)
	if out.ExitCode != 3 || !strings.HasPrefix(out.Stdout, "START") || !strings.HasSuffix(out.Stdout, "END") || out.StdoutDropped != 100008-100 {
		t.Errorf("bounded exec: exit %d, dropped %d, stdout %q", out.ExitCode, out.StdoutDropped, out.Stdout)
	}
	if !strings.Contains(out.Stdout, "[… 99908 bytes of output dropped …]") {
		t.Errorf("bounded stdout does not say what it dropped: %q", out.Stdout)
	}

	for _, c := range []struct {
		args map[string]any
		want string
	}{
		{map[string]any{"sandbox_id": sb.Sandbox.ID}, "give command"},
		{map[string]any{"sandbox_id": sb.Sandbox.ID, "command": "ls", "cmd": "ls"}, "not both"},
		{map[string]any{"sandbox_id": "sb-404", "command": "ls"}, "not_found"},
		{map[string]any{"sandbox_id": f.fake.AddSandbox(model.StateRunning, false), "command": "ls"}, "agent_unavailable"},
	} {
		res := call(t, f.cs, "exec", c.args, nil)
		if !res.IsError || !strings.Contains(textOf(res), c.want) {
			t.Errorf("exec %v: error %v %q; want a tool error saying %q", c.args, res.IsError, textOf(res), c.want)
		}
	}
}

func TestRunCode(t *testing.T) {
	f := newFixture(t)
	id := f.fake.AddSandbox(model.StateRunning, true)
	png := []byte("\x89PNG\r\n\x1a\nfake image")
	defaultRun := f.fake.Run // print, raise, expressions
	f.fake.Run = func(c model.Context, code string, send func(model.RunEvent)) model.RunEnd {
		send(model.RunEvent{Stdout: "in " + c.ID + "\n"})
		send(model.RunEvent{Result: map[string]string{"text/plain": "<Figure>", "image/png": base64.StdEncoding.EncodeToString(png)}})
		send(model.RunEvent{Result: map[string]string{"text/plain": "42"}})
		return model.RunEnd{Status: model.RunOK, ExecutionCount: 1}
	}
	var out RunCodeOutput
	res := call(t, f.cs, "run_code", map[string]any{"sandbox_id": id, "code": "6*7", "language": "bash"}, &out)
	if res.IsError || out.Status != "ok" || out.Stdout != "in default-bash\n" || len(out.Results) != 2 || out.Results[1].Text != "42" {
		t.Fatalf("run_code: %+v %q", out, textOf(res))
	}
	if got := out.Results[0].Formats; strings.Join(got, ",") != "image/png,text/plain" {
		t.Errorf("formats %v", got)
	}
	var img *mcp.ImageContent
	for _, c := range res.Content {
		if ic, ok := c.(*mcp.ImageContent); ok {
			img = ic
		}
	}
	if img == nil || img.MIMEType != "image/png" || !bytes.Equal(img.Data, png) {
		t.Errorf("the PNG result is not image content: %+v", res.Content)
	}

	f.fake.Run = defaultRun
	res = call(t, f.cs, "run_code", map[string]any{"sandbox_id": id, "code": "raise ValueError"}, &out)
	if out.Status != "error" || out.Error == nil || out.Error.Name != "ValueError" || !strings.Contains(textOf(res), "--- error ---\nValueError") {
		t.Errorf("an exception: %+v %q", out, textOf(res))
	}
	res = call(t, f.cs, "run_code", map[string]any{"sandbox_id": id, "code": "1", "language": "cobol"}, nil)
	if !res.IsError {
		t.Errorf("language cobol was accepted: %q", textOf(res))
	}
}

func TestFiles(t *testing.T) {
	f := newFixture(t)
	id := f.fake.AddSandbox(model.StateRunning, true)
	var w WriteFileOutput
	if res := call(t, f.cs, "write_file", map[string]any{"sandbox_id": id, "path": "/root/w/hello.txt", "content": "hello\n"}, &w); res.IsError || w.Bytes != 6 {
		t.Fatalf("write_file: %q", textOf(res))
	}
	var r ReadFileOutput
	res := call(t, f.cs, "read_file", map[string]any{"sandbox_id": id, "path": "/root/w/hello.txt"}, &r)
	if res.IsError || r.Content != "hello\n" || r.Encoding != "utf-8" || r.Mode != "0644" || r.Truncated {
		t.Errorf("read_file: %+v %q", r, textOf(res))
	}

	bin := []byte{0, 1, 2, 0xff, 'a'}
	call(t, f.cs, "write_file", map[string]any{"sandbox_id": id, "path": "/root/w/b.bin", "content": base64.StdEncoding.EncodeToString(bin), "encoding": "base64", "mode": "0600"}, nil)
	call(t, f.cs, "read_file", map[string]any{"sandbox_id": id, "path": "/root/w/b.bin"}, &r)
	if got, _ := base64.StdEncoding.DecodeString(r.Content); r.Encoding != "base64" || !bytes.Equal(got, bin) || r.Mode != "0600" {
		t.Errorf("binary read_file: %+v", r)
	}

	// Truncation never splits a character, and says so.
	call(t, f.cs, "write_file", map[string]any{"sandbox_id": id, "path": "/root/w/u.txt", "content": "ab€cd"}, nil)
	res = call(t, f.cs, "read_file", map[string]any{"sandbox_id": id, "path": "/root/w/u.txt", "max_bytes": 4}, &r)
	if r.Encoding != "utf-8" || r.Content != "ab" || !r.Truncated || !strings.Contains(textOf(res), "the first 4 of 7 bytes") {
		t.Errorf("truncated read: %+v %q", r, textOf(res))
	}

	var l ListDirectoryOutput
	res = call(t, f.cs, "list_directory", map[string]any{"sandbox_id": id, "path": "/root/w"}, &l)
	var names []string
	for _, e := range l.Entries {
		names = append(names, e.Name)
	}
	if strings.Join(names, ",") != "b.bin,hello.txt,u.txt" || !strings.Contains(textOf(res), "hello.txt") {
		t.Errorf("list_directory: %v %q", names, textOf(res))
	}
	res = call(t, f.cs, "read_file", map[string]any{"sandbox_id": id, "path": "/nope"}, nil)
	if !res.IsError || !strings.Contains(textOf(res), "not_found") {
		t.Errorf("reading a missing file: %v %q", res.IsError, textOf(res))
	}
}

// ids lists the fake's sandboxes.
func (f *fixture) ids() map[string]bool {
	f.t.Helper()
	all, err := f.api.List(context.Background())
	if err != nil {
		f.t.Fatal(err)
	}
	out := map[string]bool{}
	for _, sb := range all {
		out[sb.ID] = true
	}
	return out
}

func TestSessionEndDeletesItsSandboxes(t *testing.T) {
	f := newFixture(t)
	other := f.connect()
	var gone, kept, forked, survivor SandboxOutput
	call(t, f.cs, "create_sandbox", nil, &gone)
	call(t, f.cs, "create_sandbox", map[string]any{"keep": true}, &kept)
	call(t, other, "create_sandbox", nil, &survivor)
	var snap SnapshotOutput
	call(t, f.cs, "snapshot", map[string]any{"sandbox_id": kept.Sandbox.ID}, &snap)
	call(t, f.cs, "restore", map[string]any{"snapshot_id": snap.Snapshot.ID}, &forked)
	var forks SandboxesOutput
	call(t, f.cs, "fork", map[string]any{"sandbox_id": kept.Sandbox.ID, "count": 2}, &forks)
	if len(forks.Sandboxes) != 2 || !gone.Sandbox.Session || kept.Sandbox.Session || !forks.Sandboxes[0].Session {
		t.Fatalf("session marks: gone %v kept %v forks %+v", gone.Sandbox.Session, kept.Sandbox.Session, forks.Sandboxes)
	}
	var list SandboxesOutput
	call(t, f.cs, "list_sandboxes", nil, &list)
	if len(list.Sandboxes) != 6 {
		t.Errorf("list_sandboxes: %d sandboxes, want 6", len(list.Sandboxes))
	}

	f.cs.Close()
	want := map[string]bool{kept.Sandbox.ID: true, survivor.Sandbox.ID: true}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		got := f.ids()
		if len(got) == len(want) && got[kept.Sandbox.ID] && got[survivor.Sandbox.ID] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the session ended: sandboxes %v, want %v", got, want)
		}
	}
	// The server's end takes the other session's.
	f.srv.Close()
	if got := f.ids(); len(got) != 1 || !got[kept.Sandbox.ID] {
		t.Errorf("after Close: sandboxes %v, want only the kept %s", got, kept.Sandbox.ID)
	}
}

func TestDeleteAndErrors(t *testing.T) {
	f := newFixture(t)
	var sb SandboxOutput
	call(t, f.cs, "create_sandbox", nil, &sb)
	var del DeleteOutput
	if res := call(t, f.cs, "delete_sandbox", map[string]any{"sandbox_id": sb.Sandbox.ID}, &del); res.IsError || del.Deleted != sb.Sandbox.ID {
		t.Errorf("delete_sandbox: %q", textOf(res))
	}
	for name, args := range map[string]map[string]any{
		"delete_sandbox": {"sandbox_id": sb.Sandbox.ID},
		"create_sandbox": {"template": "nope"},
		"snapshot":       {"sandbox_id": "sb-404"},
		"restore":        {"snapshot_id": "snap-404"},
		"fork":           {"sandbox_id": "sb-404"},
	} {
		res := call(t, f.cs, name, args, nil)
		if !res.IsError || !strings.Contains(textOf(res), "not_found") {
			t.Errorf("%s %v: error %v %q; want a not_found tool error", name, args, res.IsError, textOf(res))
		}
	}
	res := call(t, f.cs, "create_sandbox", map[string]any{"template": "default", "image": "default"}, nil)
	if !res.IsError {
		t.Errorf("template and image together were accepted")
	}
	var temps TemplatesOutput
	call(t, f.cs, "list_templates", nil, &temps)
	if len(temps.Templates) != 1 || temps.Templates[0].Name != "default" || len(temps.Images) != 1 {
		t.Errorf("list_templates: %+v", temps)
	}
}

// The desktop tools pass a sandbox's refusal on with what to do, and
// refuse malformed arguments themselves.
func TestDesktopToolErrors(t *testing.T) {
	f := newFixture(t)
	var sb SandboxOutput
	call(t, f.cs, "create_sandbox", nil, &sb)
	id := sb.Sandbox.ID
	for name, tc := range map[string]struct {
		args map[string]any
		want string
	}{
		"screenshot": {map[string]any{"sandbox_id": id}, "runs no X server"},
		"computer":   {map[string]any{"sandbox_id": id, "actions": []map[string]any{{"type": "click", "x": 1, "y": 2}}}, "runs no X server"},
		"open_url":   {map[string]any{"sandbox_id": id, "url": "https://example.test/"}, "runs no X server"},
	} {
		if res := call(t, f.cs, name, tc.args, nil); !res.IsError || !strings.Contains(textOf(res), tc.want) {
			t.Errorf("%s on a sandbox without a desktop: error %v %q; want %q", name, res.IsError, textOf(res), tc.want)
		}
	}
	for _, args := range []map[string]any{
		{"sandbox_id": id, "region": []int{1, 2, 3}},
		{"sandbox_id": id, "region": []int{0, 0, 0, 10}},
	} {
		if res := call(t, f.cs, "screenshot", args, nil); !res.IsError || !strings.Contains(textOf(res), "region") {
			t.Errorf("screenshot %v: %q; want the region refused", args, textOf(res))
		}
	}
	if res := call(t, f.cs, "computer", map[string]any{"sandbox_id": id, "actions": []any{}}, nil); !res.IsError {
		t.Errorf("computer with no actions was accepted")
	}
}
