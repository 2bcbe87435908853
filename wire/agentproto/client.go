package agentproto

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/sietch-vm/sietch/internal/httpjson"
	"github.com/sietch-vm/sietch/internal/unixmode"
)

const (
	clientBase     = "http://sietch-agent"
	maxEventLine   = 1 << 20 // an output event of 32 KiB is about 44 KiB of JSON
	maxErrorBody   = 64 << 10
	maxReplyBody   = 64 << 20 // stat, list, health
	connectTimeout = 30 * time.Second
)

// Client talks to the agent over streams that dial opens, keeping idle
// ones for the next request: where guest kernel mode is emulated, opening
// a vsock stream costs tens of milliseconds, more than a small request.
// A kept stream dies with its VM's vsock transport (a stop, or the reset
// a restored guest sees); the transport then drops it and dials anew.
type Client struct {
	dial func(ctx context.Context) (net.Conn, error)
	hc   *http.Client
	tr   *http.Transport
}

// NewClient returns a client whose requests go over streams from dial
// (such as DialUDS's).
func NewClient(dial func(ctx context.Context) (net.Conn, error)) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dial(ctx)
		},
		MaxIdleConnsPerHost: maxIdleStreams,
		// Well under the agent's own idle timeout, so that a request
		// never races the agent closing the stream it was sent on.
		IdleConnTimeout:        idleStream,
		DisableCompression:     true,
		MaxResponseHeaderBytes: 64 << 10,
		// Uploads that send "Expect: 100-continue" hear a refusal before
		// the body; an agent that says nothing gets the body after this.
		ExpectContinueTimeout: 10 * time.Second,
	}
	return &Client{dial: dial, hc: &http.Client{Transport: tr}, tr: tr}
}

const (
	maxIdleStreams = 8
	idleStream     = time.Minute
)

// CloseIdle closes the kept streams, as before a VM is snapshotted or
// stopped: a snapshot should not hold connections nobody will use.
func (c *Client) CloseIdle() { c.tr.CloseIdleConnections() }

// do sends a request and turns a 4xx or 5xx reply into *Error.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, body io.Reader) (*http.Response, error) {
	u := clientBase + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, fmt.Errorf("agent %s %s: %w", method, path, err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("agent %s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		return nil, readError(resp)
	}
	return resp, nil
}

// doJSON sends in (if not nil) as JSON and decodes the reply into out (if not nil).
func (c *Client) doJSON(ctx context.Context, method, path string, q url.Values, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("agent %s %s: encode request: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	resp, err := c.do(ctx, method, path, q, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxReplyBody)).Decode(out); err != nil {
		return fmt.Errorf("agent %s %s: decode reply: %w", method, path, err)
	}
	return nil
}

// readError reads an error reply; a body that is not the agent's JSON
// still yields an *Error with the status and the start of the body.
func readError(resp *http.Response) error {
	return httpjson.ReadError(resp, maxErrorBody)
}

// Health asks whether the agent is up, with basic machine metrics.
func (c *Client) Health(ctx context.Context) (Health, error) {
	var h Health
	err := c.doJSON(ctx, http.MethodGet, "/v1/health", nil, nil, &h)
	return h, err
}

// Shutdown asks guest-init to power the machine off (or reboot it, with
// poweroff false). The agent replies before it starts.
func (c *Client) Shutdown(ctx context.Context, poweroff bool) error {
	return c.doJSON(ctx, http.MethodPost, "/v1/shutdown", nil, ShutdownRequest{Poweroff: poweroff}, nil)
}

// SetIdentity tells the guest who it is now (POST /v1/identity).
func (c *Client) SetIdentity(ctx context.Context, id Identity) (IdentityResult, error) {
	var res IdentityResult
	err := c.doJSON(ctx, http.MethodPost, "/v1/identity", nil, id, &res)
	return res, err
}

// SetIdentityNow is SetIdentity with id.Time set to the host's clock when
// the request is written, after the connection to the guest is up (which
// can take a while right after a restore), so the guest's clock ends up
// off only by how long the guest takes to read the request.
func (c *Client) SetIdentityNow(ctx context.Context, id Identity) (IdentityResult, error) {
	body := &lazyBody{make: func() ([]byte, error) {
		id.Time = time.Now()
		return json.Marshal(id)
	}}
	resp, err := c.do(ctx, http.MethodPost, "/v1/identity", nil, body)
	if err != nil {
		return IdentityResult{}, err
	}
	defer resp.Body.Close()
	var res IdentityResult
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxReplyBody)).Decode(&res); err != nil {
		return res, fmt.Errorf("agent POST /v1/identity: decode reply: %w", err)
	}
	return res, nil
}

// lazyBody makes its bytes on the first Read: net/http reads a request
// body only once the connection is up.
type lazyBody struct {
	make func() ([]byte, error)
	r    *bytes.Reader
}

