// Package execstream is the framing of an interactive exec: one
// bidirectional byte stream (an HTTP/1.1 connection after "101 Switching
// Protocols" to Upgrade: sietch-exec.v1) that carries a process's stdin,
// stdout, stderr, terminal resizes, signals and exit status as frames.
//
// A frame is a type byte, a big-endian uint32 payload length, and the
// payload (at most MaxPayload bytes):
//
//	client → server: Stdin (bytes), StdinEOF (empty), Resize (JSON Size),
//	                 Signal (JSON SignalReq)
//	server → client: Started (JSON Started), Stdout, Stderr (bytes),
//	                 Exit (JSON Exit), Error (JSON Error); nothing follows
//	                 Exit or Error
//
// sietchd relays the stream between a client and the guest agent without
// reading it; both ends check every frame they read.
package execstream

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Protocol is the Upgrade token.
const Protocol = "sietch-exec.v1"

// MaxPayload bounds one frame's payload.
const MaxPayload = 1 << 20

// Frame types.
const (
	Stdin    byte = 1
	StdinEOF byte = 2
	Resize   byte = 3
	Signal   byte = 4

	Started byte = 16
	Stdout  byte = 17
	Stderr  byte = 18
	Exit    byte = 19
	Error   byte = 20
)

// Size is a Resize frame's payload: a terminal size in character cells.
type Size struct {
	Rows uint16 `json:"rows"`
	Cols uint16 `json:"cols"`
}

// SignalReq is a Signal frame's payload: "SIGINT", "INT" or "2".
type SignalReq struct {
	Signal string `json:"signal"`
}

// StartedMsg is a Started frame's payload, the first frame the server sends.
type StartedMsg struct {
	ID  string `json:"id"`
	PID int    `json:"pid"`
}

// ExitMsg is an Exit frame's payload: how the process ended.
type ExitMsg struct {
	Code     int    `json:"code"`             // -1 when a signal ended it
	Signal   string `json:"signal,omitempty"` // "SIGKILL"
	TimedOut bool   `json:"timed_out,omitempty"`
}

// ErrorMsg is an Error frame's payload: the stream failed (the process
// may still have run).
type ErrorMsg struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Frame is one frame as read.
type Frame struct {
	Type    byte
	Payload []byte
}

// Reader reads frames from a stream.
type Reader struct {
	r   io.Reader
	hdr [5]byte
}

// NewReader reads frames from r.
func NewReader(r io.Reader) *Reader { return &Reader{r: r} }

// Next reads one frame. io.EOF means the stream ended between frames; a
// stream cut inside one, or a payload over MaxPayload, is an error.
func (r *Reader) Next() (Frame, error) {
	if _, err := io.ReadFull(r.r, r.hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return Frame{}, errors.New("exec stream: cut inside a frame header")
		}
		return Frame{}, err
	}
	n := binary.BigEndian.Uint32(r.hdr[1:])
	if n > MaxPayload {
		return Frame{}, fmt.Errorf("exec stream: frame of type %d has %d bytes, over the %d a frame may hold", r.hdr[0], n, MaxPayload)
	}
	f := Frame{Type: r.hdr[0], Payload: make([]byte, n)}
	if _, err := io.ReadFull(r.r, f.Payload); err != nil {
		return Frame{}, fmt.Errorf("exec stream: cut inside a frame of type %d: %w", f.Type, err)
	}
	return f, nil
}

// Writer writes frames; it is safe for concurrent use.
type Writer struct {
	mu sync.Mutex
	w  io.Writer
}

// NewWriter writes frames to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Write sends one frame, splitting data over MaxPayload into several of
// the same type.
func (w *Writer) Write(typ byte, data []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for first := true; first || len(data) > 0; first = false {
		chunk := data[:min(len(data), MaxPayload)]
		data = data[len(chunk):]
		buf := make([]byte, 5+len(chunk))
		buf[0] = typ
		binary.BigEndian.PutUint32(buf[1:], uint32(len(chunk)))
		copy(buf[5:], chunk)
		if _, err := w.w.Write(buf); err != nil {
			return err
		}
	}
	return nil
}

// WriteJSON sends one frame whose payload is v as JSON.
func (w *Writer) WriteJSON(typ byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return w.Write(typ, b)
}

// Decode reads a frame's JSON payload into v: one object, no unknown
// fields.
func Decode(f Frame, v any) error {
	dec := json.NewDecoder(bytes.NewReader(f.Payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("exec stream: frame of type %d: %w", f.Type, err)
	}
	if dec.More() {
		return fmt.Errorf("exec stream: frame of type %d: more than one JSON value", f.Type)
	}
	return nil
}
