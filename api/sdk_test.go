package api

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sietch-vm/sietch/api/client"
	"github.com/sietch-vm/sietch/api/model"
	"github.com/sietch-vm/sietch/guest-init/agent"
	"github.com/sietch-vm/sietch/sandbox"
)

// The Go SDK drives the real server: every call a user makes, with the
// agent running as a host process.
func TestSDKAgainstServer(t *testing.T) {
	root, sock := startAgent(t)
	e := newEnv(t, func(c *sandbox.Config) {
		c.AgentDial = func(string) func(context.Context) (net.Conn, error) { return agent.DialUDS(sock, agent.Port) }
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := client.New("unix://"+e.sock, e.token)
	if err != nil {
		t.Fatal(err)
	}
	if h, err := c.Health(ctx); err != nil || h.Status != "ok" {
		t.Fatalf("Health: %+v, %v", h, err)
	}
	sb, err := c.Create(ctx, model.CreateRequest{Image: "counter"})
	if err != nil || sb.State != model.StateRunning {
		t.Fatalf("Create: %+v, %v", sb, err)
	}
	var out, errOut bytes.Buffer
	exit, err := c.Exec(ctx, sb.ID, model.ExecRequest{Cmd: "sh", Args: []string{"-c", "echo out; echo err >&2; exit 7"}}, &out, &errOut)
	if err != nil || exit.Code != 7 || out.String() != "out\n" || errOut.String() != "err\n" {
		t.Errorf("Exec: %+v, %v, %q, %q", exit, err, out.String(), errOut.String())
	}
	data := bytes.Repeat([]byte("sietch "), 300000)
	if err := c.Upload(ctx, sb.ID, root+"/f.txt", 0o600, bytes.NewReader(data)); err != nil {
		t.Fatalf("Upload: %v", err)
	}
	var back bytes.Buffer
	if mode, err := c.Download(ctx, sb.ID, root+"/f.txt", &back); err != nil || mode.Perm() != 0o600 || !bytes.Equal(back.Bytes(), data) {
		t.Errorf("Download: mode %v, %v, equal %v", mode, err, bytes.Equal(back.Bytes(), data))
	}
	if _, err := c.Pause(ctx, sb.ID); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	var ae *client.Error
	if _, err := c.Pause(ctx, sb.ID); !errors.As(err, &ae) || ae.Code != model.CodeWrongState || ae.Status != 409 {
		t.Errorf("Pause twice: %v", err)
	}
	if _, err := c.Resume(ctx, sb.ID); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	snap, err := c.Snapshot(ctx, sb.ID, model.SnapshotRequest{})
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	forks, err := c.Fork(ctx, sb.ID, model.ForkRequest{Snapshot: snap.ID, Count: 2})
	if err != nil || len(forks) != 2 {
		t.Fatalf("Fork: %+v, %v", forks, err)
	}
	all, err := c.List(ctx)
	if err != nil || len(all) != 3 {
		t.Errorf("List: %d sandboxes, %v", len(all), err)
	}
	m, err := c.Metrics(ctx)
	if err != nil || !strings.Contains(m, `sietch_sandboxes{state="running"} 3`) {
		t.Errorf("Metrics: %v\n%s", err, m)
	}
	for _, s := range append(forks, sb) {
		if err := c.Delete(ctx, s.ID); err != nil {
			t.Errorf("Delete %s: %v", s.ID, err)
		}
	}
	if _, err := c.Get(ctx, sb.ID); !errors.As(err, &ae) || ae.Code != model.CodeNotFound {
		t.Errorf("Get after Delete: %v", err)
	}
	bad, _ := client.New("unix://"+e.sock, "not-the-token-not-the-token")
	if _, err := bad.List(ctx); !errors.As(err, &ae) || ae.Status != 401 {
		t.Errorf("List with a wrong token: %v", err)
	}
}
