package dockerfile

import (
	"fmt"
	"io/fs"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Options shape a plan.
type Options struct {
	// BuildArgs override ARG defaults (--build-arg NAME=VALUE).
	BuildArgs map[string]string
	// Target names the stage to build (--target); "": the last one. Only
	// the stages it needs are planned.
	Target string
	// Resolve identifies a registry or local base: its digest (which goes
	// into every cache key of the stage) and its config (its ENV, WORKDIR,
	// USER, CMD… carry into the stage, as its PATH does into expansions).
	// nil: bases are known by name only and have an empty config; a
	// builder must set it for its cache keys to be sound.
	Resolve func(Base) (Resolved, error)
}

// Resolved is what Options.Resolve learnt about a base.
type Resolved struct {
	Digest string // e.g. the manifest's "sha256:…"
	Config ocispec.ImageConfig
}

// BaseKind says where a stage starts from.
type BaseKind string

// The bases a stage may have.
const (
	BaseImage   BaseKind = "image"   // a registry reference
	BaseLocal   BaseKind = "local"   // an OCI layout or docker save tarball in the context
	BaseStage   BaseKind = "stage"   // an earlier stage
	BaseScratch BaseKind = "scratch" // nothing
)

// Base is what a stage starts from.
type Base struct {
	Kind BaseKind
	// Ref is a registry reference as written (expanded), e.g. python:3.12.
	Ref string
	// Path is a local image's slash path relative to the context directory
	// (FROM ./base.tar); open it through the context's root, not the host.
	Path string
	// Stage is an earlier stage's index in Plan.Stages.
	Stage int
	// Digest is what Options.Resolve said ("" without one).
	Digest string
}

// Plan is what a builder executes: the stages the target needs, in order,
// each a base and steps.
type Plan struct {
	Stages []Stage
	// Config is the built image's config (the last stage's).
	Config ocispec.ImageConfig
	// Warnings: instructions ignored, build args no ARG used, parser
	// warnings; each says its line where it has one.
	Warnings []string
}

// Stage is one FROM and its steps.
type Stage struct {
	// Name is the stage's name ("" when unnamed); an implicit stage made
	// for COPY --from=IMAGE is named by the image reference.
	Name string
	// Index is the stage's position among the Dockerfile's FROMs; -1 for
	// an implicit stage.
	Index int
	Line  int
	Base  Base
	Steps []Step
	// Config and Shell are in effect at the end of the stage.
	Config ocispec.ImageConfig
	Shell  []string
	// Key is the cache key of the stage's result: its last step's, or its
	// base's when it has no steps.
	Key string
}

// Step is one instruction, expanded, with the state it runs in.
type Step struct {
	Kind     Kind
	Line     int
	Original string
	// Args are the expanded arguments: for ENV, LABEL and ARG NAME=VALUE
	// words; for RUN, CMD, ENTRYPOINT what was written (Docker expands
	// none of them; the shell does).
	Args []string
	// Command is a RUN's argv: the exec form as written, the shell form as
	// Shell + the command line.
	Command []string
	// Copy is set for COPY and ADD.
	Copy *CopyStep
	// Env is the environment in effect (for RUN: the ENV and then the ARGs
	// in scope that ENV does not override), Workdir the directory ("/"
	// when none was set; a WORKDIR step makes its directory), User the user
	// ("" for the base's), Shell the shell form's prefix.
	Env     []string
	Workdir string
	User    string
	Shell   []string
	// Key is the step's cache key: H(parent key, the expanded instruction,
	// the context files it reads); see Plan docs in docs/IMAGES.md.
	Key string
}

// CopyStep is what a COPY or ADD copies.
type CopyStep struct {
	// FromStage is the stage (index in Plan.Stages) files come from; -1:
	// the build context.
	FromStage int
	// Sources are the expanded sources: context paths, or absolute paths
	// in FromStage's filesystem (patterns allowed; the builder resolves
	// them there).
	Sources []string
	// Dest is the absolute destination; DestDir says it is a directory
	// (it ended in "/", or there are several sources). As in Docker, a file
	// copied to a Dest that is a directory in the image goes inside it.
	Dest    string
	DestDir bool
	// Chown is --chown as written (user[:group], names resolved by the
	// builder in the image); "": files belong to root.
	Chown string
	// Chmod is --chmod (octal), applied to every file and directory copied.
	Chmod    fs.FileMode
	ChmodSet bool
	// Files are the context files the step reads, in order: each with its
	// destination, mode (after Chmod) and content digest.
	Files []File
}

// File is one context entry a COPY or ADD writes into the image.
type File struct {
	Path   string   // slash path relative to the context directory
	Dest   string   // absolute path in the image
	Type   FileType // file, dir or symlink; links are copied as links
	Mode   fs.FileMode
	Size   int64
	Link   string // a symlink's target
	Digest string // a file's content: "sha256:…"
	// Extract is set for an ADD source that is a tar archive: it is
	// unpacked into the directory Dest, not copied.
	Extract Compression
}

// Plan turns the Dockerfile into a plan: expands ARG and ENV, keeps the
// stages the target needs, lists and hashes the context files each COPY and
// ADD reads and keys every step. ctx may be nil when no step reads the
// context.
func (df *Dockerfile) Plan(ctx *Context, o Options) (*Plan, error) {
	for k, v := range o.BuildArgs {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.IndexByte(v, 0) >= 0 {
			return nil, fmt.Errorf("build arg %q: want NAME=VALUE without NUL bytes", k)
		}
	}
	probe := &planner{df: df, o: o, x: newExpander(df.escape), discover: true}
	if err := probe.run(nil); err != nil {
		return nil, err
	}
	want, err := probe.needed(o.Target)
	if err != nil {
		return nil, err
	}
	if ctx != nil {
		ctx.listed = 0 // per plan; digests and bytes read stay with the context
	}
	p := &planner{df: df, ctx: ctx, o: o, x: newExpander(df.escape), used: map[string]bool{}}
	if err := p.run(want); err != nil {
		return nil, err
	}
	plan := &p.plan
	plan.Warnings = append(slices.Clone(df.Warnings), plan.Warnings...)
	for _, k := range slices.Sorted(maps.Keys(o.BuildArgs)) {
		if !p.used[k] {
			plan.Warnings = append(plan.Warnings, fmt.Sprintf("build arg %s was not used: no ARG %s in the stages built", k, k))
		}
	}
	last := plan.Stages[len(plan.Stages)-1]
	plan.Config = last.Config
	return plan, nil
}

// planner walks the stages. It runs twice: a probe (discover) that only
// finds which stage needs which, and the plan of the stages wanted.
type planner struct {
	df       *Dockerfile
	ctx      *Context
	o        Options
	x        expander
	discover bool

	global  vars            // global ARGs with values, and the automatic ones
	declare map[string]bool // global ARGs declared
	used    map[string]bool // build args an ARG took
	deps    [][]int         // probe: per Dockerfile stage, the stages it needs
	plan    Plan
	at      map[int]int    // Dockerfile stage index → index in plan.Stages
	images  map[string]int // implicit stage by image reference
}

// state is a stage's state as its instructions run.
type state struct {
	cfg    ocispec.ImageConfig
	shell  []string
	args   vars // ARGs in scope with a value
	cmdSet bool // CMD set in this stage (ENTRYPOINT then keeps it)
}

func (s *state) vars() vars { return vars(s.cfg.Env).under(s.args) }

func (s *state) workdir() string {
	if s.cfg.WorkingDir == "" {
		return "/"
	}
	return s.cfg.WorkingDir
}

func (p *planner) run(want map[int]bool) error {
	p.at, p.images = map[int]int{}, map[string]int{}
	p.deps = make([][]int, len(p.df.Stages))
	if err := p.globals(); err != nil {
		return err
	}
	for i := range p.df.Stages {
		if want != nil && !want[i] {
			continue
		}
		if err := p.stage(i); err != nil {
			return err
		}
	}
	return nil
}

func (p *planner) globals() error {
	p.global, p.declare = nil, map[string]bool{}
	for _, k := range slices.Sorted(maps.Keys(autoArgs)) {
		p.global = p.global.set(k, autoArgs[k])
	}
	for _, in := range p.df.GlobalArgs {
		for _, a := range in.Args {
			raw, def, hasDefault := strings.Cut(a, "=")
			k, err := p.x.word(in.Line, raw, p.global)
			if err != nil {
				return err
			}
			if k == "" || strings.Contains(k, "=") {
				return lineErrorf(in.Line, "ARG name %q is not a name", raw)
			}
			var v string
			if hasDefault {
				if v, err = p.x.word(in.Line, def, p.global); err != nil {
					return err
				}
			}
			p.declare[k] = true
			if bv, ok := p.o.BuildArgs[k]; ok {
				v, hasDefault = bv, true
				p.markUsed(k)
			}
			if hasDefault {
				if err := checkValue(in.Line, "ARG "+k, v); err != nil {
					return err
				}
				p.global = p.global.set(k, v)
			}
		}
	}
	return nil
}

func (p *planner) markUsed(k string) {
	if p.used != nil {
		p.used[k] = true
	}
}

// stage plans the Dockerfile's stage i.
func (p *planner) stage(i int) error {
	ps := p.df.Stages[i]
	st := Stage{Name: ps.Name, Index: i, Line: ps.Line}
	var s state
	if ps.Platform != "" {
		plat, err := p.x.word(ps.Line, ps.Platform, p.global)
		if err != nil {
			return err
		}
		if !strings.EqualFold(plat, Platform) {
			return unsupported(ps.Line, "FROM --platform="+plat, "sietch builds "+Platform+" images only")
		}
	}
	ref, err := p.x.word(ps.Line, ps.Base, p.global)
	if err != nil {
		return err
	}
	if st.Base, err = p.base(i, ps.Line, ref); err != nil {
		return err
	}
	if err := p.inherit(&st, &s); err != nil {
		return err
	}
	st.Key = baseKey(st.Base, p.plan.Stages)
	for _, in := range ps.Instructions {
		step, err := p.step(i, in, &s)
		if err != nil {
			return err
		}
		if err := checkState(in.Line, &s); err != nil {
			return err
		}
		if step == nil {
			continue
		}
		if !p.discover {
			step.Key = stepKey(st.Key, step, p.plan.Stages)
			st.Key = step.Key
		}
		st.Steps = append(st.Steps, *step)
	}
	st.Config, st.Shell = s.cfg, s.shell
	p.at[i] = len(p.plan.Stages)
	p.plan.Stages = append(p.plan.Stages, st)
	return nil
}

// base works out what FROM ref means in stage i.
func (p *planner) base(i, line int, ref string) (Base, error) {
	if ref == "" {
		return Base{}, lineErrorf(line, "FROM names no image (an ARG it uses may be unset): pass --build-arg or give the ARG a default")
	}
	if j, ok := p.stageNamed(ref); ok {
		switch {
		case j < i:
			p.deps[i] = append(p.deps[i], j)
			k, err := p.planned(line, j)
			return Base{Kind: BaseStage, Stage: k}, err
		case j > i:
			return Base{}, lineErrorf(line, "FROM %s names a stage that comes later (line %d): a stage can only start from an earlier one", ref, p.df.Stages[j].Line)
		}
		// FROM x AS x: the base is the image x, as in Docker.
	}
	if strings.EqualFold(ref, "scratch") {
		return Base{Kind: BaseScratch}, nil
	}
	if strings.HasPrefix(ref, "/") || strings.HasPrefix(ref, "./") || strings.HasPrefix(ref, "../") {
		rel, err := cleanSource(ref)
		if err != nil || rel == "." {
			return Base{}, lineErrorf(line, "FROM %s: a local image must be a file or OCI layout inside the build context", ref)
		}
		if !p.discover {
			if p.ctx == nil {
				return Base{}, lineErrorf(line, "FROM %s: a local image is read from the build context, and there is none: pass --context DIR", ref)
			}
			if _, err := p.ctx.root.Stat(rel); err != nil {
				return Base{}, lineErrorf(line, "FROM %s: %v", ref, err)
			}
		}
		return p.resolve(line, Base{Kind: BaseLocal, Path: rel})
	}
	if _, err := name.ParseReference(ref); err != nil {
		return Base{}, lineErrorf(line, "FROM %s: not an image reference, stage name or local path (./image.tar): %v", ref, err)
	}
	return p.resolve(line, Base{Kind: BaseImage, Ref: ref})
}

func (p *planner) resolve(line int, b Base) (Base, error) {
	if p.discover || p.o.Resolve == nil {
		return b, nil
	}
	r, err := p.o.Resolve(b)
	if err != nil {
		return Base{}, lineErrorf(line, "resolve base %s: %w", cmpOr(b.Ref, b.Path), err)
	}
	b.Digest = r.Digest
	return b, nil
}

// inherit starts a stage's state from its base's.
func (p *planner) inherit(st *Stage, s *state) error {
	switch st.Base.Kind {
	case BaseStage:
		from := p.plan.Stages[st.Base.Stage]
		s.cfg, s.shell = cloneConfig(from.Config), slices.Clone(from.Shell)
	case BaseImage, BaseLocal:
		if !p.discover && p.o.Resolve != nil {
			r, err := p.o.Resolve(st.Base)
			if err != nil {
				return lineErrorf(st.Line, "resolve base %s: %w", cmpOr(st.Base.Ref, st.Base.Path), err)
			}
			s.cfg = cloneConfig(r.Config)
		}
	}
	if _, ok := vars(s.cfg.Env).get("PATH"); !ok {
		s.cfg.Env = vars(s.cfg.Env).set("PATH", DefaultPath)
	}
	if len(s.shell) == 0 {
		s.shell = []string{"/bin/sh", "-c"}
	}
	return nil
}

func cloneConfig(c ocispec.ImageConfig) ocispec.ImageConfig {
	c.Env = slices.Clone(c.Env)
	c.Cmd = slices.Clone(c.Cmd)
	c.Entrypoint = slices.Clone(c.Entrypoint)
	c.ExposedPorts = maps.Clone(c.ExposedPorts)
	c.Labels = maps.Clone(c.Labels)
	c.Volumes = maps.Clone(c.Volumes)
	return c
}

// planned is the index in the plan of Dockerfile stage j, which the
// probe found needed. A reference the probe did not see (its name came from
// a base image's ENV, unknown to the probe) is refused.
func (p *planner) planned(line, j int) (int, error) {
	k, ok := p.at[j]
	if !ok {
		return 0, lineErrorf(line, "stage %d (line %d) is referred to through a variable the base image sets: name the stage directly, or with an ARG", j, p.df.Stages[j].Line)
	}
	return k, nil
}

// stageNamed is the Dockerfile stage called n (a name, compared in lower
// case as Docker does).
func (p *planner) stageNamed(n string) (int, bool) {
	n = strings.ToLower(n)
	for j, s := range p.df.Stages {
		if s.Name != "" && s.Name == n {
			return j, true
		}
	}
	return 0, false
}

// needed is the set of Dockerfile stages target needs, target included.
func (p *planner) needed(target string) (map[int]bool, error) {
	t := len(p.df.Stages) - 1
	if target != "" {
		j, ok := p.stageNamed(target)
		if !ok {
			var names []string
			for _, s := range p.df.Stages {
				if s.Name != "" {
					names = append(names, s.Name)
				}
			}
			if len(names) == 0 {
				return nil, fmt.Errorf("target stage %q: the Dockerfile names no stages (FROM IMAGE AS NAME)", target)
			}
			return nil, fmt.Errorf("target stage %q is not in the Dockerfile: its stages are %s", target, strings.Join(names, ", "))
		}
		t = j
	}
	want := map[int]bool{}
	var visit func(int)
	visit = func(i int) {
		if want[i] {
			return
		}
		want[i] = true
		for _, d := range p.deps[i] {
			visit(d) // deps point backwards only, so this ends
		}
	}
	visit(t)
	return want, nil
}

// step turns one instruction into a step, updating the stage's state; nil
// for an ARG without a value to record.
func (p *planner) step(stage int, in Instruction, s *state) (*Step, error) {
	env := s.vars()
	step := &Step{Kind: in.Kind, Line: in.Line, Original: in.Original, Workdir: s.workdir(), User: s.cfg.User, Shell: slices.Clone(s.shell)}
	step.Env = env
	line := in.Line
	switch in.Kind {
	case Run:
		step.Args = slices.Clone(in.Args)
		step.Command = p.command(in, s)
	case Cmd:
		step.Args = slices.Clone(in.Args)
		s.cfg.Cmd, s.cmdSet = p.command(in, s), true
	case Entrypoint:
		step.Args = slices.Clone(in.Args)
		s.cfg.Entrypoint = p.command(in, s)
		if !s.cmdSet {
			s.cfg.Cmd = nil // as Docker: a new ENTRYPOINT drops the base's CMD
		}
	case Shell:
		step.Args = slices.Clone(in.Args)
		s.shell = slices.Clone(in.Args)
	case Env, Label:
		words, err := p.x.words(line, in.Args, env)
		if err != nil {
			return nil, err
		}
		for i := 0; i < len(words); i += 2 {
			k, v := words[i], words[i+1]
			if k == "" {
				return nil, lineErrorf(line, "%s name %q expands to nothing", in.Kind, in.Args[i])
			}
			if err := checkValue(line, string(in.Kind)+" "+k, k+v); err != nil {
				return nil, err
			}
			step.Args = append(step.Args, k+"="+v)
			if in.Kind == Env {
				if strings.Contains(k, "=") {
					return nil, lineErrorf(line, "ENV name %q holds '='", k)
				}
				s.cfg.Env = vars(s.cfg.Env).set(k, v)
			} else {
				if s.cfg.Labels == nil {
					s.cfg.Labels = map[string]string{}
				}
				s.cfg.Labels[k] = v
			}
		}
	case Arg:
		for _, a := range in.Args {
			k, v, ok, err := p.arg(line, a, s, env)
			if err != nil {
				return nil, err
			}
			if ok {
				s.args = s.args.set(k, v)
				step.Args = append(step.Args, k+"="+v)
			}
		}
		if len(step.Args) == 0 {
			return nil, nil
		}
	case Workdir:
		dir, err := p.x.word(line, in.Args[0], env)
		if err != nil {
			return nil, err
		}
		if dir == "" {
			return nil, lineErrorf(line, "WORKDIR %s expands to nothing", in.Args[0])
		}
		if err := checkValue(line, "WORKDIR", dir); err != nil {
			return nil, err
		}
		if !path.IsAbs(dir) {
			dir = path.Join(s.workdir(), dir)
		}
		s.cfg.WorkingDir = path.Clean(dir)
		step.Args = []string{s.cfg.WorkingDir}
	case User:
		u, err := p.x.word(line, in.Args[0], env)
		if err != nil {
			return nil, err
		}
		if u == "" || strings.ContainsAny(u, " \t\n\x00") || strings.Count(u, ":") > 1 {
			return nil, lineErrorf(line, "USER %q: want USER[:GROUP] (names or ids)", u)
		}
		s.cfg.User = u
		step.Args = []string{u}
	case Expose:
		words, err := p.x.words(line, in.Args, env)
		if err != nil {
			return nil, err
		}
		for _, w := range words {
			ports, err := parsePorts(w, maxPorts-len(s.cfg.ExposedPorts))
			if err != nil {
				return nil, lineErrorf(line, "EXPOSE %s: %v", w, err)
			}
			if s.cfg.ExposedPorts == nil {
				s.cfg.ExposedPorts = map[string]struct{}{}
			}
			for _, pt := range ports {
				s.cfg.ExposedPorts[pt] = struct{}{}
			}
			step.Args = append(step.Args, ports...)
		}
	case StopSignal:
		sig, err := p.x.word(line, in.Args[0], env)
		if err != nil {
			return nil, err
		}
		if !validSignal(sig) {
			return nil, lineErrorf(line, "STOPSIGNAL %q: want a signal name (SIGTERM) or number", sig)
		}
		s.cfg.StopSignal = sig
		step.Args = []string{sig}
	case Copy, Add:
		cp, err := p.copyStep(stage, in, s, env)
		if err != nil {
			return nil, err
		}
		step.Copy = cp
		step.Args = append(slices.Clone(cp.Sources), cp.Dest)
	default:
		return nil, lineErrorf(line, "%s is not a Dockerfile instruction", in.Kind)
	}
	return step, nil
}

// command is a RUN, CMD or ENTRYPOINT's argv: the exec form as written,
// the shell form prefixed with the shell.
func (p *planner) command(in Instruction, s *state) []string {
	if in.Exec {
		return slices.Clone(in.Args)
	}
	return append(slices.Clone(s.shell), strings.Join(in.Args, " "))
}

// arg evaluates one ARG word in a stage: a build arg wins, then the
// default, then (for a bare ARG NAME) the global ARG's value or the
// automatic platform value. ok is false for an ARG left without a value.
func (p *planner) arg(line int, word string, s *state, env vars) (k, v string, ok bool, err error) {
	k, def, hasDefault := strings.Cut(word, "=")
	if k, err = p.x.word(line, k, env); err != nil {
		return "", "", false, err
	}
	if k == "" || strings.Contains(k, "=") {
		return "", "", false, lineErrorf(line, "ARG name %q is not a name", word)
	}
	if bv, found := p.o.BuildArgs[k]; found {
		p.markUsed(k)
		return k, bv, true, nil
	}
	if hasDefault {
		if v, err = p.x.word(line, def, env); err != nil {
			return "", "", false, err
		}
		if err := checkValue(line, "ARG "+k, v); err != nil {
			return "", "", false, err
		}
		return k, v, true, nil
	}
	if p.declare[k] {
		v, ok = p.global.get(k)
		return k, v, ok, nil
	}
	v, ok = autoArgs[k]
	return k, v, ok, nil
}

// parsePorts parses PORT[-PORT][/PROTO] into "port/proto" keys, at most
// room of them.
func parsePorts(spec string, room int) ([]string, error) {
	ports, proto, hasProto := strings.Cut(spec, "/")
	proto = strings.ToLower(proto)
	if !hasProto {
		proto = "tcp"
	}
	if proto != "tcp" && proto != "udp" && proto != "sctp" {
		return nil, fmt.Errorf("protocol %q: want tcp, udp or sctp", proto)
	}
	loS, hiS, isRange := strings.Cut(ports, "-")
	lo, err := strconv.ParseUint(loS, 10, 16)
	hi := lo
	if err == nil && isRange {
		hi, err = strconv.ParseUint(hiS, 10, 16)
	}
	if err != nil || lo == 0 || hi < lo {
		return nil, fmt.Errorf("want a port 1-65535 or a range of them, optionally /tcp, /udp or /sctp")
	}
	if int(hi-lo+1) > room {
		return nil, fmt.Errorf("the image would expose more than %d ports", maxPorts)
	}
	var out []string
	for pt := lo; pt <= hi; pt++ {
		out = append(out, fmt.Sprintf("%d/%s", pt, proto))
	}
	return out, nil
}

func validSignal(s string) bool {
	if n, err := strconv.Atoi(s); err == nil {
		return n > 0 && n <= 64
	}
	if s == "" || len(s) > 16 {
		return false
	}
	for _, c := range s {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '+' || c == '-') {
			return false
		}
	}
	return true
}
