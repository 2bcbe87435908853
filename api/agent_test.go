package api

import (
	"github.com/sietch-vm/sietch/wire/agentproto"

	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sietch-vm/sietch/api/model"
	"github.com/sietch-vm/sietch/guest-init/agent"
	"github.com/sietch-vm/sietch/guest-init/agent/agenttest"
	"github.com/sietch-vm/sietch/sandbox"
)

// startAgent runs a guest agent on the host, rooted at a new directory,
// behind a vsockShim; it returns the root and the shim's socket.
func startAgent(t *testing.T) (root, sock string) {
	t.Helper()
	root = t.TempDir()
	cfg := agent.Config{Root: root, Env: []string{"PATH=" + os.Getenv("PATH"), "LANG=C"}}
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	a, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sock = filepath.Join(t.TempDir(), "v.sock")
	shim, err := agenttest.Listen(sock, agentproto.Port)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- a.Serve(shim) }()
	t.Cleanup(func() {
		a.Close()
		shim.Close()
		<-served
	})
	return root, sock
}

// Exec, files and ports go through the sandbox's agent: here one running
// as a host process behind the vsock socket protocol.
func TestAgentExecFilesPorts(t *testing.T) {
	root, sock := startAgent(t)
	e := newEnv(t, func(c *sandbox.Config) {
		c.AgentDial = func(string) func(context.Context) (net.Conn, error) { return agentproto.DialUDS(sock, agentproto.Port) }
	})
	sb := e.create(model.CreateRequest{Image: "counter"})
	id := sb.ID

	// Output arrives in order, split by stream, with the exit status last.
	st, r, body := e.exec(id, model.ExecRequest{Cmd: "sh", Args: []string{"-c", `echo one; echo two >&2; sleep 0.2; echo three; exit 3`}})
	if st != http.StatusOK || r.exit == nil || r.exit.Code != 3 || r.stdout != "one\nthree\n" || r.stderr != "two\n" {
		t.Errorf("exec: %d %+v %+v\n%s", st, r, r.exit, body)
	}
	if r.events < 4 {
		t.Errorf("exec sent %d events; want each output chunk as its own event before the exit", r.events)
	}
	st, r, body = e.exec(id, model.ExecRequest{Cmd: "sh", Args: []string{"-c", "tr a-z A-Z; echo $GREETING; pwd"},
		Env: map[string]string{"GREETING": "hi"}, Cwd: "/", Stdin: base64.StdEncoding.EncodeToString([]byte("from stdin\n"))})
	if st != http.StatusOK || r.exit == nil || r.exit.Code != 0 || r.stdout != "FROM STDIN\nhi\n/\n" {
		t.Errorf("exec with stdin, env and cwd: %d %+v\n%s", st, r, body)
	}
	st, r, _ = e.exec(id, model.ExecRequest{Cmd: "sleep", Args: []string{"10"}, TimeoutMS: 100})
	if st != http.StatusOK || r.exit == nil || !r.exit.TimedOut || r.exit.Signal == "" {
		t.Errorf("exec past its timeout: %d %+v", st, r.exit)
	}
	st, b := e.do("POST", "/v1/sandboxes/"+id+"/exec", model.ExecRequest{Cmd: "no-such-command-here"})
	if st != http.StatusBadRequest && st != http.StatusNotFound {
		t.Errorf("exec of a missing command: %d %s; want a 4xx from the agent", st, b)
	}

	// Files: a 3 MiB upload comes back byte for byte with its mode.
	data := make([]byte, 3<<20+17)
	rand.Read(data)
	// The agent runs on the host here, so guest paths are under its root.
	blob := filepath.Join(root, "data", "blob.bin")
	os.Mkdir(filepath.Dir(blob), 0o755)
	e.call("PUT", "/v1/sandboxes/"+id+"/files?path="+blob+"&mode=0640", data, http.StatusNoContent, nil)
	if onDisk, err := os.ReadFile(blob); err != nil || !bytes.Equal(onDisk, data) {
		t.Errorf("uploaded file in the agent's root: %d bytes, %v", len(onDisk), err)
	}
	req, _ := http.NewRequest("GET", "http://sietchd/v1/sandboxes/"+id+"/files?path="+blob, nil)
	req.Header.Set("Authorization", "Bearer "+e.token)
	resp, err := e.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Sietch-Mode") != "0640" || !bytes.Equal(got, data) {
		t.Errorf("download: %d mode %q, %d bytes (equal %v)", resp.StatusCode, resp.Header.Get("X-Sietch-Mode"), len(got), bytes.Equal(got, data))
	}
	st, b = e.do("GET", "/v1/sandboxes/"+id+"/files?path="+filepath.Join(root, "missing"), nil)
	if st != http.StatusNotFound || apiError(t, b).Code != model.CodeNotFound {
		t.Errorf("download of a missing file: %d %s", st, b)
	}

	// Ports: a host port relays both ways to a "guest" port.
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	guestPort := echo.Addr().(*net.TCPAddr).Port
	var p model.Port
	e.call("POST", "/v1/sandboxes/"+id+"/ports", model.PortRequest{GuestPort: guestPort}, http.StatusCreated, &p)
	if p.HostPort == 0 || p.HostAddr != "127.0.0.1" || p.GuestPort != guestPort {
		t.Fatalf("port: %+v", p)
	}
	roundTrip := func() error {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(p.HostAddr, strconv.Itoa(p.HostPort)), 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte("ping through the sandbox")); err != nil {
			return err
		}
		c.(*net.TCPConn).CloseWrite()
		back, err := io.ReadAll(c)
		if err != nil {
			return err
		}
		if string(back) != "ping through the sandbox" {
			return fmt.Errorf("echoed %q", back)
		}
		return nil
	}
	if err := roundTrip(); err != nil {
		t.Errorf("through the forward: %v", err)
	}
	var ports struct{ Ports []model.Port }
	e.call("GET", "/v1/sandboxes/"+id+"/ports", nil, http.StatusOK, &ports)
	if len(ports.Ports) != 1 || ports.Ports[0] != p {
		t.Errorf("ports: %+v", ports)
	}
	if got := e.get(id); !got.Agent || len(got.Ports) != 1 {
		t.Errorf("sandbox after agent calls: agent %v ports %v", got.Agent, got.Ports)
	}

	// A restart keeps the forward.
	e.restart()
	if err := roundTrip(); err != nil {
		t.Errorf("through the forward after a restart: %v", err)
	}
	e.call("DELETE", fmt.Sprintf("/v1/sandboxes/%s/ports/%d", id, p.HostPort), nil, http.StatusNoContent, nil)
	if err := roundTrip(); err == nil {
		t.Errorf("the forward still relays after DELETE")
	}
	e.call("DELETE", "/v1/sandboxes/"+id, nil, http.StatusNoContent, nil)
}

