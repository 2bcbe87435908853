// Package dockerfile turns a Dockerfile and its build context into a validated build plan.
//
// Parsing is buildkit's (frontend/dockerfile/parser, shell); what this
// package adds is the refusal of what a sandboxed builder cannot honour, ARG
// and ENV scoping, stage selection, a confined view of the context and cache
// keys. Nothing here runs a step: the builder does, inside a sandbox.
package dockerfile

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// MaxDockerfileBytes bounds the Dockerfile Parse reads.
const MaxDockerfileBytes = 1 << 20

// maxLineBytes keeps each line under bufio.Scanner's token limit, which the
// parser would report without a line.
const maxLineBytes = 60 << 10

// maxInstructions bounds a Dockerfile's instructions (Docker's own images
// stop at 127 layers; this leaves room for ENV, LABEL and the like).
const maxInstructions = 4096

// Kind is an instruction, as Docker spells it.
type Kind string

// The instructions a plan holds.
const (
	Run        Kind = "RUN"
	Copy       Kind = "COPY"
	Add        Kind = "ADD"
	Env        Kind = "ENV"
	Arg        Kind = "ARG"
	Workdir    Kind = "WORKDIR"
	User       Kind = "USER"
	Expose     Kind = "EXPOSE"
	Label      Kind = "LABEL"
	Cmd        Kind = "CMD"
	Entrypoint Kind = "ENTRYPOINT"
	Shell      Kind = "SHELL"
	StopSignal Kind = "STOPSIGNAL"
)

// Dockerfile is a parsed, syntactically checked Dockerfile: nothing expanded
// yet, nothing read from the context.
type Dockerfile struct {
	// GlobalArgs are the ARGs before the first FROM.
	GlobalArgs []Instruction
	Stages     []ParsedStage
	// Warnings are the parser's (empty continuation lines) and ours
	// (instructions ignored), each with its line.
	Warnings []string
	escape   rune
}

// ParsedStage is a FROM and the instructions up to the next one.
type ParsedStage struct {
	Line         int
	Base         string // as written, unexpanded
	Name         string // lower case, "" when unnamed
	Platform     string // --platform, unexpanded
	Instructions []Instruction
}

// Instruction is one instruction as written.
type Instruction struct {
	Kind     Kind
	Line     int // first line
	Original string
	// Args are the words: for the shell form of RUN, CMD, ENTRYPOINT one
	// string (the command line), for the exec (JSON) form its elements; for
	// ENV and LABEL key, value pairs; for COPY/ADD the sources then the
	// destination.
	Args  []string
	Exec  bool              // JSON form
	Flags map[string]string // --name=value; a bare --name is "true"
}

// Parse reads a Dockerfile. It refuses what the builder does not support,
// with the line: unknown or unsupported instructions, flags that need
// BuildKit's mounts, networks or platforms, heredocs, remote sources.
func Parse(text []byte) (*Dockerfile, error) {
	if len(text) > MaxDockerfileBytes {
		return nil, fmt.Errorf("Dockerfile is %d bytes, more than the %d this builder reads", len(text), MaxDockerfileBytes)
	}
	if err := checkBytes(text); err != nil {
		return nil, err
	}
	res, err := parser.Parse(bytes.NewReader(text))
	if err != nil {
		return nil, &LineError{Line: parserLine(err), Err: err}
	}
	df := &Dockerfile{escape: res.EscapeToken}
	for _, w := range res.Warnings {
		line := 0
		if w.Location != nil {
			line = w.Location.Start.Line
		}
		df.Warnings = append(df.Warnings, fmt.Sprintf("Dockerfile:%d: %s", max(line, 1), w.Short))
	}
	if len(res.AST.Children) == 0 {
		return nil, lineErrorf(1, "the Dockerfile has no instructions: it needs at least FROM")
	}
	if n := len(res.AST.Children); n > maxInstructions {
		return nil, lineErrorf(res.AST.Children[maxInstructions].StartLine, "the Dockerfile has %d instructions, more than the %d a build may have", n, maxInstructions)
	}
	for _, n := range res.AST.Children {
		if err := df.add(n); err != nil {
			return nil, err
		}
	}
	if len(df.Stages) == 0 {
		return nil, lineErrorf(res.AST.Children[0].StartLine, "the Dockerfile has no FROM: a build starts from an image (FROM IMAGE) or from nothing (FROM scratch)")
	}
	return df, nil
}

