package main

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/sietch-vm/sietch/api/client"
	"github.com/sietch-vm/sietch/mcpserver"
	"github.com/sietch-vm/sietch/testguest"
)

// mcpEnv is a real sietchd, with the counter test guest as its image
// "counter" (no agent inside: lifecycle, snapshots, restores and forks at
// native speed), and the sietch binary to run `sietch mcp` from.
type mcpEnv struct {
	cli   string // the sietch binary
	state string // sietchd's state directory
	api   *client.Client
}

func startMCPEnv(t *testing.T) *mcpEnv {
	t.Helper()
	if _, err := os.Stat("/dev/kvm"); err != nil || os.Geteuid() != 0 {
		t.Skip("needs /dev/kvm and root (device processes are jailed)")
	}
	bin, err := os.MkdirTemp("", "sietch-mcp-") // unix socket paths must stay short
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		killVMMs(t, bin)
		os.RemoveAll(bin)
	})
	goBuild(t, bin, "vmm", "../vmm", false)
	sietchd := goBuild(t, bin, "sietchd", "../sietchd", false)
	e := &mcpEnv{cli: goBuild(t, bin, "sietch", ".", false), state: filepath.Join(bin, "state")}
	counter, err := testguest.Build(bin, "counter")
	if err != nil {
		t.Skipf("counter test guest: %v", err)
	}
	var dlog lockedBuffer
	daemon := exec.Command(sietchd, "--state-dir", e.state, "--net-pool", "off", "--image", "counter:kind=testguest,kernel="+counter+",mem=64,cmdline=n=100000000000")
	daemon.Stdout, daemon.Stderr = &dlog, &dlog
	daemon.WaitDelay = 5 * time.Second
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Leave nothing behind: delete what is left, then stop sietchd
		// (which leaves vmm processes running on purpose).
		if e.api != nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			left, _ := e.api.List(ctx)
			for _, sb := range left {
				e.api.Delete(ctx, sb.ID)
			}
		}
		daemon.Process.Signal(os.Interrupt)
		daemon.Wait()
		if t.Failed() {
			t.Logf("sietchd log:\n%s", &dlog)
		}
	})
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		if tok, err := os.ReadFile(filepath.Join(e.state, "token")); err == nil {
			if api, err := client.New(filepath.Join(e.state, "sietchd.sock"), string(tok)); err == nil {
				if _, err := api.List(t.Context()); err == nil {
					e.api = api
					break
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("sietchd did not answer within a minute:\n%s", &dlog)
		}
	}
	return e
}

// sandboxIDs lists sietchd's sandboxes.
func (e *mcpEnv) sandboxIDs(t *testing.T) []string {
	t.Helper()
	all, err := e.api.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, sb := range all {
		ids = append(ids, sb.ID)
	}
	sort.Strings(ids)
	return ids
}

// waitSandboxes waits until sietchd has exactly want (sorted).
func (e *mcpEnv) waitSandboxes(t *testing.T, want ...string) {
	t.Helper()
	sort.Strings(want)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		got := e.sandboxIDs(t)
		if strings.Join(got, " ") == strings.Join(want, " ") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sandboxes %v; want %v", got, want)
		}
	}
}

// mcpCall calls a tool and decodes its structured output into out; a
// protocol error fails the test, a tool error is returned as the result.
func mcpCall(t *testing.T, cs *mcp.ClientSession, name string, args map[string]any, out any) *mcp.CallToolResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("%s %v: %v", name, args, err)
	}
	if out != nil {
		if res.IsError {
			t.Fatalf("%s %v: tool error: %s", name, args, resultText(res))
		}
		b, _ := json.Marshal(res.StructuredContent)
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s: output %s: %v", name, b, err)
		}
	}
	return res
}

func resultText(res *mcp.CallToolResult) string {
	var parts []string
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			parts = append(parts, tc.Text)
		}
	}
	return strings.Join(parts, "\n")
}

