package agent

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sietch-vm/sietch/guest-init/agent/agenttest"
	"github.com/sietch-vm/sietch/wire/agentproto"
)

// testEnv is an agent on a fresh root behind a shim, and a client.
type testEnv struct {
	a    *Agent
	c    *agentproto.Client
	root string
	sock string
}

// startAgent runs an agent as a host process behind an agenttest.Shim. cfg.Root
// defaults to a new temporary directory.
func startAgent(t testing.TB, cfg Config) *testEnv {
	t.Helper()
	if cfg.Root == "" {
		cfg.Root = t.TempDir()
	}
	if cfg.Env == nil {
		cfg.Env = []string{"PATH=" + os.Getenv("PATH"), "LANG=C"}
	}
	if cfg.Logger == nil && testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	sock := filepath.Join(t.TempDir(), "v.sock")
	shim, err := agenttest.Listen(sock, agentproto.Port)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- a.Serve(shim) }()
	t.Cleanup(func() {
		a.Close()
		shim.Close()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &testEnv{a: a, c: agentproto.NewClient(agentproto.DialUDS(sock, agentproto.Port)), root: a.root, sock: sock}
}

// testCtx bounds a test's requests so a bug fails it rather than hanging it.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func sha(b []byte) string { return fmt.Sprintf("%x", sha256.Sum256(b)) }