func (b *lazyBody) Read(p []byte) (int, error) {
	if b.r == nil {
		data, err := b.make()
		if err != nil {
			return 0, err
		}
		b.r = bytes.NewReader(data)
	}
	return b.r.Read(p)
}

// Start starts a background process that outlives the call (POST
// /v1/start); signal it by the returned id while it runs.
func (c *Client) Start(ctx context.Context, req StartRequest) (Started, error) {
	var st Started
	err := c.doJSON(ctx, http.MethodPost, "/v1/start", nil, req, &st)
	return st, err
}

// Exec runs a command and copies its output to stdout and stderr (either
// may be nil) as the agent sends it. With a non-nil stdin it is streamed
// to the process over a second request and closed at EOF; Exec does not
// wait for a Read of stdin that is still blocked when the process ends.
// Cancelling ctx kills the process. A start failure is an *Error.
func (c *Client) Exec(ctx context.Context, req ExecRequest, stdin io.Reader, stdout, stderr io.Writer) (ExecResult, error) {
	req.Stdin = stdin != nil
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	b, err := json.Marshal(req)
	if err != nil {
		return ExecResult{}, fmt.Errorf("agent exec %s: encode request: %w", req.Cmd, err)
	}
	resp, err := c.do(ctx, http.MethodPost, "/v1/exec", nil, bytes.NewReader(b))
	if err != nil {
		return ExecResult{}, err
	}
	defer resp.Body.Close()
	res := ExecResult{ID: req.ID}
	br := bufio.NewReaderSize(resp.Body, 64<<10)
	first := true
	for {
		line, err := readLine(br, maxEventLine)
		if err != nil {
			if cause := context.Cause(ctx); cause != nil {
				err = cause
			}
			return res, fmt.Errorf("agent exec %s (id %s): stream ended before the exit status: %w", req.Cmd, res.ID, err)
		}
		var ev ExecEvent
		if err := json.Unmarshal(line, &ev); err != nil {
			return res, fmt.Errorf("agent exec %s: bad event %.80q: %w", req.Cmd, line, err)
		}
		if first {
			first = false
			res.ID = ev.ID
			if stdin != nil {
				go c.streamStdin(ctx, cancel, ev.ID, stdin)
			}
			continue
		}
		switch {
		case len(ev.Stdout) > 0:
			if err := write(stdout, ev.Stdout); err != nil {
				return res, fmt.Errorf("agent exec %s: write stdout: %w", req.Cmd, err)
			}
		case len(ev.Stderr) > 0:
			if err := write(stderr, ev.Stderr); err != nil {
				return res, fmt.Errorf("agent exec %s: write stderr: %w", req.Cmd, err)
			}
		case ev.Error != "":
			return res, fmt.Errorf("agent exec %s (id %s): %s", req.Cmd, res.ID, ev.Error)
		case ev.ExitCode != nil:
			res.ExitCode, res.TimedOut = *ev.ExitCode, ev.TimedOut
			drain(br)
			return res, nil
		case ev.Signal != "":
			res.ExitCode, res.Signal, res.TimedOut = -1, ev.Signal, ev.TimedOut
			drain(br)
			return res, nil
		}
	}
}

// noClose keeps the HTTP transport from closing the caller's reader
// (such as os.Stdin) after sending it.
func noClose(r io.Reader) io.Reader {
	if _, ok := r.(io.Closer); ok {
		return struct{ io.Reader }{r}
	}
	return r
}

func write(w io.Writer, b []byte) error {
	if w == nil {
		return nil
	}
	_, err := w.Write(b)
	return err
}

