package rfb

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"time"
)

// ServerInit is what a server tells a client that got in.
type ServerInit struct {
	Width, Height int
	Format        PixelFormat
	Name          string
}

// RefusedError is a server's refusal, with its reason.
type RefusedError struct{ Reason string }

func (e *RefusedError) Error() string { return "rfb: refused: " + e.Reason }

// Login does a client's side of an RFB 3.8 handshake with VNC
// authentication on conn, for probes and tests: it returns the server's
// init, or a *RefusedError with the server's reason. The connection is
// left just past the handshake.
func Login(conn net.Conn, password string, timeout time.Duration) (ServerInit, error) {
	var si ServerInit
	conn.SetDeadline(time.Now().Add(timeout))
	defer conn.SetDeadline(time.Time{})
	r := bufio.NewReaderSize(conn, 64) // small: nothing past the handshake is read ahead
	var b [24]byte
	if _, err := io.ReadFull(r, b[:12]); err != nil {
		return si, fmt.Errorf("rfb: read the server's version: %w", err)
	}
	if string(b[:4]) != "RFB " {
		return si, fmt.Errorf("rfb: %q is not an RFB server's greeting", b[:12])
	}
	if _, err := io.WriteString(conn, "RFB 003.008\n"); err != nil {
		return si, err
	}
	reason := func() error {
		if _, err := io.ReadFull(r, b[:4]); err != nil {
			return &RefusedError{}
		}
		msg := make([]byte, min(binary.BigEndian.Uint32(b[:4]), 4096))
		io.ReadFull(r, msg)
		return &RefusedError{Reason: string(msg)}
	}
	n, err := r.ReadByte()
	if err != nil {
		return si, err
	}
	if n == 0 {
		return si, reason()
	}
	types := make([]byte, n)
	if _, err := io.ReadFull(r, types); err != nil {
		return si, err
	}
	if !slices.Contains(types, securityVNC) {
		return si, fmt.Errorf("rfb: the server offers security types %v, not VNC authentication (2)", types)
	}
	conn.Write([]byte{securityVNC})
	var challenge [16]byte
	if _, err := io.ReadFull(r, challenge[:]); err != nil {
		return si, err
	}
	resp := EncryptChallenge(password, challenge)
	conn.Write(resp[:])
	if _, err := io.ReadFull(r, b[:4]); err != nil {
		return si, err
	}
	if binary.BigEndian.Uint32(b[:4]) != 0 {
		return si, reason()
	}
	conn.Write([]byte{1}) // shared
	if _, err := io.ReadFull(r, b[:24]); err != nil {
		return si, err
	}
	si.Width, si.Height = int(binary.BigEndian.Uint16(b[0:])), int(binary.BigEndian.Uint16(b[2:]))
	if si.Format, err = parseFormat(b[4:20]); err != nil {
		return si, err
	}
	name := make([]byte, min(binary.BigEndian.Uint32(b[20:]), 4096))
	if _, err := io.ReadFull(r, name); err != nil {
		return si, err
	}
	si.Name = string(name)
	if r.Buffered() > 0 {
		return si, errors.New("rfb: the server sent more than its init before any request")
	}
	return si, nil
}

// PasswdFile is what vncpasswd writes for password, which VNC clients
// read with -passwd FILE: its first 8 bytes DES-encrypted with VNC's fixed
// key (whose bytes VNC's DES reads bit-reversed, as it does passwords).
func PasswdFile(password string) []byte {
	var pw [8]byte
	copy(pw[:], password)
	vncCipher([]byte{23, 82, 107, 6, 35, 78, 88, 7}).Encrypt(pw[:], pw[:])
	return pw[:]
}
