package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// progress draws one status line on a terminal, redrawn a few times a
// second: a bar when the total is known, bytes and elapsed time otherwise.
// A nil *progress (not a terminal) does nothing.
type progress struct {
	w     io.Writer
	label string
	total int64 // -1: unknown
	n     atomic.Int64
	start time.Time
	stop  chan struct{}
	wg    sync.WaitGroup
	width int
	nowFn func() time.Time
}

// progress starts a status line on stderr if stderr is a terminal.
func (c *cli) progress(label string, total int64) *progress {
	f, ok := c.stderr.(*os.File)
	if !ok || !isTerminal(f) {
		return nil
	}
	p := newProgress(f, label, total, time.Now)
	p.wg.Add(1)
	go p.loop()
	return p
}

func newProgress(w io.Writer, label string, total int64, now func() time.Time) *progress {
	return &progress{w: w, label: label, total: total, start: now(), stop: make(chan struct{}), width: 30, nowFn: now}
}

func (p *progress) loop() {
	defer p.wg.Done()
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			fmt.Fprint(p.w, "\r"+p.line()+"\x1b[K")
		}
	}
}

// add counts n more bytes done.
func (p *progress) add(n int) {
	if p != nil {
		p.n.Add(int64(n))
	}
}

// done draws the final line and ends it; on failure the line is cleared so
// the error message stands alone.
func (p *progress) done(ok bool) {
	if p == nil {
		return
	}
	close(p.stop)
	p.wg.Wait()
	if ok {
		fmt.Fprint(p.w, "\r"+p.line()+"\x1b[K\n")
	} else {
		fmt.Fprint(p.w, "\r\x1b[K")
	}
}

// line renders the status: label, bar, percent, bytes, rate, elapsed.
func (p *progress) line() string {
	el := p.nowFn().Sub(p.start)
	n := p.n.Load()
	var b strings.Builder
	b.WriteString(p.label)
	if p.total > 0 {
		frac := float64(n) / float64(p.total)
		frac = min(max(frac, 0), 1)
		fill := int(frac * float64(p.width))
		fmt.Fprintf(&b, " [%s%s] %3d%% %s/%s", strings.Repeat("=", fill), strings.Repeat(" ", p.width-fill),
			int(frac*100), humanBytes(n), humanBytes(p.total))
	} else if n > 0 {
		fmt.Fprintf(&b, " %s", humanBytes(n))
	}
	if n > 0 && el >= time.Second {
		fmt.Fprintf(&b, " %s/s", humanBytes(int64(float64(n)/el.Seconds())))
	}
	fmt.Fprintf(&b, " %.1fs", el.Seconds())
	return b.String()
}

// reader counts bytes read through r.
func (p *progress) reader(r io.Reader) io.Reader {
	if p == nil {
		return r
	}
	return readerFunc(func(b []byte) (int, error) {
		n, err := r.Read(b)
		p.add(n)
		return n, err
	})
}

// writer counts bytes written through w.
func (p *progress) writer(w io.Writer) io.Writer {
	if p == nil {
		return w
	}
	return writerFunc(func(b []byte) (int, error) {
		n, err := w.Write(b)
		p.add(n)
		return n, err
	})
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(b []byte) (int, error) { return f(b) }

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }
