package imagebuild

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"golang.org/x/sys/unix"

	"github.com/sietch-vm/sietch/internal/imagetest"
	"github.com/sietch-vm/sietch/internal/tarx"
)

// fakeMachine stands in for a build sandbox: its root is the booted ext4
// image dumped with debugfs (the lower layer) and an upper directory that
// its steps write, read back with the agent's own layer writer. RUN
// understands three shell commands: "touch PATH" (a file holding the
// step's env and user), "rm PATH" (a whiteout) and "exit N".
type fakeMachine struct {
	lower, upper string
	log          *[]string
}

func (f *fakeMachine) Run(ctx context.Context, s RunSpec, out io.Writer) (int, error) {
	cmd := s.Argv[len(s.Argv)-1]
	*f.log = append(*f.log, fmt.Sprintf("run %q in %s as %q", cmd, s.Dir, s.User))
	fmt.Fprintf(out, "running %s\n", cmd)
	verb, arg, _ := strings.Cut(cmd, " ")
	p := filepath.Join(f.upper, arg)
	switch verb {
	case "touch":
		os.MkdirAll(filepath.Dir(p), 0o755)
		return 0, os.WriteFile(p, []byte(strings.Join(s.Env, ",")+" user="+s.User), 0o644)
	case "rm":
		os.MkdirAll(filepath.Dir(p), 0o755)
		return 0, unix.Mknod(p, unix.S_IFCHR, 0)
	case "exit":
		var n int
		fmt.Sscan(arg, &n)
		fmt.Fprintf(out, "something went wrong\n")
		return n, nil
	}
	return 127, nil
}

func (f *fakeMachine) Extract(ctx context.Context, r io.Reader) error {
	root, err := os.OpenRoot(f.upper)
	if err != nil {
		return err
	}
	defer root.Close()
	_, err = tarx.Extract(r, root, tarx.Limits{Owners: true})
	return err
}

func (f *fakeMachine) Mkdir(ctx context.Context, p string) error {
	return os.MkdirAll(filepath.Join(f.upper, p), 0o755)
}

func (f *fakeMachine) ReadFile(ctx context.Context, p string) ([]byte, error) {
	if b, err := os.ReadFile(filepath.Join(f.upper, p)); err == nil {
		return b, nil
	}
	return os.ReadFile(filepath.Join(f.lower, p))
}

func (f *fakeMachine) Layer(ctx context.Context, w io.Writer) error {
	root, err := os.OpenRoot(f.upper)
	if err != nil {
		return err
	}
	defer root.Close()
	_, err = tarx.WriteLayer(w, root, tarx.Layer{Dir: f.upper}, nil)
	return err
}

func (f *fakeMachine) Close() error { return nil }

// dump extracts an ext4 image into a new directory with debugfs.
func dump(t *testing.T, img string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("debugfs", "-R", "rdump / "+dir, img).CombinedOutput(); err != nil {
		t.Fatalf("debugfs rdump: %v\n%s", err, out)
	}
	return dir
}

// baseTarball is a `docker save` of a tiny image with a user app (1000).
func baseTarball(t *testing.T) []byte {
	img := imagetest.Image(t, map[string]string{
		"etc/passwd": "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
		"etc/group":  "root:x:0:\napp:x:1000:\n",
		"etc/motd":   "hello\n",
	}, nil, nil, []string{"PATH=/usr/bin:/bin", "BASE=1"})
	return imagetest.Save(t, img, "base:1")
}

const testDockerfile = `FROM ./base.tar AS build
RUN touch /out/artifact

FROM ./base.tar
ENV APP_MODE=test
WORKDIR /app
COPY --from=build /out/artifact /app/
COPY --chown=app:app src/ /app/src/
USER app
RUN touch /app/ran
USER root
RUN rm /etc/motd
CMD ["python3", "-m", "http.server"]
`

