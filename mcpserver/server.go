// Package mcpserver serves sietch's sandboxes to MCP clients as tools, through the Go SDK.
package mcpserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/sietch-vm/sietch/api/client"
	"github.com/sietch-vm/sietch/api/model"
)

// Options configure a Server.
type Options struct {
	Version string       // reported to clients
	Logger  *slog.Logger // nil: discard
	// SessionTimeout closes an HTTP session that made no request this
	// long (its sandboxes are then deleted); 0: never.
	SessionTimeout time.Duration
}

// Server is sietch's MCP server: one sietchd behind it, any number of MCP
// sessions in front.
type Server struct {
	api      *client.Client
	log      *slog.Logger
	mcp      *mcp.Server
	sessions *sessions
	timeout  time.Duration
}

const instructions = `These tools run code in sietch sandboxes: Linux microVMs that start in milliseconds from a template.
Start with create_sandbox, then use exec (shell commands), run_code (python, node or bash that keeps its state between calls), read_file, write_file and list_directory with the sandbox id it returns.
snapshot, restore and fork checkpoint and copy a sandbox. Sandboxes you create are deleted when this MCP session ends, unless created with keep=true; delete_sandbox removes one sooner.`

// New returns a Server that manages sandboxes through api.
func New(api *client.Client, opts Options) *Server {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.Version == "" {
		opts.Version = "devel"
	}
	s := &Server{api: api, log: log, sessions: newSessions(api, log), timeout: opts.SessionTimeout}
	sdkLog := log
	if !log.Enabled(context.Background(), slog.LevelDebug) {
		// The SDK logs every session's start and end at info.
		sdkLog = slog.New(floor{log.Handler(), slog.LevelWarn})
	}
	s.mcp = mcp.NewServer(&mcp.Implementation{Name: "sietch", Title: "sietch sandboxes", Version: opts.Version}, &mcp.ServerOptions{
		Instructions: instructions,
		Logger:       sdkLog,
		Capabilities: &mcp.ServerCapabilities{}, // tools only (added below), no logging
		// A sandbox's lifetime follows its session's, so the sessionless
		// 2026-07-28 protocol is not offered.
		SupportedProtocolVersions: sessionVersions(),
	})
	s.addSandboxTools()
	s.addExecTools()
	s.addFileTools()
	s.addDesktopTools()
	return s
}

// MCP is the SDK server, for connecting it to a transport of one's own
// (tests use an in-memory one). Sandboxes are tracked per session either
// way; call Close when done.
func (s *Server) MCP() *mcp.Server { return s.mcp }

// Run serves one session over t (stdio) until the client goes or ctx is
// done, then deletes the sandboxes it created that were not kept.
func (s *Server) Run(ctx context.Context, t mcp.Transport) error {
	err := s.mcp.Run(ctx, t)
	s.Close()
	if errors.Is(err, context.Canceled) || errors.Is(err, mcp.ErrConnectionClosed) || errors.Is(err, io.EOF) {
		err = nil
	}
	return err
}

// Handler serves MCP sessions over streamable HTTP (the MCP spec's
// transport; one session per client, by the Mcp-Session-Id header).
func (s *Server) Handler() http.Handler {
	return mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s.mcp }, &mcp.StreamableHTTPOptions{
		Logger:         s.log,
		SessionTimeout: s.timeout,
	})
}

// Close closes every session still open and deletes the sandboxes they
// created that were not kept; it returns once they are gone.
func (s *Server) Close() {
	for ss := range s.mcp.Sessions() {
		ss.Close()
	}
	s.sessions.close()
}

// sessionVersions are the protocol versions that have sessions.
func sessionVersions() []string {
	var out []string
	for _, v := range mcp.SupportedProtocolVersions() {
		if v < "2026-07-28" {
			out = append(out, v)
		}
	}
	return out
}

// apiError turns an error from sietchd into the text a model reads: the
// API's message first, then what to do about it where that is clear.
func apiError(what string, err error) error {
	var e *client.Error
	if !errors.As(err, &e) {
		return fmt.Errorf("%s: %w", what, err)
	}
	hint := ""
	switch e.Code {
	case model.CodeAgentUnavailable:
		hint = " The sandbox's guest agent does not answer: it may still be starting (try again in a few seconds), or its image has no agent (test guests), in which case exec, run_code and the file tools cannot work on it."
	case model.CodeNotFound:
		hint = " Check the id with list_sandboxes."
	case model.CodeWrongState:
		hint = " Check the sandbox's state with list_sandboxes."
	}
	return fmt.Errorf("%s: %s (%s)%s", what, e.Message, e.Code, hint)
}

// schemaFor infers T's JSON schema and restricts the named string
// properties to the given values.
func schemaFor[T any](enums map[string][]any) *jsonschema.Schema {
	sc, err := jsonschema.For[T](nil)
	if err != nil {
		panic(fmt.Sprintf("schema of %T: %v", *new(T), err)) // a programming error in this package's types
	}
	for name, values := range enums {
		p, ok := sc.Properties[name]
		if !ok {
			panic(fmt.Sprintf("schema of %T: no property %q", *new(T), name))
		}
		p.Enum = values
	}
	return sc
}

func ptr[T any](v T) *T { return &v }

// floor passes on only the records at min or above.
type floor struct {
	slog.Handler
	min slog.Level
}

func (f floor) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= f.min && f.Handler.Enabled(ctx, l)
}

func (f floor) WithAttrs(as []slog.Attr) slog.Handler { return floor{f.Handler.WithAttrs(as), f.min} }
func (f floor) WithGroup(name string) slog.Handler    { return floor{f.Handler.WithGroup(name), f.min} }
