package client

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Where reports where a client finds sietchd and its token by default, as
// the sietch CLI and the Python and TypeScript SDKs do: SIETCH_ADDR and
// SIETCH_TOKEN_FILE; else, with SIETCH_STATE_DIR=DIR, DIR/sietchd.sock and
// DIR/token; else DefaultAddr and DefaultTokenFile. getenv is os.Getenv
// or a stand-in.
func Where(getenv func(string) string) (addr, tokenFile string) {
	addr, tokenFile = getenv("SIETCH_ADDR"), getenv("SIETCH_TOKEN_FILE")
	if state := getenv("SIETCH_STATE_DIR"); state != "" {
		if abs, err := filepath.Abs(state); err == nil {
			state = abs // a relative state directory still names a socket path
		}
		if addr == "" {
			addr = filepath.Join(state, "sietchd.sock")
		}
		if tokenFile == "" {
			tokenFile = filepath.Join(state, "token")
		}
	}
	if addr == "" {
		addr = DefaultAddr
	}
	if tokenFile == "" {
		tokenFile = DefaultTokenFile
	}
	return addr, tokenFile
}

// FromEnv returns a Client for the sietchd the environment names (see
// Where), with the token read from its file.
func FromEnv(opts ...Option) (*Client, error) {
	addr, tokenFile := Where(os.Getenv)
	raw, err := os.ReadFile(tokenFile)
	if err != nil {
		return nil, fmt.Errorf("read the sietchd token: %w (sietchd writes it at first start; set SIETCH_TOKEN_FILE or SIETCH_STATE_DIR, and check you may read it)", err)
	}
	return New(addr, strings.TrimSpace(string(raw)), opts...)
}
