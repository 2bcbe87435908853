package dockerfile

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// mustPlan parses and plans text with a context made of files (nil: none).
func mustPlan(t *testing.T, text string, files map[string]string, o Options) *Plan {
	t.Helper()
	p, err := planText(t, text, files, o)
	if err != nil {
		t.Fatalf("plan:\n%s\nerror: %v", text, err)
	}
	return p
}

func planText(t *testing.T, text string, files map[string]string, o Options) (*Plan, error) {
	t.Helper()
	df, err := Parse([]byte(text))
	if err != nil {
		return nil, err
	}
	var ctx *Context
	if files != nil {
		ctx = openTree(t, files, "", Limits{})
	}
	return df.Plan(ctx, o)
}

func TestInstructions(t *testing.T) {
	p := mustPlan(t, `FROM scratch
RUN echo hi  &&  true
RUN ["/bin/echo", "a b"]
SHELL ["/bin/bash", "-eu", "-c"]
RUN echo $HOME
ENV A=1 B="two words"
ENV C $A-${B}
ARG V=7
WORKDIR /srv
WORKDIR app
USER nobody:nogroup
EXPOSE 80 443/udp 8000-8002
LABEL org.example.x="y z" v=$V
MAINTAINER Jo <jo@example.org>
STOPSIGNAL SIGINT
CMD python3 -m http.server
ENTRYPOINT ["/entry"]
`, nil, Options{})
	st := p.Stages[0]
	want := []struct {
		kind Kind
		args []string
	}{
		{Run, []string{"echo hi  &&  true"}},
		{Run, []string{"/bin/echo", "a b"}},
		{Shell, []string{"/bin/bash", "-eu", "-c"}},
		{Run, []string{"echo $HOME"}},
		{Env, []string{"A=1", "B=two words"}},
		{Env, []string{"C=1-two words"}},
		{Arg, []string{"V=7"}},
		{Workdir, []string{"/srv"}},
		{Workdir, []string{"/srv/app"}},
		{User, []string{"nobody:nogroup"}},
		{Expose, []string{"80/tcp", "443/udp", "8000/tcp", "8001/tcp", "8002/tcp"}},
		{Label, []string{"org.example.x=y z", "v=7"}},
		{Label, []string{"org.opencontainers.image.authors=Jo <jo@example.org>"}},
		{StopSignal, []string{"SIGINT"}},
		{Cmd, []string{"python3 -m http.server"}},
		{Entrypoint, []string{"/entry"}},
	}
	if len(st.Steps) != len(want) {
		t.Fatalf("%d steps, want %d: %+v", len(st.Steps), len(want), st.Steps)
	}
	for i, w := range want {
		s := st.Steps[i]
		if s.Kind != w.kind || !slices.Equal(s.Args, w.args) {
			t.Errorf("step %d: %s %q, want %s %q", i, s.Kind, s.Args, w.kind, w.args)
		}
		if s.Line != i+2 {
			t.Errorf("step %d (%s): line %d, want %d", i, s.Kind, s.Line, i+2)
		}
		if s.Key == "" || i > 0 && s.Key == st.Steps[i-1].Key {
			t.Errorf("step %d: key %q not set or same as the previous one", i, s.Key)
		}
	}
	if got := st.Steps[0].Command; !slices.Equal(got, []string{"/bin/sh", "-c", "echo hi  &&  true"}) {
		t.Errorf("shell-form RUN: %q", got)
	}
	if got := st.Steps[1].Command; !slices.Equal(got, []string{"/bin/echo", "a b"}) {
		t.Errorf("exec-form RUN: %q", got)
	}
	if got := st.Steps[3].Command; !slices.Equal(got, []string{"/bin/bash", "-eu", "-c", "echo $HOME"}) {
		t.Errorf("RUN after SHELL: %q", got)
	}
	// State in effect: the ENTRYPOINT step sees the earlier WORKDIR and USER,
	// and RUN sees the ARG (not the image config).
	last := st.Steps[len(st.Steps)-1]
	if last.Workdir != "/srv/app" || last.User != "nobody:nogroup" {
		t.Errorf("state at ENTRYPOINT: workdir %q user %q", last.Workdir, last.User)
	}
	if v, _ := vars(last.Env).get("V"); v != "7" {
		t.Errorf("ARG V not in the step env: %q", last.Env)
	}
	c := p.Config
	wantEnv := []string{"PATH=" + DefaultPath, "A=1", "B=two words", "C=1-two words"}
	if !slices.Equal(c.Env, wantEnv) {
		t.Errorf("Env %q, want %q", c.Env, wantEnv)
	}
	if c.WorkingDir != "/srv/app" || c.User != "nobody:nogroup" || c.StopSignal != "SIGINT" {
		t.Errorf("config %+v", c)
	}
	if !slices.Equal(c.Cmd, []string{"/bin/bash", "-eu", "-c", "python3 -m http.server"}) || !slices.Equal(c.Entrypoint, []string{"/entry"}) {
		t.Errorf("Cmd %q Entrypoint %q (CMD set in this stage survives ENTRYPOINT)", c.Cmd, c.Entrypoint)
	}
	if len(c.ExposedPorts) != 5 {
		t.Errorf("ExposedPorts %v", c.ExposedPorts)
	}
	if c.Labels["org.example.x"] != "y z" || c.Labels["v"] != "7" || c.Labels["org.opencontainers.image.authors"] != "Jo <jo@example.org>" {
		t.Errorf("Labels %v", c.Labels)
	}
}

