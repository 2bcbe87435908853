package agentproto

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

const (
	maxReplyLine     = 64               // "OK <port>\n" is far shorter
	handshakeTimeout = 30 * time.Second // when ctx has no deadline
)

// ErrRefused is a CONNECT the guest refused: nothing listened on the port
// (yet), or the guest reset the connection as it came. Nothing was sent to
// the guest, so another try is safe.
var ErrRefused = errors.New("refused")

// DialUDS returns a dialer for Client that reaches guest port through
// the vsock device's host socket at udsPath: it connects, writes
// "CONNECT <port>\n" and expects "OK <host port>\n" before the stream is
// the guest's (Firecracker's host-initiated vsock protocol).
func DialUDS(udsPath string, port uint32) func(ctx context.Context) (net.Conn, error) {
	return func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "unix", udsPath)
		if err != nil {
			return nil, fmt.Errorf("dial vsock host socket %s (is the VM running?): %w", udsPath, err)
		}
		deadline, ok := ctx.Deadline()
		if !ok {
			deadline = time.Now().Add(handshakeTimeout)
		}
		c.SetDeadline(deadline)
		stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
		err = handshake(c, port)
		if !stop() && err == nil {
			err = ctx.Err()
		}
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("vsock %s port %d: %w", udsPath, port, err)
		}
		c.SetDeadline(time.Time{})
		return c, nil
	}
}

// handshake does CONNECT/OK on c, reading the reply a byte at a time so
// that nothing after it is consumed.
func handshake(c net.Conn, port uint32) error {
	if _, err := fmt.Fprintf(c, "CONNECT %d\n", port); err != nil {
		return fmt.Errorf("send CONNECT: %w", err)
	}
	var line []byte
	var b [1]byte
	for {
		if _, err := io.ReadFull(c, b[:]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				if len(line) == 0 {
					return fmt.Errorf("device closed the connection after CONNECT: nothing listens on guest port %d (is the agent up?): %w", port, ErrRefused)
				}
				return fmt.Errorf("device replied %q and closed the connection", line)
			}
			return fmt.Errorf("read CONNECT reply: %w", err)
		}
		if b[0] == '\n' {
			break
		}
		if len(line) >= maxReplyLine {
			return fmt.Errorf("device replied %q...: want \"OK <port>\"", line)
		}
		line = append(line, b[0])
	}
	reply := strings.TrimSuffix(string(line), "\r")
	if !strings.HasPrefix(reply, "OK ") {
		return fmt.Errorf("device replied %q to CONNECT %d; want \"OK <port>\"", reply, port)
	}
	return nil
}
