package api

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// SocketName is the API's unix socket in the state directory.
const SocketName = "sietchd.sock"

// Listen opens the API's listener: addr "" is <stateDir>/sietchd.sock,
// "unix:///path" or a path is that unix socket (mode 0600), and
// "tcp://host:port" is TCP. A stale socket left by a sietchd that died is
// replaced; one still served is refused.
func Listen(addr, stateDir string) (net.Listener, error) {
	switch {
	case addr == "":
		return listenUnix(filepath.Join(stateDir, SocketName))
	case strings.HasPrefix(addr, "tcp://"):
		hostport := strings.TrimPrefix(addr, "tcp://")
		if _, _, err := net.SplitHostPort(hostport); err != nil {
			return nil, fmt.Errorf("listen address %q: want tcp://host:port: %w", addr, err)
		}
		ln, err := net.Listen("tcp", hostport)
		if err != nil {
			return nil, fmt.Errorf("listen on %s: %w", addr, err)
		}
		return ln, nil
	case strings.HasPrefix(addr, "unix://"):
		return listenUnix(strings.TrimPrefix(addr, "unix://"))
	case strings.Contains(addr, "://"):
		return nil, fmt.Errorf("listen address %q: want a unix socket path, unix:///path or tcp://host:port", addr)
	}
	return listenUnix(addr)
}

func listenUnix(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("API socket %s: the path exists and is not a socket; remove it or choose another --listen", path)
		}
		c, err := net.DialTimeout("unix", path, time.Second)
		switch {
		case err == nil:
			c.Close()
			return nil, fmt.Errorf("API socket %s: another sietchd serves it; stop that one or choose another --listen", path)
		case errors.Is(err, syscall.ECONNREFUSED):
			if err := os.Remove(path); err != nil {
				return nil, fmt.Errorf("API socket %s: remove the stale socket: %w", path, err)
			}
		default:
			return nil, fmt.Errorf("API socket %s: check whether it is in use: %w", path, err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("API socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("API socket %s: restrict to its owner: %w", path, err)
	}
	return ln, nil
}