func TestIgnoredInstructions(t *testing.T) {
	p := mustPlan(t, "FROM scratch\nVOLUME /data\nHEALTHCHECK --interval=5s CMD true\nRUN true\n", nil, Options{})
	if len(p.Stages[0].Steps) != 1 {
		t.Errorf("steps %+v: VOLUME and HEALTHCHECK should leave none", p.Stages[0].Steps)
	}
	ws := strings.Join(p.Warnings, "\n")
	for _, w := range []string{"Dockerfile:2: VOLUME is ignored", "Dockerfile:3: HEALTHCHECK is ignored"} {
		if !strings.Contains(ws, w) {
			t.Errorf("warnings %q lack %q", ws, w)
		}
	}
}

// manyEnv is one ENV that sets 1100 variables.
func manyEnv() string {
	var b strings.Builder
	b.WriteString("ENV")
	for i := range 1100 {
		fmt.Fprintf(&b, " V%d=x", i)
	}
	return b.String() + "\n"
}

func TestRefusals(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		line       int
		want       string
		unsup      bool
	}{
		{"empty", "# nothing\n", 1, "no instructions", false},
		{"only ARG", "\nARG A\n", 2, "no FROM", false},
		{"before FROM", "RUN true\nFROM scratch\n", 1, "before the first FROM", false},
		{"unknown", "FROM scratch\nFETCH x\n", 2, "FETCH is not a Dockerfile instruction", false},
		{"onbuild", "FROM scratch\n\nONBUILD RUN true\n", 3, "ONBUILD is not supported", true},
		{"run mount", "FROM scratch\nRUN --mount=type=cache,target=/c true\n", 2, "RUN --mount is not supported", true},
		{"run network", "FROM scratch\nRUN --network=host true\n", 2, "RUN --network is not supported", true},
		{"run security", "FROM scratch\nRUN --security=insecure true\n", 2, "RUN --security is not supported", true},
		{"run unknown flag", "FROM scratch\nRUN --frob true\n", 2, "RUN --frob is not supported", true},
		{"add url", "FROM scratch\nADD https://example.org/x.tgz /x\n", 2, "ADD of a URL or git source", true},
		{"add git", "FROM scratch\nADD git@github.com:a/b.git /b\n", 2, "ADD of a URL or git source", true},
		{"copy url", "FROM scratch\nCOPY http://example.org/x /x\n", 2, "COPY takes files from the context", false},
		{"add checksum", "FROM scratch\nADD --checksum=sha256:00 a /a\n", 2, "ADD --checksum is not supported", true},
		{"copy parents", "FROM scratch\nCOPY --parents a /a/\n", 2, "COPY --parents is not supported", true},
		{"add from", "FROM scratch\nADD --from=x a /a\n", 2, "ADD --from is not supported", true},
		{"heredoc", "FROM scratch\nRUN <<EOF\necho hi\nEOF\n", 2, "heredoc is not supported", true},
		{"platform", "FROM --platform=linux/arm64 alpine\n", 1, "FROM --platform=linux/arm64 is not supported", true},
		{"from args", "FROM a b\n", 1, "FROM needs an image", false},
		{"bad stage name", "FROM alpine AS 1x\n", 1, "stage name", false},
		{"dup stage", "FROM alpine AS a\nFROM alpine AS a\n", 2, "already used", false},
		{"copy one arg", "FROM scratch\nCOPY a\n", 2, "needs a source and a destination", false},
		{"shell not json", "FROM scratch\nSHELL /bin/bash -c\n", 2, "SHELL needs a JSON array", false},
		{"workdir empty", "FROM scratch\nWORKDIR $NOPE\n", 2, "expands to nothing", false},
		{"expose bad", "FROM scratch\nEXPOSE 99999\n", 2, "EXPOSE 99999", false},
		{"expose proto", "FROM scratch\nEXPOSE 80/icmp\n", 2, "protocol", false},
		{"chmod symbolic", "FROM scratch\nCOPY --chmod=u+x a /a\n", 2, "octal", false},
		{"chown empty", "FROM scratch\nCOPY --chown= a /a\n", 2, "--chown", false},
		{"flag twice", "FROM scratch\nCOPY --chown=a --chown=b a /a\n", 2, "given twice", false},
		{"several sources", "FROM scratch\nCOPY a b /dst\n", 2, "ending in /", false},
		{"forward from", "FROM scratch AS a\nCOPY --from=b /x /x\nFROM scratch AS b\n", 2, "comes later", false},
		{"self from", "FROM scratch AS a\nCOPY --from=a /x /x\n", 2, "cannot copy from itself", false},
		{"index from", "FROM scratch\nCOPY --from=0 /x /x\n", 2, "is this one or a later one", false},
		{"forward FROM", "FROM b AS a\nFROM scratch AS b\n", 1, "comes later", false},
		{"unset FROM", "ARG IMG\nFROM $IMG\n", 2, "names no image", false},
		{"bad ref", "FROM Bad:Ref:x\n", 1, "not an image reference", false},
		{"expansion", "FROM scratch\nENV A=\"${B:?must be set}\"\n", 2, "must be set", false},
		{"stop signal", "FROM scratch\nSTOPSIGNAL 'kill me'\n", 2, "STOPSIGNAL", false},
		{"nul", "FROM scratch\nRUN a\x00b\n", 2, "NUL", false},
		{"long line", "FROM scratch\nRUN " + strings.Repeat("x", maxLineBytes) + "\n", 2, "bytes long", false},
		{"env doubling", "FROM scratch\nENV A=0123456789abcdef\n" + strings.Repeat("ENV A=$A$A$A$A\n", 8), 9, "could expand to more than", false},
		{"port range", "FROM scratch\nEXPOSE 1-65535\n", 2, "more than 4096 ports", false},
		{"too many", "FROM scratch\n" + strings.Repeat("RUN true\n", maxInstructions), maxInstructions + 1, "more than the 4096", false},
		{"many env vars", "FROM scratch\n" + manyEnv(), 2, "more than 1024 ENV", false},
		{"no context", "FROM scratch\nCOPY a /a\n", 2, "there is none", false},
		{"local base without context", "FROM ./base.tar\n", 1, "there is none", false},
		{"local base outside", "FROM ../base.tar\n", 1, "inside the build context", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := planText(t, tc.text, nil, Options{})
			if err == nil {
				t.Fatalf("no error")
			}
			var le *LineError
			if !errors.As(err, &le) || le.Line != tc.line {
				t.Fatalf("error %q: want it at line %d", err, tc.line)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q lacks %q", err, tc.want)
			}
			if errors.Is(err, ErrUnsupported) != tc.unsup {
				t.Errorf("error %q: errors.Is(ErrUnsupported) = %v", err, !tc.unsup)
			}
		})
	}
}
