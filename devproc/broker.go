package devproc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// The vsock device process is jailed in an empty root, so it cannot connect
// to the host sockets <UDS>_<port> that guest-initiated connections go to.
// It asks the vmm over a socketpair instead: it sends the port (u32 LE), the
// vmm connects and answers one status byte, with the connected socket's fd
// attached when the status is 0. The vmm connects only to <UDS>_<port> for
// the port asked: the device cannot name any other path.

const (
	dialOK     = 0
	dialFailed = 1
)

// ServeVsockDials is the vmm's side of the broker: it answers the vsock
// device's connect requests until the socketpair closes.
func ServeVsockDials(conn *net.UnixConn, uds string, log *slog.Logger) {
	defer conn.Close()
	var req [4]byte
	for {
		if _, err := io.ReadFull(conn, req[:]); err != nil {
			return
		}
		port := binary.LittleEndian.Uint32(req[:])
		path := uds + "_" + strconv.FormatUint(uint64(port), 10)
		c, err := net.Dial("unix", path)
		if err != nil {
			log.Debug("vsock: guest connection to a host port nobody listens on", "port", port, "err", err)
			if _, err := conn.Write([]byte{dialFailed}); err != nil {
				return
			}
			continue
		}
		f, err := c.(*net.UnixConn).File()
		c.Close()
		if err != nil {
			if _, err := conn.Write([]byte{dialFailed}); err != nil {
				return
			}
			continue
		}
		_, _, err = conn.WriteMsgUnix([]byte{dialOK}, unix.UnixRights(int(f.Fd())), nil)
		f.Close()
		if err != nil {
			return
		}
	}
}

// VsockDialer is the device-process side of the broker.
type VsockDialer struct {
	mu   sync.Mutex
	conn *net.UnixConn
}

// NewVsockDialer wraps the broker socket the vmm passed in.
func NewVsockDialer(conn *net.UnixConn) *VsockDialer { return &VsockDialer{conn: conn} }

// Dial connects to the host's <UDS>_<port> through the vmm.
func (d *VsockDialer) Dial(port uint32) (net.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var req [4]byte
	binary.LittleEndian.PutUint32(req[:], port)
	if _, err := d.conn.Write(req[:]); err != nil {
		return nil, fmt.Errorf("vsock dial broker: %w", err)
	}
	buf := make([]byte, 1)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := d.conn.ReadMsgUnix(buf, oob)
	if err != nil || n != 1 {
		return nil, fmt.Errorf("vsock dial broker: short answer: %v", err)
	}
	var fds []int
	if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
		for _, m := range msgs {
			if got, err := unix.ParseUnixRights(&m); err == nil {
				fds = append(fds, got...)
			}
		}
	}
	if buf[0] != dialOK || len(fds) != 1 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("host port %d: %w", port, errNobodyListens)
	}
	f := os.NewFile(uintptr(fds[0]), "vsock-host-conn")
	defer f.Close()
	return net.FileConn(f)
}

var errNobodyListens = errors.New("nobody listens on the host socket")