// readLine reads one '\n'-terminated line of at most limit bytes.
func readLine(br *bufio.Reader, limit int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > limit {
			return nil, fmt.Errorf("event line longer than %d bytes", limit)
		}
		if err == nil {
			return line, nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
}

// streamStdin posts stdin to a running exec. An exec that ended first
// (404) or stopped reading (409) is not an error; any other failure
// would leave the process waiting for input, so it ends the exec.
func (c *Client) streamStdin(ctx context.Context, cancel context.CancelCauseFunc, id string, stdin io.Reader) {
	resp, err := c.do(ctx, http.MethodPost, "/v1/exec/"+url.PathEscape(id)+"/stdin", nil, noClose(stdin))
	if err == nil {
		resp.Body.Close()
		return
	}
	var e *Error
	if errors.As(err, &e) && (e.Status == http.StatusNotFound || e.Status == http.StatusConflict) {
		return
	}
	if ctx.Err() == nil {
		cancel(fmt.Errorf("stdin: %w", err))
	}
}

// Signal sends a signal ("SIGTERM", "TERM" or "15") to a running exec's
// process group.
func (c *Client) Signal(ctx context.Context, execID string, sig string) error {
	return c.doJSON(ctx, http.MethodPost, "/v1/exec/"+url.PathEscape(execID)+"/signal", nil, SignalRequest{Signal: sig}, nil)
}

// Resize sets the terminal size of a running exec started with a TTY.
func (c *Client) Resize(ctx context.Context, execID string, rows, cols uint16) error {
	return c.doJSON(ctx, http.MethodPost, "/v1/exec/"+url.PathEscape(execID)+"/resize", nil, TTYSize{Rows: rows, Cols: cols}, nil)
}

// Upload writes r to path in the guest, atomically. A zero mode keeps the
// mode of the file it replaces, or makes a new file 0644.
func (c *Client) Upload(ctx context.Context, path string, mode os.FileMode, r io.Reader) error {
	q := url.Values{"path": {path}}
	if mode != 0 {
		q.Set("mode", unixmode.Format(mode))
	}
	resp, err := c.do(ctx, http.MethodPut, "/v1/files", q, noClose(r))
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// Download copies the guest file at path to w and returns its mode.
func (c *Client) Download(ctx context.Context, path string, w io.Writer) (os.FileMode, error) {
	resp, err := c.do(ctx, http.MethodGet, "/v1/files", url.Values{"path": {path}}, nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	mode, err := unixmode.Parse(resp.Header.Get(ModeHeader))
	if err != nil {
		return 0, fmt.Errorf("agent download %s: header %s: %w", path, ModeHeader, err)
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		return 0, fmt.Errorf("agent download %s: %w", path, err)
	}
	return mode, nil
}

// Stat describes path itself (a symlink, not its target).
func (c *Client) Stat(ctx context.Context, path string) (FileInfo, error) {
	var fi FileInfo
	err := c.doJSON(ctx, http.MethodGet, "/v1/stat", url.Values{"path": {path}}, nil, &fi)
	return fi, err
}

// List returns a directory's entries sorted by name.
func (c *Client) List(ctx context.Context, path string) ([]FileInfo, error) {
	var r ListReply
	err := c.doJSON(ctx, http.MethodGet, "/v1/list", url.Values{"path": {path}}, nil, &r)
	return r.Entries, err
}

// Mkdir makes a directory with mode (0: 0755), and its parents if asked.
func (c *Client) Mkdir(ctx context.Context, path string, mode os.FileMode, parents bool) error {
	q := url.Values{"path": {path}, "parents": {strconv.FormatBool(parents)}}
	if mode != 0 {
		q.Set("mode", unixmode.Format(mode))
	}
	return c.doJSON(ctx, http.MethodPost, "/v1/mkdir", q, nil, nil)
}

// Remove removes a file, symlink or empty directory; with recursive, a
// whole tree.
func (c *Client) Remove(ctx context.Context, path string, recursive bool) error {
	q := url.Values{"path": {path}, "recursive": {strconv.FormatBool(recursive)}}
	return c.doJSON(ctx, http.MethodDelete, "/v1/files", q, nil, nil)
}

// ConnectPort opens a byte stream to 127.0.0.1:guestPort in the guest.
// The connection supports CloseWrite when the underlying stream does.
func (c *Client) ConnectPort(ctx context.Context, guestPort int) (net.Conn, error) {
	if guestPort < 1 || guestPort > 65535 {
		return nil, fmt.Errorf("agent connect: port %d out of range 1-65535", guestPort)
	}
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("agent connect to guest port %d: %w", guestPort, err)
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(connectTimeout)
	}
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	br, err := upgrade(conn, guestPort)
	if !stop() && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("agent connect to guest port %d: %w", guestPort, err)
	}
	conn.SetDeadline(time.Time{})
	return &relayConn{Conn: conn, r: br}, nil
}

// upgrade sends the port request and reads the 101 reply.
func upgrade(conn net.Conn, port int) (*bufio.Reader, error) {
	req, err := http.NewRequest(http.MethodPost, clientBase+"/v1/ports/"+strconv.Itoa(port)+"/connect", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "tcp")
	return switchProtocols(conn, req, "tcp")
}

// relayConn is a port relay: reads drain what the HTTP reply's reader
// buffered first.
type relayConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *relayConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// CloseWrite ends the guest-bound direction; the guest port sees EOF.
func (c *relayConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.New("agent connection: stream cannot half-close")
}

// NewContext starts a code context and returns it once its interpreter is
// ready (tens of seconds for python where guest kernel mode is emulated).
func (c *Client) NewContext(ctx context.Context, req ContextRequest) (Context, error) {
	var out Context
	err := c.doJSON(ctx, http.MethodPost, "/v1/contexts", nil, req, &out)
	return out, err
}

// Contexts lists the code contexts.
func (c *Client) Contexts(ctx context.Context) ([]Context, error) {
	var out struct {
		Contexts []Context `json:"contexts"`
	}
	err := c.doJSON(ctx, http.MethodGet, "/v1/contexts", nil, nil, &out)
	return out.Contexts, err
}

// Run runs code in context id (DefaultContext is started on first use),
// calling each for every event as it comes; it returns the end event.
// Cancelling ctx interrupts the run.
func (c *Client) Run(ctx context.Context, id string, req RunRequest, each func(RunEvent) error) (RunEnd, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return RunEnd{}, fmt.Errorf("agent run: encode request: %w", err)
	}
	resp, err := c.do(ctx, http.MethodPost, "/v1/contexts/"+url.PathEscape(id)+"/run", nil, bytes.NewReader(b))
	if err != nil {
		return RunEnd{}, err
	}
	defer resp.Body.Close()
	br := bufio.NewReaderSize(resp.Body, 64<<10)
	for {
		line, err := readLine(br, maxRunEventLine)
		if err != nil {
			return RunEnd{}, fmt.Errorf("agent run in context %s: stream ended before the end event: %w", id, err)
		}
		var ev RunEvent
		if err := json.Unmarshal(line, &ev); err != nil {
			return RunEnd{}, fmt.Errorf("agent run in context %s: bad event %.80q: %w", id, line, err)
		}
		if ev.End != nil {
			drain(br)
			return *ev.End, nil
		}
		if each != nil {
			if err := each(ev); err != nil {
				return RunEnd{}, err
			}
		}
	}
}

