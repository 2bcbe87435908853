package agent

import (
	"bufio"
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sietch-vm/sietch/wire/agentproto"
)

// Code contexts: long-lived interpreters in the guest whose state persists
// between runs (docs/AGENT.md, "Code contexts"). Starting an interpreter
// costs seconds to tens of seconds where guest kernel mode is emulated;
// a run in a warm one costs a pipe write and read.

//go:embed drivers/python.py
var pythonDriver string

//go:embed drivers/node.js
var nodeDriver string

const (
	maxContexts      = 32
	contextReadyWait = 5 * time.Minute // an interpreter's start, here
	interruptGrace   = 3 * time.Second // after SIGINT, before the context is killed
	maxEventLine     = 64 << 20        // a result with a large image is one line
	markerEnv        = "SIETCH_CONTEXT_MARKER"
)

// driverEvent is one line a driver writes on its event fd; bash's "end N"
// lines are turned into one too.
type driverEvent struct {
	agentproto.RunEvent
	Ready *struct {
		PID     int    `json:"pid"`
		Version string `json:"version"`
	} `json:"ready,omitempty"`
	// Begin says the driver is about to run the code: from then on SIGINT
	// interrupts it. One sent earlier would be lost between runs.
	Begin *struct{} `json:"begin,omitempty"`
}

// codeContext is one interpreter and what the agent knows of it.
type codeContext struct {
	id       string
	language string
	cwd      string
	env      []string
	created  time.Time

	runMu sync.Mutex // one run at a time

	mu     sync.Mutex
	state  string
	reason string
	runs   int
	proc   *os.Process
	pid    int
	req    *os.File                  // the driver's request fd (we write)
	events chan driverEvent          // from the event reader
	sink   func(agentproto.RunEvent) // the run's, while one runs
	marks  chan struct{}             // an output reader saw the run's marker
	exited chan struct{}             // closed when the driver has exited
	marker []byte
	// The current run's: the driver said begin; an interrupt waits for it;
	// it was interrupted.
	begun, pendingInterrupt, interrupted bool
}

func (c *codeContext) view() agentproto.Context {
	c.mu.Lock()
	defer c.mu.Unlock()
	return agentproto.Context{ID: c.id, Language: c.language, Cwd: c.cwd, PID: c.pid, State: c.state,
		Reason: c.reason, Runs: c.runs, CreatedAt: c.created}
}

// newContext validates req and starts its interpreter, waiting until it is
// ready.
func (a *Agent) newContext(req agentproto.ContextRequest) (*codeContext, *Error) {
	if req.Language == "" {
		req.Language = agentproto.LanguagePython
	}
	switch req.Language {
	case agentproto.LanguagePython, agentproto.LanguageBash, agentproto.LanguageNode:
	default:
		return nil, badRequest("language %q: want python, bash or node", req.Language)
	}
	if req.ID == "" {
		req.ID = randomHex(8)
	}
	if e := validID(req.ID); e != nil {
		return nil, e
	}
	// The environment and working directory are an exec's.
	ereq := agentproto.ExecRequest{Cmd: "true", Env: req.Env, Cwd: req.Cwd}
	if e := validateExec(&ereq); e != nil {
		return nil, e
	}
	attr, _, e := a.prepare(&ereq)
	if e != nil {
		return nil, e
	}
	c := &codeContext{id: req.ID, language: req.Language, cwd: attr.Dir, env: attr.Env, created: time.Now().UTC()}
	a.mu.Lock()
	switch {
	case a.closed:
		a.mu.Unlock()
		return nil, apiErr(codeConflict, "agent is shutting down")
	case a.contexts[c.id] != nil:
		a.mu.Unlock()
		return nil, apiErr(codeConflict, "context %q exists; pick another id or omit it", c.id)
	case len(a.contexts) >= maxContexts:
		a.mu.Unlock()
		return nil, apiErr(codeTooMany, "%d contexts exist; delete some first", len(a.contexts))
	}
	a.contexts[c.id] = c
	a.mu.Unlock()
	if e := a.startContext(c); e != nil {
		a.mu.Lock()
		delete(a.contexts, c.id)
		a.mu.Unlock()
		return nil, e
	}
	return c, nil
}