// checkBytes refuses NUL bytes (no exec or env can carry them) and lines the
// parser's scanner cannot hold, at their line.
func checkBytes(text []byte) error {
	for i, line := range bytes.Split(text, []byte("\n")) {
		if bytes.IndexByte(line, 0) >= 0 {
			return lineErrorf(i+1, "the line holds a NUL byte")
		}
		if len(line) > maxLineBytes {
			return lineErrorf(i+1, "the line is %d bytes long, more than %d: split it with \\ continuations", len(line), maxLineBytes)
		}
	}
	return nil
}

// parserLine is the first line a parser error names.
func parserLine(err error) int {
	var le *parser.LocationError
	if errors.As(err, &le) {
		for _, rs := range le.Locations {
			for _, r := range rs {
				return max(r.Start.Line, 1)
			}
		}
	}
	return 1
}

// add files one parsed node.
func (df *Dockerfile) add(n *parser.Node) error {
	line := n.StartLine
	name := strings.ToUpper(n.Value)
	if len(n.Heredocs) > 0 {
		return unsupported(line, name+" with a heredoc", "put the script or file in the build context and COPY it")
	}
	in := Instruction{Kind: Kind(name), Line: line, Original: n.Original, Exec: n.Attributes["json"]}
	for a := n.Next; a != nil; a = a.Next {
		in.Args = append(in.Args, a.Value)
	}
	flags, err := parseFlags(line, name, n.Flags)
	if err != nil {
		return err
	}
	in.Flags = flags
	if name == "FROM" {
		return df.addFrom(in)
	}
	if name == "ARG" && len(df.Stages) == 0 {
		if err := checkInstruction(&in); err != nil {
			return err
		}
		df.GlobalArgs = append(df.GlobalArgs, in)
		return nil
	}
	if len(df.Stages) == 0 {
		return lineErrorf(line, "%s before the first FROM: only ARG may come before FROM", name)
	}
	switch name {
	case "VOLUME", "HEALTHCHECK":
		if err := allowFlags(line, name, flags, name == "HEALTHCHECK", "interval", "timeout", "start-period", "start-interval", "retries"); err != nil {
			return err
		}
		why := map[string]string{
			"VOLUME":      "a sandbox has no volumes; the directory stays part of the image",
			"HEALTHCHECK": "sietch does not run health checks; use a template's ready check",
		}[name]
		df.Warnings = append(df.Warnings, fmt.Sprintf("Dockerfile:%d: %s is ignored: %s", line, name, why))
		return nil
	case "MAINTAINER":
		// Deprecated; Docker's documentation says to write it as this label.
		if err := allowFlags(line, name, flags, false); err != nil {
			return err
		}
		if len(in.Args) != 1 {
			return lineErrorf(line, "MAINTAINER needs one argument")
		}
		in = Instruction{Kind: Label, Line: line, Original: n.Original, Flags: flags,
			Args: []string{"org.opencontainers.image.authors", quoteWord(in.Args[0]), "="}}
	case "ONBUILD":
		return unsupported(line, "ONBUILD", "triggers run in the builds of other Dockerfiles; write the instructions where they are needed")
	}
	if err := checkInstruction(&in); err != nil {
		return err
	}
	st := &df.Stages[len(df.Stages)-1]
	st.Instructions = append(st.Instructions, in)
	return nil
}

// quoteWord makes s one word for the shell lexer (MAINTAINER takes its
// argument verbatim, LABEL values are lexed).
func quoteWord(s string) string {
	return `'` + strings.ReplaceAll(s, `'`, `'"'"'`) + `'`
}

func (df *Dockerfile) addFrom(in Instruction) error {
	if err := allowFlags(in.Line, "FROM", in.Flags, false, "platform"); err != nil {
		return err
	}
	st := ParsedStage{Line: in.Line, Platform: in.Flags["platform"]}
	switch {
	case len(in.Args) == 1:
	case len(in.Args) == 3 && strings.EqualFold(in.Args[1], "as"):
		st.Name = strings.ToLower(in.Args[2])
		if !validStageName(st.Name) {
			return lineErrorf(in.Line, "stage name %q: it must start with a letter and hold only letters, digits, '-', '_' and '.'", in.Args[2])
		}
		for _, o := range df.Stages {
			if o.Name == st.Name {
				return lineErrorf(in.Line, "stage name %q is already used by the stage at line %d", st.Name, o.Line)
			}
		}
	default:
		return lineErrorf(in.Line, "FROM needs an image and optionally AS NAME: FROM IMAGE [AS NAME]")
	}
	st.Base = in.Args[0]
	df.Stages = append(df.Stages, st)
	return nil
}

