package agent

import (
	"fmt"
	"net"

	"github.com/mdlayher/vsock"
)

// ListenVsock listens on a vsock port of this machine (the guest), for
// any peer CID.
func ListenVsock(port uint32) (net.Listener, error) {
	l, err := vsock.Listen(port, nil)
	if err != nil {
		return nil, fmt.Errorf("listen on vsock port %d (is the virtio-vsock driver loaded?): %w", port, err)
	}
	return l, nil
}