// startContext starts c's interpreter and waits for it to say it is ready.
func (a *Agent) startContext(c *codeContext) *Error {
	marker := "\x1esietch-" + randomHex(8) + "\x1e"
	var argv []string
	switch c.language {
	case agentproto.LanguagePython:
		argv = []string{"python3", "-u", "-X", "utf8", "-c", pythonDriver}
	case agentproto.LanguageNode:
		argv = []string{"node", "-e", nodeDriver}
	case agentproto.LanguageBash:
		argv = []string{"bash", "--norc", "--noprofile"}
	}
	pathEnv, _ := getenv(c.env, "PATH")
	prog, e := lookPath(argv[0], pathEnv, c.cwd)
	if e != nil {
		return apiErr(codeNotFound, "context %s: %s is not installed in this image (%s)", c.id, argv[0], e.Message)
	}
	env := mergeEnv(c.env, map[string]string{markerEnv: marker, "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"})

	// Pipes: the driver's stdout and stderr, its requests and its events.
	var ours, theirs []*os.File
	fail := func(err error) *Error {
		for _, f := range append(ours, theirs...) {
			f.Close()
		}
		return apiErr(codeInternal, "context %s: %v", c.id, err)
	}
	var outR, outW, errR, errW, reqR, reqW, evR, evW *os.File
	for _, p := range []struct{ r, w **os.File }{{&outR, &outW}, {&errR, &errW}, {&reqR, &reqW}, {&evR, &evW}} {
		r, w, err := os.Pipe()
		if err != nil {
			return fail(fmt.Errorf("pipe: %w", err))
		}
		*p.r, *p.w = r, w
	}
	ours = []*os.File{outR, errR, reqW, evR}
	theirs = []*os.File{outW, errW, reqR, evW}
	var files []*os.File
	if c.language == agentproto.LanguageBash {
		// bash reads its commands on stdin and writes "ready" and "end N"
		// lines on fd 3.
		files = []*os.File{reqR, outW, errW, evW}
	} else {
		null, err := os.Open(os.DevNull)
		if err != nil {
			return fail(err)
		}
		theirs = append(theirs, null)
		files = []*os.File{null, outW, errW, reqR, evW}
	}
	attr := &os.ProcAttr{Dir: c.cwd, Env: env, Files: files, Sys: &syscall.SysProcAttr{Setpgid: true}}
	proc, err := a.startProcess(prog, append([]string{prog}, argv[1:]...), attr)
	for _, f := range theirs {
		f.Close()
	}
	theirs = nil
	if err != nil {
		return fail(fmt.Errorf("start %s: %w", argv[0], err))
	}
	exited := make(chan struct{})
	events := make(chan driverEvent, 64)
	marks := make(chan struct{}, 2)
	c.mu.Lock()
	c.proc, c.pid, c.req, c.events, c.marks, c.exited, c.marker = proc, proc.Pid, reqW, events, marks, exited, []byte(marker)
	c.state, c.reason = agentproto.ContextIdle, ""
	c.mu.Unlock()
	go a.reapContext(c, proc, exited)
	go c.readOutput(outR, "stdout", marks)
	go c.readOutput(errR, "stderr", marks)
	go c.readEvents(evR, events)

	if c.language == agentproto.LanguageBash {
		// SIGINT runs a no-op trap instead of ending the shell; the
		// command it interrupts still gets it (a handler, not SIG_IGN,
		// is not inherited by what bash runs).
		if _, err := fmt.Fprintf(reqW, "trap : INT\nprintf 'ready %%d\\n' $$ >&3\n"); err != nil {
			return apiErr(codeInternal, "context %s: start bash: %v", c.id, err)
		}
	}
	select {
	case ev := <-events:
		if ev.Ready == nil {
			a.killContext(c)
			return apiErr(codeInternal, "context %s: the %s driver's first word was not ready", c.id, c.language)
		}
		a.log.Info("agent: context ready", "id", c.id, "language", c.language, "pid", proc.Pid, "version", ev.Ready.Version)
		return nil
	case <-exited:
		return apiErr(codeInternal, "context %s: %s exited as it started: %s", c.id, argv[0], c.view().Reason)
	case <-time.After(contextReadyWait):
		a.killContext(c)
		return apiErr(codeInternal, "context %s: %s was not ready within %v", c.id, argv[0], contextReadyWait)
	}
}

// reapContext waits for the interpreter's exit and marks c dead.
func (a *Agent) reapContext(c *codeContext, proc *os.Process, exited chan struct{}) {
	var status syscall.WaitStatus
	var err error
	if a.cfg.Reaper != nil {
		status, err = a.cfg.Reaper.Wait(proc.Pid)
	} else {
		var st *os.ProcessState
		if st, err = proc.Wait(); err == nil {
			status = st.Sys().(syscall.WaitStatus)
		}
	}
	reason := "its interpreter exited"
	switch {
	case err != nil:
		reason += ": " + err.Error()
	case status.Signaled():
		reason += " by " + status.Signal().String()
	default:
		reason += " with status " + strconv.Itoa(status.ExitStatus())
	}
	c.mu.Lock()
	if c.exited == exited {
		c.state, c.reason = agentproto.ContextDead, reason
		c.req.Close()
	}
	c.mu.Unlock()
	close(exited)
}

