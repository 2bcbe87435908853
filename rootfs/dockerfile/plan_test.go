package dockerfile

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestArgEnvExpansion(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		args       map[string]string
		want       string // the last step's Args, joined with "|"
	}{
		{"plain", "ENV A=x\nENV B=\"$A ${A}\"", nil, "B=x x"},
		{"default", "ENV B=${UNSET:-dflt}", nil, "B=dflt"},
		{"default set", "ENV A=x\nENV B=${A:-dflt}", nil, "B=x"},
		{"alt", "ENV A=x\nENV B=\"${A:+alt} ${UNSET:+alt}.\"", nil, "B=alt ."},
		{"escaped", `ENV B=\$A C='$A' D="$HOME"`, nil, "B=$A|C=$A|D="},
		{"same instruction", "ENV A=1\nENV A=2 B=$A", nil, "A=2|B=1"},
		{"arg default", "ARG V=1\nENV B=$V", nil, "B=1"},
		{"arg overridden", "ARG V=1\nENV B=$V", map[string]string{"V": "9"}, "B=9"},
		{"env beats arg", "ARG V=1\nENV V=env\nENV B=$V", map[string]string{"V": "9"}, "B=env"},
		{"arg from arg", "ARG A=x\nARG B=${A}y\nENV C=$B", nil, "C=xy"},
		{"arg without value", "ARG NOPE\nENV B=[$NOPE]", nil, "B=[]"},
		{"arg without value, build arg", "ARG V\nENV B=$V", map[string]string{"V": "given"}, "B=given"},
		{"global needs redeclaring", "ENV B=[$G]", nil, "B=[]"},
		{"global redeclared", "ARG G\nENV B=$G", nil, "B=global"},
		{"global redeclared, overridden", "ARG G\nENV B=$G", map[string]string{"G": "cli"}, "B=cli"},
		{"automatic platform arg", "ARG TARGETARCH\nENV B=$TARGETARCH", nil, "B=amd64"},
		{"workdir", "ENV D=/srv\nWORKDIR $D/app", nil, "/srv/app"},
		{"user", "ARG U=app\nUSER ${U}:${U}", nil, "app:app"},
		{"expose", "ARG P=8080\nEXPOSE $P/udp", nil, "8080/udp"},
		{"label", "ARG V=3\nLABEL \"ver\"=\"v$V\"", nil, "ver=v3"},
		{"run is not expanded", "ENV A=x\nRUN echo $A", nil, "echo $A"},
		{"cmd is not expanded", "ENV A=x\nCMD [\"echo\", \"$A\"]", nil, "echo|$A"},
		{"copy --from", "ARG S=0\nCOPY --from=$S /x /y", nil, "/x|/y"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := "ARG G=global\nFROM scratch AS zero\nFROM scratch\n" + tc.text + "\n"
			p := mustPlan(t, text, nil, Options{BuildArgs: tc.args})
			steps := p.Stages[len(p.Stages)-1].Steps
			if got := strings.Join(steps[len(steps)-1].Args, "|"); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestGlobalArgsInFrom(t *testing.T) {
	text := "ARG BASE=alpine\nARG TAG=3.20\nFROM --platform=$BUILDPLATFORM ${BASE}:${TAG}\nRUN true\n"
	p := mustPlan(t, text, nil, Options{BuildArgs: map[string]string{"TAG": "3.21", "UNUSED": "x"}})
	if b := p.Stages[0].Base; b.Kind != BaseImage || b.Ref != "alpine:3.21" {
		t.Errorf("base %+v", b)
	}
	if !slices.ContainsFunc(p.Warnings, func(w string) bool { return strings.Contains(w, "build arg UNUSED was not used") }) {
		t.Errorf("warnings %q: want the unused build arg named", p.Warnings)
	}
	if slices.ContainsFunc(p.Warnings, func(w string) bool { return strings.Contains(w, "TAG") }) {
		t.Errorf("warnings %q: TAG was used", p.Warnings)
	}
}

const multiStage = `ARG GO=1.26
FROM golang:${GO} AS build
WORKDIR /src
COPY main.go .
RUN go build -o /out/app .

FROM alpine AS tools
RUN apk add curl

FROM build AS test
RUN go test ./...

FROM scratch AS final
COPY --from=build /out/app /app
COPY --from=ghcr.io/example/uv:0.5 /uv /bin/
COPY --from=1 /usr/bin/curl /bin/curl
ENTRYPOINT ["/app"]

FROM final AS debug
COPY --from=test /src /src
`

func TestTarget(t *testing.T) {
	files := map[string]string{"main.go": "package main"}
	names := func(p *Plan) []string {
		var out []string
		for _, s := range p.Stages {
			out = append(out, fmt.Sprintf("%s@%d", s.Name, s.Index))
		}
		return out
	}
	for _, tc := range []struct {
		target string
		want   []string
	}{
		{"build", []string{"build@0"}},
		{"tools", []string{"tools@1"}},
		{"test", []string{"build@0", "test@2"}},
		{"FINAL", []string{"build@0", "tools@1", "ghcr.io/example/uv:0.5@-1", "final@3"}},
		{"", []string{"build@0", "tools@1", "test@2", "ghcr.io/example/uv:0.5@-1", "final@3", "debug@4"}},
	} {
		t.Run(tc.target, func(t *testing.T) {
			p := mustPlan(t, multiStage, files, Options{Target: tc.target})
			if got := names(p); !slices.Equal(got, tc.want) {
				t.Errorf("stages %q, want %q", got, tc.want)
			}
		})
	}
	p := mustPlan(t, multiStage, files, Options{Target: "final"})
	final := p.Stages[3]
	for i, from := range []int{0, 2, 1} {
		cp := final.Steps[i].Copy
		if cp.FromStage != from || len(cp.Files) != 0 {
			t.Errorf("final step %d copies from stage %d (files %v), want %d", i, cp.FromStage, cp.Files, from)
		}
	}
	if b := p.Stages[0].Base; b.Kind != BaseImage || b.Ref != "golang:1.26" {
		t.Errorf("build's base %+v", b)
	}
	if !slices.Equal(p.Config.Entrypoint, []string{"/app"}) {
		t.Errorf("config %+v: want final's", p.Config)
	}
	// debug starts from final: its base is that stage and it inherits
	// final's config.
	p = mustPlan(t, multiStage, files, Options{})
	debug := p.Stages[len(p.Stages)-1]
	if debug.Base.Kind != BaseStage || p.Stages[debug.Base.Stage].Name != "final" || !slices.Equal(debug.Config.Entrypoint, []string{"/app"}) {
		t.Errorf("debug: base %+v config %+v", debug.Base, debug.Config)
	}

	// A target needs no context files of stages it does not build.
	if _, err := planText(t, multiStage, map[string]string{}, Options{Target: "tools"}); err != nil {
		t.Errorf("target tools read build's COPY: %v", err)
	}
	_, err := planText(t, multiStage, files, Options{Target: "nope"})
	if err == nil || !strings.Contains(err.Error(), "build, tools, test, final, debug") {
		t.Errorf("unknown target: %v", err)
	}
}

func TestResolve(t *testing.T) {
	var asked []string
	o := Options{Resolve: func(b Base) (Resolved, error) {
		asked = append(asked, string(b.Kind)+":"+b.Ref+b.Path)
		switch b.Ref {
		case "python:3.12":
			return Resolved{Digest: "sha256:py", Config: ocispec.ImageConfig{
				Env: []string{"PATH=/usr/local/bin:/usr/bin", "LANG=C.UTF-8"}, Cmd: []string{"python3"}, WorkingDir: "/base",
			}}, nil
		case "broken":
			return Resolved{}, errors.New("registry said 404")
		}
		return Resolved{Digest: "sha256:" + b.Path}, nil
	}}
	p := mustPlan(t, "FROM python:3.12\nENV PATH=/venv/bin:$PATH\nENTRYPOINT [\"/e\"]\n", nil, o)
	st := p.Stages[0]
	if st.Base.Digest != "sha256:py" {
		t.Errorf("base %+v", st.Base)
	}
	if want := []string{"PATH=/venv/bin:/usr/local/bin:/usr/bin", "LANG=C.UTF-8"}; !slices.Equal(p.Config.Env, want) {
		t.Errorf("Env %q, want %q", p.Config.Env, want)
	}
	if p.Config.Cmd != nil || p.Config.WorkingDir != "/base" {
		t.Errorf("config %+v: ENTRYPOINT drops the base's CMD, WORKDIR stays", p.Config)
	}
	if _, err := planText(t, "FROM alpine\nFROM broken\n", nil, o); err == nil || !strings.Contains(err.Error(), "Dockerfile:2: resolve base broken: registry said 404") {
		t.Errorf("resolve error: %v", err)
	}
	asked = nil
	p = mustPlan(t, "FROM ./images/base.tar\n", map[string]string{"images/base.tar": "x"}, o)
	if b := p.Stages[0].Base; b.Kind != BaseLocal || b.Path != "images/base.tar" || b.Digest != "sha256:images/base.tar" {
		t.Errorf("local base %+v", b)
	}
	if _, err := planText(t, "FROM ./missing.tar\n", map[string]string{}, o); err == nil {
		t.Errorf("a missing local base was accepted")
	}
	// A --from the base's ENV redirects to a stage the probe did not plan.
	env := Options{Resolve: func(Base) (Resolved, error) {
		return Resolved{Config: ocispec.ImageConfig{Env: []string{"S=other"}}}, nil
	}}
	_, err := planText(t, "FROM alpine AS first\nFROM alpine AS other\nFROM alpine\nARG S=first\nCOPY --from=$S /x /y\n", nil, env)
	if le := (*LineError)(nil); !errors.As(err, &le) || le.Line != 5 || !strings.Contains(err.Error(), "through a variable the base image sets") {
		t.Errorf("--from through the base's ENV: %v", err)
	}
	// The probe that finds which stages a target needs asks nothing.
	asked = nil
	mustPlan(t, "FROM alpine AS a\nFROM python:3.12 AS b\n", nil, Options{Target: "b", Resolve: o.Resolve})
	if !slices.Equal(asked, []string{"image:python:3.12", "image:python:3.12"}) {
		t.Errorf("resolved %q: want only the target's base", asked)
	}
}

// keys are the cache keys of every step of the last stage.
func keys(t *testing.T, c *Context, text string, o Options) []string {
	t.Helper()
	p, err := planCtx(t, c, text, o)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range p.Stages[len(p.Stages)-1].Steps {
		out = append(out, s.Key)
	}
	return out
}

func TestCacheKeys(t *testing.T) {
	const text = `FROM alpine
RUN apk add python3
COPY requirements.txt /app/
RUN pip install -r /app/requirements.txt
COPY src /app/src
RUN python3 -m compileall /app
`
	files := map[string]string{
		".dockerignore":    "src/*.pyc\n",
		"requirements.txt": "flask\n",
		"src/main.py":      "print(1)\n",
		"src/main.pyc":     "bytecode",
		"notes.txt":        "not copied",
	}
	c := openTree(t, files, "", Limits{})
	base := keys(t, c, text, Options{})
	if len(slices.Compact(slices.Clone(base))) != len(base) {
		t.Fatalf("keys repeat: %q", base)
	}
	again := func(edit map[string]string, o Options, txt string) []string {
		t.Helper()
		c := openTree(t, files, "", Limits{})
		writeTree(t, c.Dir(), edit)
		return keys(t, c, txt, o)
	}
	// firstChange is the first step whose key differs; -1: none.
	firstChange := func(ks []string) int {
		for i := range ks {
			if ks[i] != base[i] {
				for j := i; j < len(ks); j++ {
					if ks[j] == base[j] {
						t.Errorf("step %d changed but step %d did not: keys chain", i, j)
					}
				}
				return i
			}
		}
		return -1
	}
	for _, tc := range []struct {
		name string
		edit map[string]string
		o    Options
		text string
		want int
	}{
		{"nothing", nil, Options{}, text, -1},
		{"the same again", map[string]string{"src/main.py": "print(1)\n"}, Options{}, text, -1},
		{"an ignored file", map[string]string{"src/main.pyc": "other bytecode"}, Options{}, text, -1},
		{"a file no step copies", map[string]string{"notes.txt": "edited"}, Options{}, text, -1},
		{"a new ignored file", map[string]string{"src/new.pyc": "x"}, Options{}, text, -1},
		{"requirements", map[string]string{"requirements.txt": "flask\nrequests\n"}, Options{}, text, 1},
		{"a source file", map[string]string{"src/main.py": "print(2)\n"}, Options{}, text, 3},
		{"a new source file", map[string]string{"src/util.py": ""}, Options{}, text, 3},
		{"an unused build arg", nil, Options{BuildArgs: map[string]string{"X": "1"}}, text, -1},
		{"the first RUN", nil, Options{}, strings.Replace(text, "apk add python3", "apk add python3 git", 1), 0},
		{"indentation", nil, Options{}, strings.Replace(text, "RUN apk add", "RUN   apk add", 1), -1},
		{"a comment", nil, Options{}, "# a comment\n" + text, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := firstChange(again(tc.edit, tc.o, tc.text)); got != tc.want {
				t.Errorf("first step changed: %d, want %d", got, tc.want)
			}
		})
	}
	// Mode and --chown count: both change what lands in the image.
	c = openTree(t, files, "", Limits{})
	chown := keys(t, c, strings.Replace(text, "COPY src", "COPY --chown=app src", 1), Options{})
	if chown[3] == base[3] || chown[2] != base[2] {
		t.Errorf("--chown: keys %q, was %q", chown, base)
	}
}

func TestCacheKeysFollowStages(t *testing.T) {
	const text = "FROM alpine AS a\nCOPY f /f\nFROM alpine AS b\nRUN true\nCOPY --from=a /f /g\n"
	k1 := keys(t, openTree(t, map[string]string{"f": "1"}, "", Limits{}), text, Options{})
	k2 := keys(t, openTree(t, map[string]string{"f": "2"}, "", Limits{}), text, Options{})
	if k1[0] != k2[0] || k1[1] == k2[1] {
		t.Errorf("a file in stage a changed: b's keys %q then %q; want RUN the same, COPY --from changed", k1, k2)
	}
	// The base's digest is part of every key.
	with := func(d string) []string {
		return keys(t, nil, "FROM alpine\nRUN true\n", Options{Resolve: func(Base) (Resolved, error) { return Resolved{Digest: d}, nil }})
	}
	if with("sha256:1")[0] == with("sha256:2")[0] {
		t.Errorf("a new base digest left the key of RUN as it was")
	}
}
