package api

import (
	"github.com/sietch-vm/sietch/wire/agentproto"

	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sietch-vm/sietch/api/client"
	"github.com/sietch-vm/sietch/api/model"
	"github.com/sietch-vm/sietch/sandbox"
)

// The Go SDK drives the real server: every call a user makes, with the
// agent running as a host process.
func TestSDKAgainstServer(t *testing.T) {
	root, sock := startAgent(t)
	e := newEnv(t, func(c *sandbox.Config) {
		c.AgentDial = func(string) func(context.Context) (net.Conn, error) { return agentproto.DialUDS(sock, agentproto.Port) }
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

// Templates, snapshots and pause to disk through the Go SDK.
func TestSDKTemplates(t *testing.T) {
	e := newEnv(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := client.New("unix://"+e.sock, e.token)
	if err != nil {
		t.Fatal(err)
	}
	tp, err := c.BuildTemplate(ctx, model.TemplateRequest{Name: "ctr", Image: "counter"})
	if err != nil || tp.State != model.TemplateBuilding {
		t.Fatalf("BuildTemplate: %+v, %v", tp, err)
	}
	if tp, err = c.WaitTemplate(ctx, "ctr"); err != nil || tp.State != model.TemplateReady {
		t.Fatalf("WaitTemplate: %+v, %v", tp, err)
	}
	if ts, err := c.Templates(ctx); err != nil || len(ts) != 1 || ts[0].Name != "ctr" {
		t.Errorf("Templates: %+v, %v", ts, err)
	}
	sb, err := c.Create(ctx, model.CreateRequest{Template: "ctr"})
	if err != nil || sb.Template != "ctr" {
		t.Fatalf("Create from the template: %+v, %v", sb, err)
	}
	var ae *client.Error
	if err := c.DeleteTemplate(ctx, "ctr"); !errors.As(err, &ae) || ae.Code != model.CodeInUse || !strings.Contains(ae.Message, sb.ID) {
		t.Errorf("DeleteTemplate while %s runs from it: %v", sb.ID, err)
	}
	if sb, err = c.PauseToDisk(ctx, sb.ID); err != nil || sb.State != model.StateSuspended {
		t.Fatalf("PauseToDisk: %+v, %v", sb, err)
	}
	snaps, err := c.AllSnapshots(ctx)
	if err != nil || len(snaps) != 2 {
		t.Fatalf("AllSnapshots: %+v, %v; want the template's and the suspend snapshot", snaps, err)
	}
	if sb, err = c.Resume(ctx, sb.ID); err != nil || sb.State != model.StateRunning {
		t.Fatalf("Resume from disk: %+v, %v", sb, err)
	}
	user, err := c.Snapshot(ctx, sb.ID, model.SnapshotRequest{Kind: "diff"})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := c.GetSnapshot(ctx, user.ID); err != nil || got.Base == "" {
		t.Errorf("GetSnapshot: %+v, %v", got, err)
	}
	if err := c.Delete(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteSnapshot(ctx, user.ID); err != nil {
		t.Errorf("DeleteSnapshot: %v", err)
	}
	if err := c.DeleteTemplate(ctx, "ctr"); err != nil {
		t.Errorf("DeleteTemplate: %v", err)
	}
	if snaps, _ := c.AllSnapshots(ctx); len(snaps) != 0 {
		t.Errorf("snapshots left: %+v", snaps)
	}
}