// readOutput forwards what the interpreter writes on fd 1 or 2 to the run
// (its own output, or its subprocesses'), and reports the run's marker.
func (c *codeContext) readOutput(f *os.File, stream string, marks chan<- struct{}) {
	defer f.Close()
	c.mu.Lock()
	marker := c.marker
	c.mu.Unlock()
	buf := make([]byte, 32<<10)
	var pending []byte // bytes that may begin a marker
	send := func(b []byte) {
		if len(b) == 0 {
			return
		}
		c.mu.Lock()
		sink := c.sink
		c.mu.Unlock()
		if sink == nil {
			return // nobody asked: output between runs is dropped
		}
		ev := agentproto.RunEvent{Stdout: string(b)}
		if stream == "stderr" {
			ev = agentproto.RunEvent{Stderr: string(b)}
		}
		sink(ev)
	}
	for {
		n, err := f.Read(buf)
		data := append(pending, buf[:n]...)
		pending = nil
		for {
			i := bytes.Index(data, marker)
			if i < 0 {
				break
			}
			send(data[:i])
			marks <- struct{}{}
			data = data[i+len(marker):]
		}
		// Keep a tail that could be the start of a marker.
		keep := 0
		for k := min(len(marker)-1, len(data)); k > 0; k-- {
			if bytes.HasPrefix(marker, data[len(data)-k:]) {
				keep = k
				break
			}
		}
		send(data[:len(data)-keep])
		pending = append([]byte(nil), data[len(data)-keep:]...)
		if err != nil {
			return
		}
	}
}

// readEvents turns the driver's event lines into events: JSON for python
// and node, "ready PID" and "end STATUS" for bash.
func (c *codeContext) readEvents(f *os.File, out chan<- driverEvent) {
	defer f.Close()
	defer close(out)
	br := bufio.NewReaderSize(f, 64<<10)
	for {
		line, err := readLimitedLine(br, maxEventLine)
		if err != nil {
			return
		}
		var ev driverEvent
		if c.language == agentproto.LanguageBash {
			word, arg, _ := strings.Cut(strings.TrimSpace(string(line)), " ")
			n, _ := strconv.Atoi(arg)
			switch word {
			case "ready":
				ev.Ready = &struct {
					PID     int    `json:"pid"`
					Version string `json:"version"`
				}{PID: n}
			case "begin":
				ev.Begin = &struct{}{}
			case "end":
				status := agentproto.RunOK
				if n != 0 {
					status = agentproto.RunFailed
				}
				code := n
				ev.End = &agentproto.RunEnd{Status: status, ExitCode: &code}
			default:
				continue
			}
		} else if json.Unmarshal(line, &ev) != nil {
			continue // not the driver's: ignore
		}
		out <- ev
	}
}

// readLimitedLine reads one '\n'-terminated line of at most limit bytes.
func readLimitedLine(br *bufio.Reader, limit int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > limit {
			return nil, fmt.Errorf("line longer than %d bytes", limit)
		}
		if err == nil {
			return line, nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
	}
}

// request is what the driver reads for one run.
func (c *codeContext) request(code string) []byte {
	if c.language == agentproto.LanguageBash {
		// One eval in the shell itself, so that cd and variables persist;
		// stdin is /dev/null so that code cannot read the next request.
		m := string(c.marker)
		return fmt.Appendf(nil, "printf 'begin\\n' >&3; eval %s </dev/null; __sietch_rc=$?; printf '%%s' %s; printf '%%s' %s >&2; printf 'end %%d\\n' \"$__sietch_rc\" >&3\n",
			shellQuote(code), shellQuote(m), shellQuote(m))
	}
	b, _ := json.Marshal(map[string]string{"code": code})
	return append(b, '\n')
}

