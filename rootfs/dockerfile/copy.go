package dockerfile

import (
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/sietch-vm/sietch/internal/unixmode"
)

// copyStep expands a COPY or ADD and, for a context source, lists and
// hashes the files it reads.
func (p *planner) copyStep(stage int, in Instruction, s *state, env vars) (*CopyStep, error) {
	line, kind := in.Line, in.Kind
	words, err := p.x.words(line, in.Args, env)
	if err != nil {
		return nil, err
	}
	for _, w := range words {
		if err := checkValue(line, string(kind)+" argument", w); err != nil {
			return nil, err
		}
	}
	srcs, dest := words[:len(words)-1], words[len(words)-1]
	cp := &CopyStep{FromStage: -1}
	if v, ok := in.Flags["chown"]; ok {
		if cp.Chown, err = p.x.word(line, v, env); err != nil {
			return nil, err
		}
		if cp.Chown == "" || strings.ContainsAny(cp.Chown, " \t\n\x00") || strings.Count(cp.Chown, ":") > 1 {
			return nil, lineErrorf(line, "%s --chown=%q: want USER[:GROUP] (names or ids)", kind, cp.Chown)
		}
	}
	if v, ok := in.Flags["chmod"]; ok {
		mode, err := p.x.word(line, v, env)
		if err != nil {
			return nil, err
		}
		if cp.Chmod, err = unixmode.Parse(mode); err != nil {
			return nil, lineErrorf(line, "%s --chmod: %v (symbolic modes are not supported)", kind, err)
		}
		cp.ChmodSet = true
	}
	if v, ok := in.Flags["from"]; ok {
		from, err := p.x.word(line, v, env)
		if err != nil {
			return nil, err
		}
		if cp.FromStage, err = p.from(stage, line, from); err != nil {
			return nil, err
		}
	}
	if dest == "" {
		return nil, lineErrorf(line, "%s destination %q expands to nothing", kind, in.Args[len(in.Args)-1])
	}
	cp.DestDir = strings.HasSuffix(dest, "/") || path.Base(dest) == "." || path.Base(dest) == ".."
	if !path.IsAbs(dest) {
		dest = path.Join(s.workdir(), dest)
	}
	cp.Dest = path.Clean(dest)
	if len(srcs) > 1 && !cp.DestDir {
		return nil, lineErrorf(line, "%s with several sources needs a destination directory ending in /: %s/", kind, dest)
	}
	for _, src := range srcs {
		if src == "" {
			return nil, lineErrorf(line, "%s source expands to nothing", kind)
		}
	}
	if cp.FromStage >= 0 {
		for _, src := range srcs {
			cp.Sources = append(cp.Sources, path.Clean("/"+src))
		}
		return cp, nil
	}
	cp.Sources = srcs
	if p.discover {
		return cp, nil
	}
	if p.ctx == nil {
		return nil, lineErrorf(line, "%s reads the build context, and there is none: pass --context DIR", kind)
	}
	var all []match
	for _, src := range srcs {
		ms, err := p.ctx.resolve(src)
		if err != nil {
			return nil, lineErrorf(line, "%s: %w", kind, err)
		}
		all = append(all, ms...)
	}
	if len(all) > 1 && !cp.DestDir {
		return nil, lineErrorf(line, "%s: the sources match %d files or directories, so the destination needs to be a directory ending in /: %s/", kind, len(all), cp.Dest)
	}
	for _, m := range all {
		if err := p.ctx.list(1 + len(m.under)); err != nil {
			return nil, lineErrorf(line, "%s: %w", kind, err)
		}
		files, err := p.files(kind, m, cp)
		if err != nil {
			return nil, lineErrorf(line, "%s: %w", kind, err)
		}
		cp.Files = append(cp.Files, files...)
	}
	return cp, nil
}

// files are the entries one match writes, hashed.
func (p *planner) files(kind Kind, m match, cp *CopyStep) ([]File, error) {
	var out []File
	add := func(e *entry, dest string) error {
		f := File{Path: e.path, Dest: dest, Type: e.typ, Mode: e.mode, Size: e.size, Link: e.link}
		switch e.typ {
		case typeOther:
			return fmt.Errorf("%s is a device, FIFO or socket: only files, directories and symlinks are copied; list it in .dockerignore", e.path)
		case TypeSymlink:
			f.Mode = fs.ModePerm
		case TypeFile:
			if err := p.ctx.hash(e); err != nil {
				return err
			}
			f.Digest = e.digest
		}
		if cp.ChmodSet && e.typ != TypeSymlink {
			f.Mode = cp.Chmod
		}
		out = append(out, f)
		return nil
	}
	if m.top == nil || m.top.typ == TypeDir {
		// A directory's contents are copied, not the directory.
		prefix := ""
		if m.top != nil {
			prefix = m.top.path + "/"
		}
		for _, e := range m.under {
			if err := add(e, path.Join(cp.Dest, strings.TrimPrefix(e.path, prefix))); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	dest := cp.Dest
	if cp.DestDir {
		dest = path.Join(cp.Dest, m.name)
	}
	if err := add(m.top, dest); err != nil {
		return nil, err
	}
	if kind == Add && m.top.typ == TypeFile {
		comp, err := p.ctx.archiveOf(m.top.path)
		if err != nil {
			return nil, err
		}
		if comp != "" {
			out[len(out)-1].Dest, out[len(out)-1].Extract = cp.Dest, comp
		}
	}
	return out, nil
}

// from resolves COPY --from in stage i: an earlier stage by name or index,
// or else an image, which gets a stage of its own with no steps.
func (p *planner) from(i, line int, v string) (int, error) {
	if n, err := strconv.Atoi(v); err == nil {
		if n < 0 || n >= i {
			return 0, lineErrorf(line, "COPY --from=%d: stage %d is this one or a later one (stages count from 0): a stage can only copy from an earlier one", n, n)
		}
		p.deps[i] = append(p.deps[i], n)
		return p.planned(line, n)
	}
	if v == "" {
		return 0, lineErrorf(line, "COPY --from names nothing (an ARG it uses may be unset)")
	}
	if j, ok := p.stageNamed(v); ok {
		switch {
		case j == i:
			return 0, lineErrorf(line, "COPY --from=%s names this stage: a stage cannot copy from itself", v)
		case j > i:
			return 0, lineErrorf(line, "COPY --from=%s names a stage that comes later (line %d): a stage can only copy from an earlier one", v, p.df.Stages[j].Line)
		}
		p.deps[i] = append(p.deps[i], j)
		return p.planned(line, j)
	}
	if k, ok := p.images[v]; ok {
		return k, nil
	}
	if _, err := name.ParseReference(v); err != nil {
		return 0, lineErrorf(line, "COPY --from=%s: not a stage name, stage index or image reference: %v", v, err)
	}
	b, err := p.resolve(line, Base{Kind: BaseImage, Ref: v})
	if err != nil {
		return 0, err
	}
	st := Stage{Name: v, Index: -1, Line: line, Base: b, Shell: []string{"/bin/sh", "-c"}}
	st.Key = baseKey(b, p.plan.Stages)
	p.images[v] = len(p.plan.Stages)
	p.plan.Stages = append(p.plan.Stages, st)
	return p.images[v], nil
}