// TestMCPLifecycleRealSietchd drives a real sietchd through the MCP tools
// with the Go SDK's client, in memory and over `sietch mcp` on stdio and
// streamable HTTP: the tools and their schemas, create → list → snapshot
// → restore → fork → delete, a tool error for exec on a guest without an
// agent, and the end of a session deleting its sandboxes but the kept one.
func TestMCPLifecycleRealSietchd(t *testing.T) {
	e := startMCPEnv(t)

	t.Run("in-memory", func(t *testing.T) {
		srv := mcpserver.New(e.api, mcpserver.Options{Version: "test"})
		defer srv.Close()
		st, ct := mcp.NewInMemoryTransports()
		if _, err := srv.MCP().Connect(t.Context(), st, nil); err != nil {
			t.Fatal(err)
		}
		cs, err := mcp.NewClient(&mcp.Implementation{Name: "sietch-test"}, nil).Connect(t.Context(), ct, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer cs.Close()
		lifecycle(t, e, cs)
	})

	t.Run("stdio", func(t *testing.T) {
		cmd := exec.Command(e.cli, "mcp")
		cmd.Env = append(os.Environ(), "SIETCH_STATE_DIR="+e.state, "SIETCH_ADDR=", "SIETCH_TOKEN_FILE=")
		var stderr lockedBuffer
		cmd.Stderr = &stderr
		cs, err := mcp.NewClient(&mcp.Implementation{Name: "sietch-test"}, nil).Connect(t.Context(), &mcp.CommandTransport{Command: cmd}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			if t.Failed() {
				t.Logf("sietch mcp stderr:\n%s", &stderr)
			}
		}()
		kept := lifecycle(t, e, cs)
		// Closing stdin ends `sietch mcp`, and it deletes its sandboxes first.
		if err := cs.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		if got := e.sandboxIDs(t); strings.Join(got, " ") != kept {
			t.Errorf("after sietch mcp exited: sandboxes %v; want only the kept %s", got, kept)
		}
		if !strings.Contains(stderr.String(), "deleted a sandbox of an ended MCP session") {
			t.Errorf("sietch mcp did not log its deletes:\n%s", &stderr)
		}
		e.api.Delete(t.Context(), kept)
	})

	t.Run("http", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		cmd := exec.CommandContext(ctx, e.cli, "mcp", "--http", "127.0.0.1:0")
		cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
		cmd.Env = append(os.Environ(), "SIETCH_STATE_DIR="+e.state, "SIETCH_ADDR=", "SIETCH_TOKEN_FILE=")
		logs, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(logs)
		var url string
		for url == "" && sc.Scan() {
			if m := regexp.MustCompile(`url=(http://\S+/mcp)`).FindStringSubmatch(sc.Text()); m != nil {
				url = m[1]
			}
		}
		if url == "" {
			t.Fatal("sietch mcp --http did not say where it listens")
		}
		go func() {
			for sc.Scan() {
			}
		}()
		connect := func() *mcp.ClientSession {
			cs, err := mcp.NewClient(&mcp.Implementation{Name: "sietch-test"}, nil).Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: url}, nil)
			if err != nil {
				t.Fatal(err)
			}
			return cs
		}
		a, b := connect(), connect()
		var sa, sb, kept mcpserver.SandboxOutput
		mcpCall(t, a, "create_sandbox", map[string]any{"image": "counter"}, &sa)
		mcpCall(t, b, "create_sandbox", map[string]any{"image": "counter"}, &sb)
		mcpCall(t, b, "create_sandbox", map[string]any{"image": "counter", "keep": true}, &kept)
		// Closing session a (an HTTP DELETE) deletes its sandbox only.
		a.Close()
		e.waitSandboxes(t, sb.Sandbox.ID, kept.Sandbox.ID)
		// Stopping the server ends session b.
		cancel()
		cmd.Wait()
		e.waitSandboxes(t, kept.Sandbox.ID)
		b.Close()
		e.api.Delete(t.Context(), kept.Sandbox.ID)
	})
}