// shellQuote quotes s for bash as one word.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// run sends code to the interpreter and hands its events to sink until
// the end event (and all its output) has come. A timeout, or clientGone
// closing, interrupts the run; an interpreter that does not stop then, or
// dies, is reported. Interrupts are sent only while a run holds the
// context, so none reaches the interpreter between runs.
func (a *Agent) run(c *codeContext, code string, timeout time.Duration, clientGone <-chan struct{}, sink func(agentproto.RunEvent)) {
	c.runMu.Lock()
	defer c.runMu.Unlock()
	start := time.Now()
	c.mu.Lock()
	if c.state == agentproto.ContextDead {
		reason := c.reason
		c.mu.Unlock()
		sink(agentproto.RunEvent{Error: &agentproto.RunError{Name: "ContextDied", Value: fmt.Sprintf("context %s is dead (%s); restart it", c.id, reason)}})
		sink(agentproto.RunEvent{End: &agentproto.RunEnd{Status: agentproto.RunFailed}})
		return
	}
	c.state = agentproto.ContextRunning
	c.begun, c.pendingInterrupt, c.interrupted = false, false, false
	c.runs++
	events, marks, exited, req := c.events, c.marks, c.exited, c.req
	var sinkMu sync.Mutex
	c.sink = func(ev agentproto.RunEvent) { sinkMu.Lock(); defer sinkMu.Unlock(); sink(ev) }
	c.mu.Unlock()
	emit := func(ev agentproto.RunEvent) { sinkMu.Lock(); defer sinkMu.Unlock(); sink(ev) }
	// finish ends the run: the context is idle (or dead) before the client
	// sees the end, so that what it does next finds it so.
	finish := func(end *agentproto.RunEnd) {
		c.mu.Lock()
		c.sink = nil
		if c.state == agentproto.ContextRunning {
			c.state = agentproto.ContextIdle
		}
		c.mu.Unlock()
		emit(agentproto.RunEvent{End: end})
	}

	if _, err := req.Write(c.request(code)); err != nil {
		emit(agentproto.RunEvent{Error: &agentproto.RunError{Name: "ContextDied", Value: fmt.Sprintf("context %s: send the code: %v", c.id, err)}})
		finish(&agentproto.RunEnd{Status: agentproto.RunFailed})
		return
	}
	var deadline <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		deadline = t.C
	}
	var end *agentproto.RunEnd
	marked, timedOut := 0, false
	var grace <-chan time.Time
	for end == nil || marked < 2 {
		select {
		case ev, ok := <-events:
			if !ok {
				events = nil // the driver closed its event fd: it is exiting
				continue
			}
			if ev.End != nil {
				end = ev.End
				continue
			}
			if ev.Begin != nil {
				c.mu.Lock()
				c.begun = true
				pending := c.pendingInterrupt
				c.mu.Unlock()
				if pending {
					a.interruptContext(c)
				}
				continue
			}
			if ev.Ready == nil {
				emit(ev.RunEvent)
			}
		case <-marks:
			marked++
		case <-clientGone:
			// Nobody will read the rest: interrupt the run, as Ctrl-C would.
			clientGone = nil
			a.interruptContext(c)
		case <-deadline:
			timedOut, deadline = true, nil
			a.log.Info("agent: run timed out; interrupting", "context", c.id, "timeout", timeout)
			a.interruptContext(c)
			grace = time.After(interruptGrace)
		case <-grace:
			a.log.Warn("agent: run did not stop after an interrupt; killing its context", "context", c.id, "grace", interruptGrace)
			a.killContext(c)
			grace = nil
		case <-exited:
			exited = nil
			c.mu.Lock()
			reason := c.reason
			c.mu.Unlock()
			emit(agentproto.RunEvent{Error: &agentproto.RunError{Name: "ContextDied",
				Value: fmt.Sprintf("context %s died during the run (%s); restart it", c.id, reason)}})
			finish(&agentproto.RunEnd{Status: agentproto.RunFailed, DurationMS: time.Since(start).Milliseconds()})
			return
		}
	}
	end.DurationMS = time.Since(start).Milliseconds()
	switch {
	case timedOut:
		end.Status = agentproto.RunTimeout
	case c.wasInterrupted() && end.Status != agentproto.RunOK:
		end.Status = agentproto.RunInterrupted
	}
	finish(end)
}

// interruptContext sends SIGINT to the code running, if a run is on: to
// bash's process group (the shell runs a trap and lives), to the
// interpreter otherwise. Before the driver has begun the run, the
// interrupt waits for it.
func (a *Agent) interruptContext(c *codeContext) {
	c.mu.Lock()
	if c.state != agentproto.ContextRunning {
		c.mu.Unlock()
		return
	}
	c.interrupted = true
	pid, lang := c.pid, c.language
	if !c.begun {
		c.pendingInterrupt = true
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	if pid <= 0 {
		return
	}
	if lang == agentproto.LanguageBash {
		syscall.Kill(-pid, syscall.SIGINT)
		return
	}
	syscall.Kill(pid, syscall.SIGINT)
}

func (c *codeContext) wasInterrupted() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.interrupted
}

// killContext kills the interpreter's process group; the reaper marks it
// dead.
func (a *Agent) killContext(c *codeContext) {
	c.mu.Lock()
	pid := c.pid
	c.mu.Unlock()
	if pid > 0 {
		syscall.Kill(-pid, syscall.SIGKILL)
	}
}

// contextsSorted lists the contexts by id.
func (a *Agent) contextsSorted() []agentproto.Context {
	a.mu.Lock()
	cs := make([]*codeContext, 0, len(a.contexts))
	for _, c := range a.contexts {
		cs = append(cs, c)
	}
	a.mu.Unlock()
	out := make([]agentproto.Context, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.view())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
