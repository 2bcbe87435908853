package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/spf13/pflag"

	"github.com/sietch-vm/sietch/mcpserver"
)

var cmdMcp = &command{
	synopsis: "mcp [--http ADDR] [--session-timeout D] [--log-level L]",
	summary: "Serve sietch's sandboxes to an AI agent as MCP (Model Context Protocol) tools: create_sandbox, exec, run_code, read_file,\n" +
		"write_file, list_directory, snapshot, restore, fork, delete_sandbox, list_sandboxes, list_templates. By default it speaks\n" +
		"MCP on stdin and stdout, as an MCP client that starts it expects; --http serves streamable HTTP at http://ADDR/mcp instead.\n" +
		"Sandboxes a session creates are deleted when it ends (stdin closed, HTTP session closed or idle past --session-timeout,\n" +
		"sietch mcp stopped) unless created with keep=true. Logs go to stderr.",
	example: "  sietch mcp                                   (in an MCP client's config: \"command\": \"sietch\", \"args\": [\"mcp\"])\n" +
		"  SIETCH_STATE_DIR=$PWD/build/state sietch mcp\n" +
		"  sietch mcp --http 127.0.0.1:7071             (clients connect to http://127.0.0.1:7071/mcp)\n",
	run: func(c *cli, ctx context.Context, fs *pflag.FlagSet, args []string) int {
		httpAddr := fs.String("http", "", "serve streamable HTTP on ADDR (host:port) at /mcp instead of stdio")
		timeout := fs.Duration("session-timeout", 30*time.Minute, "with --http: close a session idle this long and delete its sandboxes (0: never)")
		level := fs.String("log-level", "info", "debug, info, warn or error")
		if rc, done := c.parsed("mcp", fs, noArgs(fs, args)); done {
			return rc
		}
		var lv slog.Level
		if err := lv.UnmarshalText([]byte(*level)); err != nil {
			fmt.Fprintf(c.stderr, "sietch mcp: --log-level %q: want debug, info, warn or error\n", *level)
			return exitUsage
		}
		api, err := c.connect(true)
		if err != nil {
			return c.fail("mcp", err)
		}
		log := slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: lv}))
		srv := mcpserver.New(api, mcpserver.Options{Version: buildVersion(), Logger: log, SessionTimeout: *timeout})
		if *httpAddr != "" {
			err = serveMCPHTTP(ctx, srv, *httpAddr, log)
		} else {
			err = srv.Run(ctx, stdioTransport(c.stdin, c.stdout))
		}
		if err != nil {
			return c.fail("mcp", err)
		}
		return exitOK
	},
}

// stdioTransport speaks MCP over the command's stdin and stdout.
func stdioTransport(in io.Reader, out io.Writer) mcp.Transport {
	r, ok := in.(io.ReadCloser)
	if !ok {
		r = io.NopCloser(in)
	}
	w, ok := out.(io.WriteCloser)
	if !ok {
		w = nopWriteCloser{out}
	}
	return &mcp.IOTransport{Reader: r, Writer: w}
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

// serveMCPHTTP serves MCP at http://addr/mcp until ctx is done, then
// closes the sessions and deletes their sandboxes.
func serveMCPHTTP(ctx context.Context, srv *mcpserver.Server, addr string, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/mcp", srv.Handler())
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	log.Info("serving MCP over streamable HTTP", "url", "http://"+ln.Addr().String()+"/mcp")
	done := make(chan error, 1)
	go func() { done <- hs.Serve(ln) }()
	select {
	case err = <-done:
		srv.Close()
		return err
	case <-ctx.Done():
	}
	// Sessions first: their open event streams would hold Shutdown up.
	srv.Close()
	shut, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := hs.Shutdown(shut); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// buildVersion is this binary's module version, or "devel".
func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}