func validStageName(s string) bool {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// checkInstruction checks an instruction's flags and argument count.
func checkInstruction(in *Instruction) error {
	line, name := in.Line, string(in.Kind)
	switch in.Kind {
	case Run:
		for _, f := range []string{"mount", "network", "security", "device"} {
			if _, ok := in.Flags[f]; ok {
				return unsupported(line, "RUN --"+f, "steps run in a sandbox with the context's files COPYed in and no extra mounts, networks or privileges; COPY what the step needs first")
			}
		}
		if err := allowFlags(line, name, in.Flags, false); err != nil {
			return err
		}
		if len(in.Args) == 0 {
			return lineErrorf(line, "RUN needs a command")
		}
	case Cmd, Entrypoint:
		if err := allowFlags(line, name, in.Flags, false); err != nil {
			return err
		}
		if !in.Exec && len(in.Args) == 0 {
			return lineErrorf(line, "%s needs a command", name)
		}
	case Copy, Add:
		return checkCopy(in)
	case Env, Label:
		if err := allowFlags(line, name, in.Flags, false); err != nil {
			return err
		}
		if len(in.Args) == 0 || len(in.Args)%3 != 0 {
			return lineErrorf(line, "%s needs KEY=VALUE pairs", name)
		}
		// The parser leaves key, value, separator triples; keep the pairs.
		var pairs []string
		for i := 0; i < len(in.Args); i += 3 {
			if in.Args[i] == "" {
				return lineErrorf(line, "%s has an empty name", name)
			}
			pairs = append(pairs, in.Args[i], in.Args[i+1])
		}
		in.Args = pairs
	case Arg:
		if err := allowFlags(line, name, in.Flags, false); err != nil {
			return err
		}
		if len(in.Args) == 0 {
			return lineErrorf(line, "ARG needs a name: ARG NAME[=DEFAULT]")
		}
		for _, a := range in.Args {
			if k, _, _ := strings.Cut(a, "="); k == "" {
				return lineErrorf(line, "ARG %q has an empty name", a)
			}
		}
	case Workdir, User, StopSignal:
		if err := allowFlags(line, name, in.Flags, false); err != nil {
			return err
		}
		if len(in.Args) != 1 || strings.TrimSpace(in.Args[0]) == "" {
			return lineErrorf(line, "%s needs exactly one argument", name)
		}
	case Expose:
		if err := allowFlags(line, name, in.Flags, false); err != nil {
			return err
		}
		if len(in.Args) == 0 {
			return lineErrorf(line, "EXPOSE needs a port: EXPOSE 8000[/tcp]")
		}
	case Shell:
		if err := allowFlags(line, name, in.Flags, false); err != nil {
			return err
		}
		if !in.Exec || len(in.Args) == 0 {
			return lineErrorf(line, `SHELL needs a JSON array: SHELL ["/bin/bash", "-c"]`)
		}
	default:
		return lineErrorf(line, "%s is not a Dockerfile instruction", name)
	}
	return nil
}

func checkCopy(in *Instruction) error {
	line, name := in.Line, string(in.Kind)
	for _, f := range []string{"parents", "exclude"} {
		if _, ok := in.Flags[f]; ok {
			return unsupported(line, name+" --"+f, "copy each directory by name, and keep files out with .dockerignore")
		}
	}
	if in.Kind == Add {
		for _, f := range []string{"checksum", "keep-git-dir", "unpack"} {
			if _, ok := in.Flags[f]; ok {
				return unsupported(line, "ADD --"+f, "ADD here takes only files from the context")
			}
		}
	}
	allowed := []string{"chown", "chmod", "link"}
	if in.Kind == Copy {
		allowed = append(allowed, "from")
	}
	if err := allowFlags(line, name, in.Flags, false, allowed...); err != nil {
		return err
	}
	if len(in.Args) < 2 {
		return lineErrorf(line, "%s needs a source and a destination: %s SRC... DEST", name, name)
	}
	for _, src := range in.Args[:len(in.Args)-1] {
		if isRemote(src) {
			if in.Kind == Copy {
				return lineErrorf(line, "COPY source %q is a URL: COPY takes files from the context", src)
			}
			return unsupported(line, "ADD of a URL or git source ("+src+")", "builds fetch nothing from the network outside a RUN step; download it into the context first, or RUN curl in a step")
		}
	}
	return nil
}

// isRemote says whether an ADD source names something to fetch (as Docker
// tells them apart: a URL scheme, or a git address).
func isRemote(src string) bool {
	l := strings.ToLower(src)
	for _, p := range []string{"http://", "https://", "git://", "git@", "ssh://", "ftp://"} {
		if strings.HasPrefix(l, p) {
			return true
		}
	}
	return strings.Contains(l, "://")
}
