package agent

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/mdlayher/vsock"

	"github.com/sietch-vm/sietch/wire/agentproto"
)

// The agent answers over a real AF_VSOCK socket, reached through the
// loopback CID where this kernel offers one.
func TestListenVsockLoopback(t *testing.T) {
	l, err := ListenVsock(0xfffffffe - 7) // a high port no guest service uses
	if err != nil {
		t.Skipf("no AF_VSOCK listener on this host: %v", err)
	}
	a, err := New(Config{Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*vsock.Addr).Port
	go a.Serve(l)
	defer a.Close()
	c := agentproto.NewClient(func(ctx context.Context) (net.Conn, error) { return vsock.DialContext(ctx, vsock.Local, port, nil) })
	ctx, cancel := context.WithTimeout(testCtx(t), 500*time.Millisecond)
	defer cancel()
	h, err := c.Health(ctx)
	if err != nil {
		t.Skipf("vsock loopback (CID %d) unavailable, the vsock_loopback module may be missing: %v", vsock.Local, err)
	}
	if h.Status != "ok" {
		t.Fatalf("agentproto.Health over vsock: %+v", h)
	}
}
