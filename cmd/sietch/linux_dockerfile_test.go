package main

import (
	"encoding/json"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/sietch-vm/sietch/internal/imagetest"
)

// busyboxApplets are the commands the test Dockerfiles use.
var busyboxApplets = []string{"sh", "mkdir", "id", "cat", "ls", "rm", "echo", "pwd", "stat", "chmod", "sleep", "env"}

// e2eDockerfile is two stages: a file made in the first, copied into the
// second with context files (minus what .dockerignore leaves out), an
// ARG overridden on the command line, ENV, WORKDIR, USER and a RUN that
// sets a mode and deletes a file of the base.
const e2eDockerfile = `FROM {{BASE}} AS build
RUN mkdir -p /out && echo built > /out/artifact

FROM {{BASE}}
ARG GREETING=hi
ENV APP_MODE=test GREETING=$GREETING
WORKDIR /app
COPY --from=build /out/artifact /app/
COPY --chown=app:app src/ /app/src/
RUN echo "$APP_MODE $(id -u) $(pwd)" > /app/ran && chmod 604 /app/ran && rm /etc/motd
USER app
EXPOSE 8000
CMD ["sleep", "600"]
`

// pushBase builds the base image (busybox, an app user, /etc/motd) and
// pushes it to a registry served by the test process; it returns the
// reference.
func (e *e2eCLI) pushBase() string {
	t := e.t
	img := imagetest.Busybox(t, busyboxApplets, map[string]string{
		"etc/passwd": "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
		"etc/group":  "root:x:0:\napp:x:1000:\n",
		"etc/motd":   "from the base\n",
	})
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	ref := strings.TrimPrefix(srv.URL, "http://") + "/base:1"
	if err := crane.Push(img, ref); err != nil {
		t.Fatal(err)
	}
	return ref
}

// dockerfile builds an image from a two-stage Dockerfile through sietchd,
// with its base from a registry, then creates a sandbox from it and checks
// what the Dockerfile made, rebuilds it from the cache, and checks that a
// failing RUN and an unsupported instruction are refused with their line.
func (e *e2eCLI) dockerfile() {
	t := e.t
	base := e.pushBase()
	ctxDir := filepath.Join(e.dir, "dockerctx")
	for name, data := range map[string]string{
		"Dockerfile":    strings.ReplaceAll(e2eDockerfile, "{{BASE}}", base),
		"src/main.txt":  "from the context\n",
		"src/secret":    "never in an image\n",
		".dockerignore": "src/secret\n",
		"Failing":       "FROM " + base + "\nRUN echo failing-output && exit 7\n",
		"Unsupported":   "FROM " + base + "\nRUN --mount=type=cache,target=/c true\n",
	} {
		os.MkdirAll(filepath.Join(ctxDir, filepath.Dir(name)), 0o755)
		if err := os.WriteFile(filepath.Join(ctxDir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Now()
	_, log, code := e.sietch(nil, "image", "build", "-f", filepath.Join(ctxDir, "Dockerfile"), "--build-arg", "GREETING=hello", "-o", "e2eimg")
	t.Logf("Dockerfile build took %v", time.Since(t0).Round(time.Millisecond))
	if code != 0 {
		t.Fatalf("sietch image build -f: exit %d\n%s", code, log)
	}
	if !strings.Contains(log, "Dockerfile:2 RUN mkdir") || !strings.Contains(log, "10 steps, 0 from the cache") {
		t.Errorf("build log does not show its steps:\n%s", log)
	}
	var listed struct {
		Images []struct {
			Name   string `json:"name"`
			Source string `json:"source"`
			Config struct {
				Workdir      string   `json:"workdir"`
				User         string   `json:"user"`
				Cmd          []string `json:"cmd"`
				ExposedPorts []string `json:"exposed_ports"`
			} `json:"config"`
		} `json:"images"`
	}
	if err := json.Unmarshal([]byte(e.must("images", "--json")), &listed); err != nil {
		t.Fatal(err)
	}
	images := listed.Images
	found := false
	for _, im := range images {
		if im.Name == "e2eimg" {
			found = true
			c := im.Config
			if im.Source != "dockerfile" || c.Workdir != "/app" || c.User != "app" || strings.Join(c.Cmd, " ") != "sleep 600" || strings.Join(c.ExposedPorts, ",") != "8000/tcp" {
				t.Errorf("sietch images: e2eimg is %+v", im)
			}
		}
	}
	if !found {
		t.Errorf("sietch images does not list e2eimg: %+v", images)
	}

	t0 = time.Now()
	id := e.must("create", "--image", "e2eimg")
	t.Logf("%s: created from the built image in %v", id, time.Since(t0).Round(time.Millisecond))
	out, errOut, code := e.sietch(nil, "exec", id, "--", "sh", "-c",
		`id -u; pwd; echo $APP_MODE $GREETING; cat /app/artifact /app/src/main.txt /app/ran; ls /app/src; stat -c '%u:%g' /app/src/main.txt; stat -c %a /app/ran; cat /etc/motd 2>/dev/null || echo no motd`)
	want := "1000\n/app\ntest hello\nbuilt\nfrom the context\ntest 0 /app\nmain.txt\n1000:1000\n604\nno motd\n"
	if code != 0 || out != want {
		t.Errorf("exec in a sandbox from the built image: exit %d, stderr %q\n got %q\nwant %q", code, errOut, out, want)
	}
	e.must("rm", id)

	// Nothing changed: every step from the cache, no build sandbox.
	t0 = time.Now()
	_, log, code = e.sietch(nil, "image", "build", "-f", filepath.Join(ctxDir, "Dockerfile"), "--build-arg", "GREETING=hello", "-o", "e2eimg")
	t.Logf("cached rebuild took %v", time.Since(t0).Round(time.Millisecond))
	if code != 0 || !strings.Contains(log, "10 steps, 10 from the cache") || strings.Contains(log, "booting") {
		t.Errorf("rebuild with nothing changed: exit %d\n%s", code, log)
	}

	_, log, code = e.sietch(nil, "image", "build", "-f", filepath.Join(ctxDir, "Failing"), "-o", "failing")
	if code == 0 || !strings.Contains(log, "failing-output") || !strings.Contains(log, "Dockerfile:2") || !strings.Contains(log, "exit status 7") {
		t.Errorf("a failing RUN: exit %d; want a failure with its output, line and status:\n%s", code, log)
	}
	_, log, code = e.sietch(nil, "image", "build", "-f", filepath.Join(ctxDir, "Unsupported"), "-o", "unsupported")
	if code != exitUsage || !strings.Contains(log, "Dockerfile:2") || !strings.Contains(log, "--mount") {
		t.Errorf("RUN --mount: exit %d; want it refused with its line:\n%s", code, log)
	}
	if ls := e.must("ls"); strings.Contains(ls, "sietch.build") || strings.Contains(ls, "build:") {
		t.Errorf("build sandboxes left behind:\n%s", ls)
	}
}