// drain reads a stream's end after its last event, so that the
// connection goes back to the pool: a body closed before its end closes
// the connection, and the next call pays for a new one (an accept and a
// handshake through the vsock device, costly in a guest).
func drain(r io.Reader) {
	io.Copy(io.Discard, io.LimitReader(r, 4<<10))
}

// maxRunEventLine bounds one run event (a result with a large image).
const maxRunEventLine = 64 << 20

// Interrupt sends SIGINT to the code running in context id.
func (c *Client) Interrupt(ctx context.Context, id string) error {
	return c.doJSON(ctx, http.MethodPost, "/v1/contexts/"+url.PathEscape(id)+"/interrupt", nil, nil, nil)
}

// Restart starts context id's interpreter anew; its state is lost.
func (c *Client) Restart(ctx context.Context, id string) (Context, error) {
	var out Context
	err := c.doJSON(ctx, http.MethodPost, "/v1/contexts/"+url.PathEscape(id)+"/restart", nil, nil, &out)
	return out, err
}

// DeleteContext ends context id.
func (c *Client) DeleteContext(ctx context.Context, id string) error {
	return c.doJSON(ctx, http.MethodDelete, "/v1/contexts/"+url.PathEscape(id), nil, nil, nil)
}

// Clock reads the guest's wall clock (GET /v1/clock).
func (c *Client) Clock(ctx context.Context) (time.Time, error) {
	var res Clock
	if err := c.doJSON(ctx, http.MethodGet, "/v1/clock", nil, nil, &res); err != nil {
		return time.Time{}, err
	}
	return time.Unix(0, res.TimeNS), nil
}

// StepClock moves the guest's wall clock by d (POST /v1/clock).
func (c *Client) StepClock(ctx context.Context, d time.Duration) error {
	return c.doJSON(ctx, http.MethodPost, "/v1/clock", nil, ClockStep{StepNS: d.Nanoseconds()}, nil)
}

// ClockSync is what SyncClock measured and did.
type ClockSync struct {
	Offset time.Duration // the guest's clock minus the host's at the last probe
	Bound  time.Duration // half that probe's round trip: how far Offset may be wrong
	Steps  int           // relative steps sent
}

// clockProbes bounds SyncClock: a step needs a probe before and after it.
const clockProbes = 3

// SyncClock brings the guest's wall clock to the host's the way NTP
// measures an offset: it reads the guest's clock between two readings of
// the host's and takes their midpoint as the moment the guest read it, so
// the error is at most half the round trip whatever the latency, then
// steps the guest by the offset relative to wherever its clock is then.
// It stops when the offset is within tolerance or within what the probe
// can tell apart (half its round trip). SetIdentityNow's absolute time is
// off by the request's one-way trip, which on a restored guest whose kernel
// is emulated can be seconds; this corrects that.
func (c *Client) SyncClock(ctx context.Context, tolerance time.Duration) (ClockSync, error) {
	var s ClockSync
	for probe := 1; ; probe++ {
		sent := time.Now()
		g, err := c.Clock(ctx)
		if err != nil {
			return s, err
		}
		rtt := time.Since(sent)
		s.Offset, s.Bound = g.Sub(sent.Add(rtt/2)), rtt/2
		if s.Offset.Abs() <= max(tolerance, s.Bound) || probe == clockProbes {
			return s, nil
		}
		if err := c.StepClock(ctx, -s.Offset); err != nil {
			return s, err
		}
		s.Steps++
	}
}