// A two-stage build: the base's files, a file from the first stage, the
// context without what .dockerignore leaves out, owners from --chown, a
// RUN's env and user, a deletion; then a rebuild that is all cache, and
// one after a context change that runs only the steps from the change on.
func TestBuild(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the fake machine makes whiteouts and owned files: needs root")
	}
	ctxDir := t.TempDir()
	for name, data := range map[string]string{
		"base.tar":       string(baseTarball(t)),
		"src/main.py":    "print('hi')\n",
		"src/secret.txt": "no\n",
		".dockerignore":  "src/secret.txt\n",
		"Dockerfile":     testDockerfile,
	} {
		os.MkdirAll(filepath.Join(ctxDir, filepath.Dir(name)), 0o755)
		if err := os.WriteFile(filepath.Join(ctxDir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	var runs []string
	boots := 0
	b := &Builder{Dir: t.TempDir(), Boot: func(ctx context.Context, disk string) (Machine, error) {
		mu.Lock()
		boots++
		mu.Unlock()
		return &fakeMachine{lower: dump(t, disk), upper: t.TempDir(), log: &runs}, nil
	}}
	build := func() (*Result, string, string) {
		t.Helper()
		out := filepath.Join(t.TempDir(), "img.ext4")
		var log bytes.Buffer
		res, err := b.Build(context.Background(), Request{Dockerfile: []byte(testDockerfile), Context: ctxDir, Output: out, Out: &log})
		if err != nil {
			t.Fatalf("build: %v\n%s", err, log.String())
		}
		return res, dump(t, out), log.String()
	}
	res, tree, log := build()
	read := func(p string) string {
		b, err := os.ReadFile(filepath.Join(tree, p))
		if err != nil {
			return "<" + err.Error() + ">"
		}
		return string(b)
	}
	if got := read("app/artifact"); !strings.Contains(got, "BASE=1") {
		t.Errorf("/app/artifact from the first stage: %q", got)
	}
	if got := read("app/ran"); !strings.Contains(got, "APP_MODE=test") || !strings.HasSuffix(got, "user=app") {
		t.Errorf("RUN as USER app with the ENV: wrote %q", got)
	}
	if got := read("app/src/main.py"); got != "print('hi')\n" {
		t.Errorf("COPY src/: main.py is %q", got)
	}
	if _, err := os.Lstat(filepath.Join(tree, "app/src/secret.txt")); err == nil {
		t.Errorf(".dockerignore'd secret.txt is in the image")
	}
	if _, err := os.Lstat(filepath.Join(tree, "etc/motd")); err == nil {
		t.Errorf("/etc/motd, removed by a RUN, is in the image")
	}
	if got := read("etc/passwd"); !strings.Contains(got, "app:x:1000") {
		t.Errorf("the base's /etc/passwd: %q", got)
	}
	c := res.Config
	if c.WorkingDir != "/app" || c.User != "root" || len(c.Cmd) != 3 || !strings.Contains(strings.Join(c.Env, " "), "APP_MODE=test") {
		t.Errorf("image config %+v", c)
	}
	if res.Cached != 0 || res.Steps != 10 || boots != 2 {
		t.Errorf("first build: %d of %d steps cached, %d boots; want 0 of 10, 2 boots\n%s", res.Cached, res.Steps, boots, log)
	}
	// debugfs rdump keeps owners when run as root.
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(tree, "app/src/main.py"), &st); err != nil || st.Uid != 1000 || st.Gid != 1000 {
		t.Errorf("COPY --chown=app:app: main.py belongs to %d:%d (%v); want 1000:1000", st.Uid, st.Gid, err)
	}

	boots, runs = 0, nil
	res, tree, log = build()
	if res.Cached != res.Steps || boots != 0 || len(runs) != 0 || !strings.Contains(log, "CACHED") {
		t.Errorf("rebuild with nothing changed: %d of %d cached, %d boots, runs %q\n%s", res.Cached, res.Steps, boots, runs, log)
	}
	if got := read("app/ran"); !strings.Contains(got, "APP_MODE=test") {
		t.Errorf("cached image lost /app/ran: %q", got)
	}

	if err := os.WriteFile(filepath.Join(ctxDir, "src/main.py"), []byte("print('changed')\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	boots, runs = 0, nil
	res, tree, log = build()
	// The first stage's step and the second's ENV, WORKDIR and COPY --from
	// are cached; COPY src/ and what follows run again.
	if res.Cached != 4 || boots != 1 || len(runs) != 2 {
		t.Errorf("rebuild after a context change: %d cached, %d boots, runs %q; want 4 cached, 1 boot, 2 runs\n%s", res.Cached, boots, runs, log)
	}
	if got := read("app/src/main.py"); got != "print('changed')\n" {
		t.Errorf("main.py after the change: %q", got)
	}
	if got := read("app/artifact"); !strings.Contains(got, "BASE=1") {
		t.Errorf("/app/artifact after a partial rebuild: %q", got)
	}

	// A change to the CMD alone boots nothing: the files are the cache's.
	boots, runs = 0, nil
	testDockerfileNow := strings.Replace(testDockerfile, `"http.server"`, `"http.server", "9000"`, 1)
	var log2 bytes.Buffer
	out := filepath.Join(t.TempDir(), "img.ext4")
	res, err := b.Build(context.Background(), Request{Dockerfile: []byte(testDockerfileNow), Context: ctxDir, Output: out, Out: &log2})
	if err != nil {
		t.Fatal(err)
	}
	if boots != 0 || res.Cached != res.Steps-1 || strings.Join(res.Config.Cmd, " ") != "python3 -m http.server 9000" {
		t.Errorf("rebuild after a CMD change: %d boots, %d of %d cached, CMD %q\n%s", boots, res.Cached, res.Steps, res.Config.Cmd, log2.String())
	}
	if got := readIn(t, dump(t, out), "app/ran"); !strings.Contains(got, "APP_MODE=test") {
		t.Errorf("image after a CMD change lost /app/ran: %q", got)
	}
}

func readIn(t *testing.T, tree, p string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(tree, p))
	if err != nil {
		return "<" + err.Error() + ">"
	}
	return string(b)
}

// A RUN that fails stops the build with its line and exit status, and its
// output reaches the log.
func TestBuildRunFails(t *testing.T) {
	var runs []string
	b := &Builder{Dir: t.TempDir(), Boot: func(ctx context.Context, disk string) (Machine, error) {
		return &fakeMachine{lower: t.TempDir(), upper: t.TempDir(), log: &runs}, nil
	}}
	var log bytes.Buffer
	_, err := b.Build(context.Background(), Request{Dockerfile: []byte("FROM scratch\nENV A=1\nRUN exit 3\nRUN touch /never\n"), Output: filepath.Join(t.TempDir(), "x.ext4"), Out: &log})
	if err == nil || !strings.Contains(err.Error(), "Dockerfile:3") || !strings.Contains(err.Error(), "exit status 3") {
		t.Fatalf("build with a failing RUN: %v", err)
	}
	if !strings.Contains(log.String(), "something went wrong") || len(runs) != 1 {
		t.Errorf("log %q, runs %q: want the step's output and no step after it", log.String(), runs)
	}
}

// FROM an OCI layout directory in the context: the layout is read through
// the context's confined root, so a symlink planted in it is left behind.
func TestBuildFromLayout(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the fake machine writes owned files: needs root")
	}
	ctxDir := t.TempDir()
	base := filepath.Join(ctxDir, "base")
	p, err := layout.Write(base, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	img := imagetest.Image(t, map[string]string{"etc/os-release": "ID=layout\n"}, nil, nil, []string{"PATH=/bin"})
	if err := p.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/shadow", filepath.Join(base, "evil")); err != nil {
		t.Fatal(err)
	}
	var runs []string
	b := &Builder{Dir: t.TempDir(), Boot: func(ctx context.Context, disk string) (Machine, error) {
		return &fakeMachine{lower: dump(t, disk), upper: t.TempDir(), log: &runs}, nil
	}}
	out := filepath.Join(t.TempDir(), "img.ext4")
	var log bytes.Buffer
	if _, err := b.Build(context.Background(), Request{Dockerfile: []byte("FROM ./base\nRUN touch /built\n"), Context: ctxDir, Output: out, Out: &log}); err != nil {
		t.Fatalf("build: %v\n%s", err, log.String())
	}
	tree := dump(t, out)
	if got, err := os.ReadFile(filepath.Join(tree, "etc/os-release")); err != nil || string(got) != "ID=layout\n" {
		t.Errorf("/etc/os-release from the layout: %q, %v", got, err)
	}
	if _, err := os.Stat(filepath.Join(tree, "built")); err != nil {
		t.Errorf("the RUN's /built is missing: %v", err)
	}
}
