package api

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sietch-vm/sietch/api/client"
	"github.com/sietch-vm/sietch/api/model"
	"github.com/sietch-vm/sietch/sandbox"
)

// BenchmarkSessions measures how an agent works in a Linux sandbox made
// from a template with a warm python context, over real HTTP with real
// vmm processes, one run:
//
//   - run-p50-ms, run-p99-ms: 20 runs of `1+1` in the warm code context,
//     each until its end event; spawn-s: the mean of 3 execs of
//     `python3 -c 'print(1+1)'` (a new interpreter each, the old way), and
//     their ratio run-speedup-x (spawn over run p50);
//   - echo-p50-ms, echo-p99-ms: 20 round trips of a line typed into `cat`
//     on a terminal exec stream until the terminal echoes it back;
//   - stdin-MiBps: 4 MiB streamed into sha256sum's stdin on an exec stream;
//   - put-MiBps, get-MiBps: a 2 MiB file uploaded and downloaded; tarput-MiBps,
//     target-MiBps: the same bytes as 32 files of 64 KiB through the
//     tar endpoints, and tar-files-per-s for the upload.
func BenchmarkSessions(b *testing.B) {
	img := linuxImage(b)
	e := newEnv(b, func(c *sandbox.Config) { c.Images = []sandbox.ImageSpec{img} })
	c, err := client.New("unix://"+e.sock, e.token)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	for i := 0; i < b.N; i++ {
		tp := e.buildTemplate(model.TemplateRequest{Name: "sessions", Image: "default", Contexts: []string{model.LanguagePython}, ReadyTimeoutS: 600})
		if tp.State != model.TemplateReady {
			b.Fatalf("template: %+v", tp)
		}
		sb := e.create(model.CreateRequest{Template: "sessions"})

		// Warm runs against new interpreters.
		var runs []time.Duration
		for range 20 {
			t0 := time.Now()
			var out strings.Builder
			end, err := c.Run(ctx, sb.ID, model.DefaultContext, model.RunRequest{Code: "1+1"}, func(ev model.RunEvent) error {
				if ev.Result != nil {
					out.WriteString(ev.Result["text/plain"])
				}
				return nil
			})
			runs = append(runs, time.Since(t0))
			if err != nil || end.Status != model.RunOK || out.String() != "2" {
				b.Fatalf("run 1+1: %+v, %v, result %q", end, err, out.String())
			}
		}
		slices.Sort(runs)
		var spawn time.Duration
		for range 3 {
			t0 := time.Now()
			var out bytes.Buffer
			exit, err := c.Exec(ctx, sb.ID, model.ExecRequest{Cmd: "python3", Args: []string{"-c", "print(1+1)"}}, &out, io.Discard)
			spawn += time.Since(t0)
			if err != nil || exit.Code != 0 || out.String() != "2\n" {
				b.Fatalf("exec python3: %+v, %v, %q", exit, err, out.String())
			}
		}
		spawnS := spawn.Seconds() / 3

		echo := echoRoundTrips(b, ctx, c, sb.ID, 20)

		// stdin streamed into a command, as `cat big.csv | sietch exec`.
		in := make([]byte, 4<<20)
		rand.Read(in)
		var sum bytes.Buffer
		t0 := time.Now()
		s, err := c.ExecStream(ctx, sb.ID, model.ExecRequest{Cmd: "sha256sum"}, &sum, io.Discard)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Write(in); err != nil {
			b.Fatal(err)
		}
		s.CloseStdin()
		if exit, err := s.Wait(); err != nil || exit.Code != 0 || !strings.HasPrefix(sum.String(), fmt.Sprintf("%x", sha256.Sum256(in))) {
			b.Fatalf("4 MiB into sha256sum: %+v, %v, %q", exit, err, sum.String())
		}
		stdin := time.Since(t0).Seconds()

		// Files: one file against a tree of the same bytes.
		const size = 2 << 20
		data := make([]byte, size)
		rand.Read(data)
		t0 = time.Now()
		if err := c.Upload(ctx, sb.ID, "/root/one.bin", 0o644, bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
		put := time.Since(t0).Seconds()
		t0 = time.Now()
		var back bytes.Buffer
		if _, err := c.Download(ctx, sb.ID, "/root/one.bin", &back); err != nil || !bytes.Equal(back.Bytes(), data) {
			b.Fatalf("download: %v (%d bytes back)", err, back.Len())
		}
		get := time.Since(t0).Seconds()
		var tb bytes.Buffer
		tw := tar.NewWriter(&tb)
		const files = 32
		for f := range files {
			part := data[f*size/files : (f+1)*size/files]
			tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("f%02d.bin", f), Mode: 0o644, Size: int64(len(part)), Typeflag: tar.TypeReg})
			tw.Write(part)
		}
		tw.Close()
		t0 = time.Now()
		if res, err := c.UploadTar(ctx, sb.ID, "/root/tree", bytes.NewReader(tb.Bytes())); err != nil || res.Files != files {
			b.Fatalf("tar upload: %+v, %v", res, err)
		}
		tarPut := time.Since(t0).Seconds()
		t0 = time.Now()
		var tback bytes.Buffer
		if err := c.DownloadTar(ctx, sb.ID, "/root/tree", &tback); err != nil {
			b.Fatal(err)
		}
		tarGet := time.Since(t0).Seconds()
		if n := tarBytes(b, tback.Bytes()); n != size {
			b.Fatalf("tar download: %d bytes of files; want %d", n, size)
		}

		e.call("DELETE", "/v1/sandboxes/"+sb.ID, nil, 204, nil)
		e.call("DELETE", "/v1/templates/sessions", nil, 204, nil)

		p50 := runs[len(runs)/2]
		b.ReportMetric(ms(p50), "run-p50-ms")
		b.ReportMetric(ms(runs[min(len(runs)-1, len(runs)*99/100)]), "run-p99-ms")
		b.ReportMetric(spawnS, "spawn-s")
		b.ReportMetric(spawnS/p50.Seconds(), "run-speedup-x")
		b.ReportMetric(ms(echo[len(echo)/2]), "echo-p50-ms")
		b.ReportMetric(ms(echo[min(len(echo)-1, len(echo)*99/100)]), "echo-p99-ms")
		mib := float64(size) / (1 << 20)
		b.ReportMetric(4/stdin, "stdin-MiBps")
		b.ReportMetric(mib/put, "put-MiBps")
		b.ReportMetric(mib/get, "get-MiBps")
		b.ReportMetric(mib/tarPut, "tarput-MiBps")
		b.ReportMetric(mib/tarGet, "target-MiBps")
		b.ReportMetric(files/tarPut, "tar-files-per-s")
	}
}

