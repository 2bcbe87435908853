package vhostuser

import (
	"errors"
	"fmt"
	"log/slog"
	"net"

	"github.com/sietch-vm/sietch/uffd"
)

// Backend serves the vhost-user protocol for one DeviceModel: the device
// process's side of the socket. It runs each queue the front-end sets up
// on a Vring.
type Backend struct {
	dev DeviceModel
	log *slog.Logger

	// Per-connection state, reset by Serve.
	features uint64 // acked, including FeatureProtocolFeatures
	protocol uint64 // acked protocol features
	mem      *guestMemory
	vrings   []ringSetup
	logMem   *dirtyLog // SET_LOG_BASE; used while FeatureLogAll is acked

	// Lazily restored memory (postcopy): the userfaultfd the process made
	// while privileged, and whether the front-end asked for faults.
	uffd      *uffd.FD
	listening bool
	replyFDs  []int // descriptors to attach to the next reply
}

// SetUserfault gives the back-end a userfaultfd for lazily restored guest
// memory; it offers PAGEFAULT and serves the postcopy messages with it.
// Call it before Serve. The Backend owns u.
func (b *Backend) SetUserfault(u *uffd.FD) { b.uffd = u }

// NewBackend returns a Backend for d. A nil log discards messages.
func NewBackend(d DeviceModel, log *slog.Logger) *Backend {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Backend{dev: d, log: log}
}

// rejectError is a failure the front-end is told about (a non-zero
// REPLY_ACK) without ending the session: the device refused a value.
type rejectError struct{ err error }

func (e *rejectError) Error() string { return e.err.Error() }
func (e *rejectError) Unwrap() error { return e.err }

func reject(format string, args ...any) error {
	return &rejectError{fmt.Errorf(format, args...)}
}

// Serve handles one front-end connection until it closes (nil) or sends a
// message that is malformed or unsupported (an error naming it). Either
// way all queues are stopped and guest memory is unmapped on return.
func (b *Backend) Serve(conn *net.UnixConn) error {
	b.reset()
	defer b.teardown()
	for {
		h, payload, fds, err := ReadMessage(conn, MaxFDs)
		if errors.Is(err, ErrClosed) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("vhost-user back-end: %w", err)
		}
		if h.isReply() {
			closeFDs(fds)
			return fmt.Errorf("vhost-user back-end: front-end sent a reply (%s) as a request", h.Request)
		}
		b.log.Debug("vhost-user request", "request", h.Request, "size", h.Size, "fds", len(fds))
		reply, err := b.handle(h.Request, payload, fds)
		var rej *rejectError
		if errors.As(err, &rej) {
			b.log.Warn("vhost-user request refused", "request", h.Request, "err", rej.err)
		} else if err != nil {
			return fmt.Errorf("vhost-user back-end: %s: %w", h.Request, err)
		}
		switch {
		case reply != nil:
			fds := b.replyFDs
			b.replyFDs = nil
			if err := WriteMessage(conn, Header{Request: h.Request, Flags: FlagVersion | FlagReply}, reply, fds); err != nil {
				return fmt.Errorf("vhost-user back-end: %w", err)
			}
		case h.Flags&FlagNeedReply != 0:
			var status uint64
			if rej != nil {
				status = 1
			}
			if err := WriteMessage(conn, Header{Request: h.Request, Flags: FlagVersion | FlagReply}, marshalU64(status), nil); err != nil {
				return fmt.Errorf("vhost-user back-end: %w", err)
			}
		}
	}
}

func (b *Backend) reset() {
	b.features, b.protocol, b.mem, b.logMem = 0, 0, nil, nil
	b.vrings = make([]ringSetup, max(b.dev.NumQueues(), 0))
	for i := range b.vrings {
		b.vrings[i] = ringSetup{kick: -1, call: -1, err: -1}
	}
}

func (b *Backend) teardown() {
	for i := range b.vrings {
		b.stop(i)
		v := &b.vrings[i]
		closeFDs([]int{v.kick, v.call, v.err})
		v.kick, v.call, v.err = -1, -1, -1
	}
	b.mem.unmap()
	b.mem = nil
	b.logMem.unmap()
	b.logMem = nil
}

// handle runs one request through its handler. A non-nil reply is sent
// back as the request's reply payload. fds are owned by handle.
func (b *Backend) handle(req Request, p []byte, fds []int) ([]byte, error) {
	h, ok := handlers[req]
	if !ok {
		closeFDs(fds)
		return nil, fmt.Errorf("unsupported request")
	}
	return h(b, p, fds)
}