// lifecycle runs the tools through cs against the counter image and
// returns the id of the sandbox it created with keep=true (the others
// were deleted or belong to the session).
func lifecycle(t *testing.T, e *mcpEnv, cs *mcp.ClientSession) string {
	t.Helper()
	tools, err := cs.ListTools(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tool := range tools.Tools {
		names = append(names, tool.Name)
		if in, _ := tool.InputSchema.(map[string]any); in["type"] != "object" || tool.Description == "" {
			t.Errorf("tool %s: input schema %v, description %q", tool.Name, tool.InputSchema, tool.Description)
		}
	}
	sort.Strings(names)
	if got, want := strings.Join(names, " "), "computer create_sandbox delete_sandbox exec fork list_directory list_sandboxes list_templates open_url read_file restore run_code screenshot snapshot write_file"; got != want {
		t.Errorf("tools: %s\nwant:  %s", got, want)
	}

	var a mcpserver.SandboxOutput
	mcpCall(t, cs, "create_sandbox", map[string]any{"image": "counter", "labels": map[string]string{"test": t.Name()}}, &a)
	if a.Sandbox.State != "running" || a.Sandbox.Image != "counter" || !a.Sandbox.Session {
		t.Errorf("created %+v", a.Sandbox)
	}
	var list mcpserver.SandboxesOutput
	mcpCall(t, cs, "list_sandboxes", map[string]any{"label": map[string]string{"test": t.Name()}}, &list)
	if len(list.Sandboxes) != 1 || list.Sandboxes[0].ID != a.Sandbox.ID {
		t.Errorf("list_sandboxes by label: %+v", list.Sandboxes)
	}

	var snap mcpserver.SnapshotOutput
	mcpCall(t, cs, "snapshot", map[string]any{"sandbox_id": a.Sandbox.ID}, &snap)
	if snap.Snapshot.ID == "" || snap.Snapshot.SandboxID != a.Sandbox.ID || snap.Snapshot.Kind != "full" {
		t.Errorf("snapshot %+v", snap.Snapshot)
	}
	var restored mcpserver.SandboxOutput
	mcpCall(t, cs, "restore", map[string]any{"snapshot_id": snap.Snapshot.ID}, &restored)
	if restored.Sandbox.ID == a.Sandbox.ID || restored.Sandbox.State != "running" || restored.Sandbox.Snapshot != snap.Snapshot.ID {
		t.Errorf("restored %+v", restored.Sandbox)
	}
	var forks mcpserver.SandboxesOutput
	mcpCall(t, cs, "fork", map[string]any{"sandbox_id": a.Sandbox.ID, "count": 2}, &forks)
	if len(forks.Sandboxes) != 2 {
		t.Fatalf("fork: %+v", forks.Sandboxes)
	}
	var del struct{ Deleted string }
	mcpCall(t, cs, "delete_sandbox", map[string]any{"sandbox_id": forks.Sandboxes[0].ID}, &del)
	if del.Deleted != forks.Sandboxes[0].ID {
		t.Errorf("delete_sandbox: %+v", del)
	}

	// No agent in the counter guest: a tool error that says why.
	res := mcpCall(t, cs, "exec", map[string]any{"sandbox_id": a.Sandbox.ID, "command": "echo hi"}, nil)
	if msg := resultText(res); !res.IsError || !strings.Contains(msg, "agent") {
		t.Errorf("exec on a guest without an agent: error %v, %q", res.IsError, msg)
	} else {
		t.Logf("exec on the counter guest: %s", msg)
	}
	res = mcpCall(t, cs, "exec", map[string]any{"sandbox_id": forks.Sandboxes[0].ID, "command": "true"}, nil)
	if msg := resultText(res); !res.IsError || !strings.Contains(msg, "not_found") {
		t.Errorf("exec in a deleted sandbox: error %v, %q", res.IsError, msg)
	}

	var kept mcpserver.SandboxOutput
	mcpCall(t, cs, "create_sandbox", map[string]any{"image": "counter", "keep": true}, &kept)
	if kept.Sandbox.Session {
		t.Errorf("a kept sandbox is marked as the session's: %+v", kept.Sandbox)
	}
	want := []string{a.Sandbox.ID, restored.Sandbox.ID, forks.Sandboxes[1].ID, kept.Sandbox.ID}
	e.waitSandboxes(t, want...)
	if t.Name() == "TestMCPLifecycleRealSietchd/in-memory" {
		// The in-memory session's end: its sandboxes go, the kept one stays.
		cs.Close()
		e.waitSandboxes(t, kept.Sandbox.ID)
		e.api.Delete(t.Context(), kept.Sandbox.ID)
	}
	return kept.Sandbox.ID
}