// echoRoundTrips types n lines into `cat` on a terminal exec stream and
// times each until the terminal has echoed it (the line discipline's echo
// and cat's copy both come back; the first is the round trip).
func echoRoundTrips(b *testing.B, ctx context.Context, c *client.Client, id string, n int) []time.Duration {
	out := &signalBuffer{ch: make(chan struct{}, 1)}
	s, err := c.ExecStream(ctx, id, model.ExecRequest{Cmd: "cat", TTY: &model.TTYSize{Rows: 24, Cols: 80}}, out, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var lat []time.Duration
	for i := range n {
		line := fmt.Sprintf("echo-%03d", i)
		t0 := time.Now()
		if _, err := s.Write([]byte(line + "\n")); err != nil {
			b.Fatal(err)
		}
		for !out.contains(line) {
			select {
			case <-out.ch:
			case <-time.After(time.Minute):
				b.Fatalf("the terminal did not echo %q within a minute: %q", line, out.String())
			}
		}
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	return lat
}

// signalBuffer is a buffer that says when it grew.
type signalBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
	ch chan struct{}
}

func (s *signalBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	s.b.Write(p)
	s.mu.Unlock()
	select {
	case s.ch <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (s *signalBuffer) contains(x string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Contains(s.b.String(), x)
}

func (s *signalBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// tarBytes sums the sizes of a tar stream's regular files.
func tarBytes(b *testing.B, data []byte) int {
	tr := tar.NewReader(bytes.NewReader(data))
	n := 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return n
		}
		if err != nil {
			b.Fatalf("tar download: %v", err)
		}
		if h.Typeflag == tar.TypeReg {
			n += int(h.Size)
		}
	}
}