// A sandbox whose agent does not answer says so with a retry hint, at
// once rather than after a hang: the counter guest has no agent.
func TestAgentUnavailable(t *testing.T) {
	e := newEnv(t, nil)
	sb := e.create(model.CreateRequest{Image: "counter"})
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/exec", `{"cmd":"true"}`},
		{"PUT", "/files?path=/x", "data"},
		{"GET", "/files?path=/x", ""},
	} {
		st, b := e.do(c.method, "/v1/sandboxes/"+sb.ID+c.path, c.body)
		got := apiError(t, b)
		if st != http.StatusServiceUnavailable || got.Code != model.CodeAgentUnavailable || !got.Retry {
			t.Errorf("%s %s without an agent: %d %+v; want 503 agent_unavailable with retry", c.method, c.path, st, got)
		}
	}
	if strings.Contains(e.get(sb.ID).Reason, "agent") || e.get(sb.ID).Agent {
		t.Errorf("sandbox says its agent answered: %+v", e.get(sb.ID))
	}
	e.call("DELETE", "/v1/sandboxes/"+sb.ID, nil, http.StatusNoContent, nil)
}

// A running sandbox's agent that refuses a connection or two (a restored
// guest still taking its vsock transport reset) is tried again: the
// caller sees the answer, not agent_unavailable.
func TestAgentRefusalRetried(t *testing.T) {
	_, sock := startAgent(t)
	var refuse, dials atomic.Int32
	e := newEnv(t, func(c *sandbox.Config) {
		c.AgentDial = func(string) func(context.Context) (net.Conn, error) {
			dial := agentproto.DialUDS(sock, agentproto.Port)
			return func(ctx context.Context) (net.Conn, error) {
				dials.Add(1)
				if refuse.Add(-1) >= 0 {
					return nil, fmt.Errorf("device closed the connection after CONNECT: %w", agentproto.ErrRefused)
				}
				return dial(ctx)
			}
		}
	})
	sb := e.create(model.CreateRequest{Image: "counter"})
	refuse.Store(2)
	st, r, body := e.exec(sb.ID, model.ExecRequest{Cmd: "sh", Args: []string{"-c", "echo up"}})
	if st != http.StatusOK || r.exit == nil || r.exit.Code != 0 || r.stdout != "up\n" {
		t.Fatalf("exec after two refused connects: %d %+v %s", st, r.exit, body)
	}
	if n := dials.Load(); n < 3 {
		t.Errorf("%d dials; want the two refusals and a third that worked", n)
	}
	e.call("DELETE", "/v1/sandboxes/"+sb.ID, nil, http.StatusNoContent, nil)
}
