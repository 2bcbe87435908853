package agent

import (
	"bufio"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/creack/pty"

	"github.com/sietch-vm/sietch/wire/agentproto"
	"github.com/sietch-vm/sietch/wire/execstream"
)

// stdinQueue bounds the stdin frames waiting for a process that does not
// read them; beyond it the stream is not read (and signals wait too).
const stdinQueue = 64

// wantsStream says whether r asks for an exec stream (Upgrade).
func wantsStream(r *http.Request) bool {
	return headerHas(r.Header, "Connection", "upgrade") && strings.EqualFold(r.Header.Get("Upgrade"), execstream.Protocol)
}

// execStream runs req with its stdio on an exec stream: POST /v1/exec
// with "Connection: Upgrade" and "Upgrade: sietch-exec.v1". A request
// that cannot start is answered as usual; once it starts the reply is
// "101 Switching Protocols" and frames follow (package execstream). The
// process always has stdin; the client going away kills it.
func (a *Agent) execStream(w http.ResponseWriter, r *http.Request, req agentproto.ExecRequest) {
	req.Stdin = true
	p, attr, argv, e := a.begin(&req)
	if e != nil {
		writeError(w, e)
		return
	}
	defer a.unregister(p)
	files, err := openStdio(&req, p, false)
	if err != nil {
		writeError(w, apiErr(codeInternal, "exec %s: %v", req.Cmd, err))
		return
	}
	attr.Files = files.child
	if req.TTY != nil {
		attr.Sys.Setsid, attr.Sys.Setctty, attr.Sys.Ctty = true, true, 0
	} else {
		attr.Sys.Setpgid = true
	}
	proc, err := a.startProcess(argv[0], argv, attr)
	files.close()
	if err != nil {
		p.closeParent()
		writeError(w, startError(&req, attr.Dir, err))
		return
	}
	a.mu.Lock()
	p.proc, p.pid = proc, proc.Pid
	a.mu.Unlock()
	go a.wait(p)
	defer proc.Release()

	conn, brw, err := http.NewResponseController(w).Hijack()
	if err == nil && !a.addRelay(conn) {
		conn.Close()
		err = net.ErrClosed
	}
	if err != nil {
		p.kill()
		<-p.exited
		p.closeParent()
		return
	}
	defer a.dropRelay(conn)
	defer conn.Close()
	brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: " + execstream.Protocol + "\r\n\r\n")
	fw := execstream.NewWriter(&flushWriter{w: brw.Writer})
	if fw.WriteJSON(execstream.Started, execstream.StartedMsg{ID: p.id, PID: p.pid}) != nil {
		p.kill()
	}
	a.log.Info("agent: exec stream started", "id", p.id, "pid", p.pid, "cmd", argv[0], "tty", req.TTY != nil)

	go a.readFrames(p, execstream.NewReader(brw.Reader))
	var readers sync.WaitGroup
	for i, f := range p.output {
		readers.Add(1)
		go func() {
			defer readers.Done()
			typ := execstream.Stdout
			if i == 1 {
				typ = execstream.Stderr
			}
			buf := make([]byte, outputChunk)
			for {
				n, err := f.Read(buf)
				if n > 0 && fw.Write(typ, buf[:n]) != nil {
					p.kill() // nobody reads the output: the client is gone
					return
				}
				if err != nil {
					return
				}
			}
		}()
	}
	if req.TimeoutMS > 0 {
		t := time.AfterFunc(time.Duration(req.TimeoutMS)*time.Millisecond, func() {
			p.timedOut.Store(true)
			p.kill()
		})
		defer t.Stop()
	}
	<-p.exited
	a.drain(p, &readers)
	p.closeParent()
	a.unregister(p) // before the exit frame: once a client sees it, the id is free
	ev := finalEvent(p)
	exit := execstream.ExitMsg{Code: -1, Signal: ev.Signal, TimedOut: ev.TimedOut}
	if ev.ExitCode != nil {
		exit.Code = *ev.ExitCode
	}
	if ev.Error != "" {
		fw.WriteJSON(execstream.Error, execstream.ErrorMsg{Code: codeInternal, Message: ev.Error})
	} else {
		fw.WriteJSON(execstream.Exit, exit)
	}
	a.log.Info("agent: exec stream ended", "id", p.id, "pid", p.pid, "status", p.status, "timed_out", p.timedOut.Load())
}

// readFrames applies the client's frames to p until the stream ends; a
// stream that ends (or breaks) before the process does kills it.
func (a *Agent) readFrames(p *process, fr *execstream.Reader) {
	stdin := make(chan []byte, stdinQueue)
	go func() {
		last := byte('\n')
		for b := range stdin {
			if b == nil {
				p.endStdin(last)
				continue
			}
			last = b[len(b)-1]
			if _, err := p.stdin.Write(b); err != nil {
				// The process closed its stdin: drop what else comes.
				for range stdin {
				}
				return
			}
		}
	}()
	defer close(stdin)
	eof := false
	for {
		f, err := fr.Next()
		if err != nil {
			if !p.hasExited() {
				a.log.Info("agent: exec stream client gone; killing", "id", p.id, "pid", p.pid, "err", err)
				p.kill()
			}
			return
		}
		switch f.Type {
		case execstream.Stdin:
			if !eof && len(f.Payload) > 0 {
				stdin <- f.Payload
			}
		case execstream.StdinEOF:
			if !eof {
				eof = true
				stdin <- nil
			}
		case execstream.Resize:
			var s execstream.Size
			if execstream.Decode(f, &s) == nil && validSize(s.Rows, s.Cols) == nil && p.ptmx != nil {
				pty.Setsize(p.ptmx, &pty.Winsize{Rows: s.Rows, Cols: s.Cols})
			}
		case execstream.Signal:
			var s execstream.SignalReq
			if execstream.Decode(f, &s) == nil {
				if sig, e := parseSignal(s.Signal); e == nil {
					p.signal(sig)
				}
			}
		}
		// Other types are ignored: a newer client may send more.
	}
}

// endStdin ends the process's input: the pipe closes, or on a PTY an
// end-of-file character is typed (twice after a partial line, as a
// terminal user would).
func (p *process) endStdin(last byte) {
	if p.ptmx == nil {
		p.stdin.Close()
		return
	}
	eof := []byte{4}
	if last != '\n' {
		eof = []byte{4, 4}
	}
	p.ptmx.Write(eof)
}

// flushWriter flushes after every write, so that each frame leaves at once.
type flushWriter struct {
	mu sync.Mutex
	w  *bufio.Writer
}

func (f *flushWriter) Write(b []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.w.Write(b)
	if err == nil {
		err = f.w.Flush()
	}
	return n, err
}
