package sandbox

import (
	"github.com/sietch-vm/sietch/wire/agentproto"
	"image"
	"io"

	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sietch-vm/sietch/wire/control"
)

// DefaultTemplate is the template a create without template, image or
// snapshot resumes; sietchd builds it from the image "default" (or the
// only Linux image) on first need.
const DefaultTemplate = "default"

// Template build bounds.
const (
	defaultReadyTimeout = 5 * time.Minute
	maxReadyTimeout     = time.Hour
	readyInterval       = 500 * time.Millisecond // least wait between ready checks
	maxReadyInterval    = 5 * time.Second
	maxCmdBytes         = 16 << 10
	startLog            = "/run/sietch-start.log" // the start command's output, in the guest (tmpfs)
	startExecID         = "sietch-template-start"
	labelTemplate       = "sietch.template" // on the sandbox a build boots
)

// template is one template at run time.
type template struct {
	rec  templateRec
	done chan struct{} // closed when the build ends; closed at once for a loaded one
}

// loadTemplates reads the templates; a build cut short by a restart is
// failed and its sandbox removed.
func (m *Manager) loadTemplates() []string {
	var orphans []string
	for _, e := range m.db.each(bucketTemplates, func(name string, b []byte) error {
		var r templateRec
		if err := decodeRecord(b, &r); err != nil {
			return err
		}
		if r.State == TemplateBuilding {
			r.State, r.Step, r.Reason = TemplateFailed, "", "sietchd restarted during the build; build it again"
			if r.BuildSandbox != "" {
				orphans = append(orphans, r.BuildSandbox)
			}
			r.BuildSandbox = ""
			m.db.put(bucketTemplates, name, r)
		}
		m.templates[name] = &template{rec: r, done: closedChan()}
		return nil
	}) {
		m.log.Warn("skipping a template record that does not decode", "err", e)
	}
	return orphans
}

// BuildTemplate starts building a template and returns it building;
// Template and WaitTemplate follow the build. A template that failed may
// be built again under its name; one that is building or ready may not.
func (m *Manager) BuildTemplate(req TemplateSpec) (Template, error) {
	t, err := m.startBuild(req)
	if err != nil {
		return Template{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.templateView(t), nil
}

func (m *Manager) startBuild(req TemplateSpec) (*template, error) {
	return m.startBuildOver(req, false)
}

// startBuildOver is startBuild that may replace a ready template whose
// image changed (stale), as the default template is on its next use.
func (m *Manager) startBuildOver(req TemplateSpec, replaceStale bool) (*template, error) {
	if err := checkName("template", req.Name); err != nil {
		return nil, err
	}
	if req.Image == "" {
		req.Image = "default"
	}
	spec, ok := m.spec(req.Image)
	if !ok {
		return nil, fmt.Errorf("%w: no image %q to build template %s from (sietch images lists them)", ErrNotFound, req.Image, req.Name)
	}
	if req.StartCmd == "" {
		req.StartCmd = imageStartCmd(spec.Config)
		if req.StartCmd != "" && req.ReadyCmd == "" && req.ReadyPort == 0 {
			req.ReadyCmd = spec.Config.ReadyCmd
		}
	}
	if spec.Kind != KindLinux && (req.StartCmd != "" || req.ReadyCmd != "" || req.ReadyPort != 0) {
		return nil, fmt.Errorf("%w: image %s is a %s image without a guest agent: a template of it takes no start command or ready check", ErrInvalid, spec.Name, spec.Kind)
	}
	if req.ReadyPort < 0 || req.ReadyPort > 65535 {
		return nil, fmt.Errorf("%w: ready_port %d: want 1 to 65535 (0: none)", ErrInvalid, req.ReadyPort)
	}
	if len(req.StartCmd) > maxCmdBytes || len(req.ReadyCmd) > maxCmdBytes || strings.ContainsRune(req.StartCmd+req.ReadyCmd, 0) {
		return nil, fmt.Errorf("%w: start and ready commands are at most %d bytes, without NUL", ErrInvalid, maxCmdBytes)
	}
	timeout := time.Duration(req.ReadyTimeoutS) * time.Second
	switch {
	case req.ReadyTimeoutS < 0 || timeout > maxReadyTimeout:
		return nil, fmt.Errorf("%w: ready_timeout_s %d: want 0 (the default, %v) to %d", ErrInvalid, req.ReadyTimeoutS, defaultReadyTimeout, int(maxReadyTimeout.Seconds()))
	case timeout == 0:
		timeout = defaultReadyTimeout
	}
	seen := map[string]bool{}
	for _, l := range req.Contexts {
		switch {
		case l != agentproto.LanguagePython && l != agentproto.LanguageNode && l != agentproto.LanguageBash:
			return nil, fmt.Errorf("%w: contexts: %q is not a language (python, node or bash)", ErrInvalid, l)
		case seen[l]:
			return nil, fmt.Errorf("%w: contexts: %s twice", ErrInvalid, l)
		case spec.Kind != KindLinux:
			return nil, fmt.Errorf("%w: image %s is a %s image without a guest agent: a template of it has no code contexts", ErrInvalid, spec.Name, spec.Kind)
		}
		seen[l] = true
	}
	if req.Limits.TimeoutS != 0 || req.Limits.OnTimeout != "" {
		return nil, fmt.Errorf("%w: a template takes cpus, memory_mib and disk_mib; give timeout_s and on_timeout to each create", ErrInvalid)
	}
	def := m.cfg.Defaults
	if spec.MemMiB > 0 {
		def.MemoryMiB = spec.MemMiB
	}
	l := withDefaults(req.Limits, Limits{CPUs: def.CPUs, MemoryMiB: def.MemoryMiB, DiskMiB: def.DiskMiB})
	if err := checkLimits(withDefaults(l, Limits{OnTimeout: OnTimeoutStop}), m.cfg.Max); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	old, replacing := m.templates[req.Name]
	if replacing && old.rec.State != TemplateFailed && !(replaceStale && m.staleLocked(old)) {
		return nil, fmt.Errorf("%w: template %s is %s; remove it first (sietch template rm %s) to build it again", ErrWrongState, req.Name, old.rec.State, req.Name)
	}
	t := &template{done: make(chan struct{}), rec: templateRec{ImageID: imageID(spec), Template: Template{
		Name: req.Name, Image: spec.Name, StartCmd: req.StartCmd, ReadyPort: req.ReadyPort, ReadyCmd: req.ReadyCmd, Limits: l,
		Contexts: slices.Clone(req.Contexts),
		State:    TemplateBuilding, Step: StepBoot, CreatedAt: time.Now().UTC(),
	}}}
	// A replaced template's snapshot goes once nothing needs it
	// (reapTemplateSnapshots).
	if err := m.db.put(bucketTemplates, req.Name, t.rec); err != nil {
		return nil, err
	}
	m.templates[req.Name] = t
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.build(t, timeout)
	}()
	m.log.Info("template build started", "template", req.Name, "image", spec.Name)
	return t, nil
}

// build boots the template's image, starts its start command, waits for
// its ready command and snapshots it; then the build sandbox goes.
func (m *Manager) build(t *template, readyTimeout time.Duration) {
	start := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-m.quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	name := t.rec.Name
	snap, err := m.buildSteps(ctx, t, readyTimeout)
	defer m.reapSnapshots() // after the unlock: the template it replaced may be done with
	m.mu.Lock()
	defer m.mu.Unlock()
	defer close(t.done)
	t.rec.BuildSandbox, t.rec.Step = "", ""
	if err != nil {
		t.rec.State, t.rec.Reason = TemplateFailed, err.Error()
		m.log.Error("template build failed", "template", name, "err", err)
	} else {
		t.rec.State, t.rec.Snapshot, t.rec.SizeBytes = TemplateReady, snap.ID, snap.SizeBytes
		t.rec.BuildS = time.Since(start).Seconds()
		m.log.Info("template ready", "template", name, "snapshot", snap.ID, "bytes", snap.SizeBytes, "build_s", t.rec.BuildS)
	}
	if m.templates[name] == t && !m.closed {
		if err := m.db.put(bucketTemplates, name, t.rec); err != nil {
			m.log.Error("persist template", "template", name, "err", err)
		}
	}
}

func (m *Manager) buildSteps(ctx context.Context, t *template, readyTimeout time.Duration) (Snapshot, error) {
	name := t.rec.Name
	spec := CreateSpec{Image: t.rec.Image, Limits: t.rec.Limits, Labels: map[string]string{labelTemplate: name}}
	if m.cfg.Network != nil {
		// An isolated interface: the snapshot gets a virtio-net device,
		// and each sandbox from it a TAP and address of its own.
		spec.Network = &NetworkSpec{}
	}
	sb, err := m.Create(ctx, spec)
	if err != nil {
		return Snapshot{}, fmt.Errorf("boot image %s: %w", t.rec.Image, err)
	}
	m.setBuild(t, sb.ID, StepBoot)
	defer func() {
		if err := m.Delete(context.Background(), sb.ID); err != nil && !errors.Is(err, ErrNotFound) {
			m.log.Warn("remove a template's build sandbox", "template", name, "sandbox", sb.ID, "err", err)
		}
	}()
	run, err := m.lookup(sb.ID)
	if err != nil {
		return Snapshot{}, err
	}
	if t.rec.StartCmd != "" {
		m.setBuild(t, sb.ID, StepStart)
		ac := m.agentFor(run)
		_, err := ac.Start(ctx, agentproto.StartRequest{ID: startExecID, Cmd: "sh", Args: []string{"-c", t.rec.StartCmd}, Log: startLog})
		if err := m.agentDone(run, err); err != nil {
			return Snapshot{}, fmt.Errorf("start command: %w", err)
		}
	}
	if t.rec.ReadyPort != 0 || t.rec.ReadyCmd != "" {
		m.setBuild(t, sb.ID, StepReady)
		rctx, cancel := context.WithTimeout(ctx, readyTimeout)
		defer cancel()
		if t.rec.ReadyPort != 0 {
			if err := m.waitPort(rctx, run, t.rec.ReadyPort, readyTimeout); err != nil {
				return Snapshot{}, err
			}
		}
		if t.rec.ReadyCmd != "" {
			if err := m.waitReady(rctx, run, t.rec.ReadyCmd, readyTimeout); err != nil {
				return Snapshot{}, err
			}
		}
	}
	if spec, _ := m.spec(t.rec.Image); spec.Config != nil && spec.Config.Display != "" {
		// The agent's X connection and its shared memory, opened and
		// touched once here, are in the snapshot: a sandbox's first
		// screenshot does not pay for them (seconds where guest kernel
		// mode is emulated).
		ac := m.agentFor(run)
		if err := m.agentDone(run, ac.Screenshot(ctx, spec.Config.Display, image.Rectangle{}, 1, io.Discard)); err != nil {
			return Snapshot{}, fmt.Errorf("warm the desktop's display %s: %w", spec.Config.Display, err)
		}
	}
	if len(t.rec.Contexts) > 0 {
		m.setBuild(t, sb.ID, StepContexts)
		if err := m.warmContexts(ctx, run, t.rec.Contexts, name == DefaultTemplate); err != nil {
			return Snapshot{}, err
		}
	}
	m.setBuild(t, sb.ID, StepSnapshot)
	run.op.Lock()
	defer run.op.Unlock()
	return m.snapshotLocked(ctx, run, control.SnapshotFull, snapRole{role: RoleTemplate, template: name})
}

// warmContexts starts the default code context of each language in sb,
// and runs a first statement in it, so that what the interpreter loads on
// its first run is in the snapshot too. With bestEffort (the template
// default asks for python whatever its image holds) an interpreter the
// image lacks is skipped.
func (m *Manager) warmContexts(ctx context.Context, sb *sandbox, languages []string, bestEffort bool) error {
	ac := m.agentFor(sb)
	for _, l := range languages {
		t0 := time.Now()
		id := agentproto.DefaultContextFor(l)
		_, err := ac.NewContext(ctx, agentproto.ContextRequest{ID: id, Language: l})
		if err == nil {
			var end agentproto.RunEnd
			end, err = ac.Run(ctx, id, agentproto.RunRequest{Code: warmCode[l]}, nil)
			if err == nil && end.Status != agentproto.RunOK {
				err = fmt.Errorf("its first run ended %s", end.Status)
			}
		}
		if err = m.agentDone(sb, err); err != nil {
			if bestEffort && errors.Is(err, ErrNotFound) {
				m.log.Info("template: no interpreter for a warm context; skipped", "sandbox", sb.id, "language", l, "err", err)
				continue
			}
			return fmt.Errorf("start the %s context: %w", l, err)
		}
		m.log.Info("template: context warm", "sandbox", sb.id, "language", l, "took", time.Since(t0))
	}
	return nil
}

// warmCode is each language's first run in a template: what a typical
// first run would load anyway.
var warmCode = map[string]string{
	agentproto.LanguagePython: "import json, os, sys, math, re, base64, io",
	agentproto.LanguageNode:   "1",
	agentproto.LanguageBash:   "true",
}

// setBuild records a build's sandbox and step.
func (m *Manager) setBuild(t *template, sandboxID, step string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t.rec.BuildSandbox, t.rec.Step = sandboxID, step
	if m.templates[t.rec.Name] == t && !m.closed {
		m.db.put(bucketTemplates, t.rec.Name, t.rec)
	}
	m.log.Info("template build step", "template", t.rec.Name, "step", step, "sandbox", sandboxID)
}

// waitPort waits until a TCP connect to port in sb's guest succeeds,
// through the agent's port relay: no process starts in the guest per try.
func (m *Manager) waitPort(ctx context.Context, sb *sandbox, port int, timeout time.Duration) error {
	var last error
	for tries := 1; ; tries++ {
		t0 := time.Now()
		ac := m.agentFor(sb)
		c, err := ac.ConnectPort(ctx, port)
		if err == nil {
			c.Close()
			m.log.Info("template ready port answers", "sandbox", sb.id, "port", port, "tries", tries)
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("nothing accepted connections on guest port %d within %v (%d tries; last: %v)%s", port, timeout, tries, last, m.startLogTail(sb))
			}
			return ctx.Err()
		case <-time.After(readyPause(time.Since(t0))):
		}
	}
}

// readyPause is how long to wait after a ready check that took took: at
// least twice as long, so that checking (each a trip into the guest, or a
// process start there, which costs seconds on hosts that emulate guest
// kernel mode) takes at most a third of the guest's time from what it is
// getting ready.
func readyPause(took time.Duration) time.Duration {
	return min(max(readyInterval, 2*took), maxReadyInterval)
}

// waitReady runs cmd in sb until it exits 0. On timeout the error holds
// the last run's output and the start command's log.
func (m *Manager) waitReady(ctx context.Context, sb *sandbox, cmd string, timeout time.Duration) error {
	var last string
	for tries := 1; ; tries++ {
		t0 := time.Now()
		var out bytes.Buffer
		w := &limitedBuffer{b: &out, n: 2 << 10}
		ac := m.agentFor(sb)
		res, err := ac.Exec(ctx, agentproto.ExecRequest{Cmd: "sh", Args: []string{"-c", cmd}}, nil, w, w)
		err = m.agentDone(sb, err)
		switch {
		case err == nil && res.ExitCode == 0:
			m.log.Info("template ready command passed", "sandbox", sb.id, "tries", tries)
			return nil
		case err == nil:
			last = fmt.Sprintf("exit status %d", res.ExitCode)
			if res.Signal != "" {
				last = "killed by " + res.Signal
			}
			if o := strings.TrimSpace(out.String()); o != "" {
				last += ": " + o
			}
		case ctx.Err() == nil:
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("ready command %q did not exit 0 within %v (%d tries; last: %s)%s", cmd, timeout, tries, last, m.startLogTail(sb))
			}
			return ctx.Err()
		case <-time.After(readyPause(time.Since(t0))):
		}
	}
}

// startLogTail is the end of the start command's log, for an error.
func (m *Manager) startLogTail(sb *sandbox) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var b bytes.Buffer
	if _, err := m.agentFor(sb).Download(ctx, startLog, &b); err != nil || b.Len() == 0 {
		return ""
	}
	tail := b.Bytes()[max(b.Len()-1024, 0):]
	return fmt.Sprintf("; the start command's output (%s) ends: %s", startLog, strings.TrimSpace(string(tail)))
}

// limitedBuffer keeps the first n bytes written to it.
type limitedBuffer struct {
	b *bytes.Buffer
	n int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.n - l.b.Len(); room > 0 {
		l.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// WaitTemplate waits until template name is no longer building.
func (m *Manager) WaitTemplate(ctx context.Context, name string) (Template, error) {
	m.mu.Lock()
	t, ok := m.templates[name]
	m.mu.Unlock()
	if !ok {
		return Template{}, fmt.Errorf("%w: no template %q (sietch template ls lists them)", ErrNotFound, name)
	}
	select {
	case <-t.done:
	case <-ctx.Done():
		return Template{}, ctx.Err()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.templateView(t), nil
}

// Template returns one template.
func (m *Manager) Template(name string) (Template, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.templates[name]
	if !ok {
		return Template{}, fmt.Errorf("%w: no template %q (sietch template ls lists them)", ErrNotFound, name)
	}
	return m.templateView(t), nil
}

// Templates returns every template by name.
func (m *Manager) Templates() []Template {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Template, 0, len(m.templates))
	for _, t := range m.templates {
		out = append(out, m.templateView(t))
	}
	slices.SortFunc(out, func(a, b Template) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// templateView is the API's view of t; the caller holds m.mu.
func (m *Manager) templateView(t *template) Template {
	v := t.rec.Template
	v.Limits.TimeoutS, v.Limits.OnTimeout = 0, ""
	v.Stale = m.staleLocked(t)
	for _, sb := range m.sandboxes {
		if sb.rec.Template == v.Name && active(sb.rec.State) {
			v.Sandboxes++
		}
	}
	return v
}

// DeleteTemplate removes a template and its snapshot; refused while a
// sandbox runs from it or a snapshot builds on it. A build in progress is
// cancelled by removing its sandbox.
func (m *Manager) DeleteTemplate(ctx context.Context, name string) error {
	m.mu.Lock()
	t, ok := m.templates[name]
	if !ok {
		m.mu.Unlock()
		return fmt.Errorf("%w: no template %q (sietch template ls lists them)", ErrNotFound, name)
	}
	if t.rec.State == TemplateBuilding {
		build := t.rec.BuildSandbox
		m.mu.Unlock()
		if build != "" {
			m.Delete(ctx, build)
		}
		select {
		case <-t.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		m.mu.Lock()
	}
	if m.templates[name] != t {
		m.mu.Unlock()
		return fmt.Errorf("%w: template %s was removed or rebuilt meanwhile", ErrNotFound, name)
	}
	if snap := t.rec.Snapshot; snap != "" {
		if deps := m.dependentsLocked(snap, true); len(deps) > 0 {
			m.mu.Unlock()
			return fmt.Errorf("%w: template %s is needed by %s; remove those first", ErrInUse, name, strings.Join(deps, ", "))
		}
	}
	delete(m.templates, name)
	snap := t.rec.Snapshot
	m.mu.Unlock()
	if err := m.db.delete(bucketTemplates, name); err != nil {
		return err
	}
	if snap != "" {
		if err := m.removeSnapshot(snap); err != nil {
			m.log.Warn("remove a template's snapshot", "template", name, "snapshot", snap, "err", err)
		}
	}
	m.log.Info("template deleted", "template", name)
	return nil
}

// readyTemplate returns the snapshot of template name, waiting for its
// build. The default template is built on first need.
func (m *Manager) readyTemplate(ctx context.Context, name string) (string, error) {
	m.mu.Lock()
	t, ok := m.templates[name]
	m.mu.Unlock()
	m.mu.Lock()
	stale := ok && m.staleLocked(t)
	m.mu.Unlock()
	if name == DefaultTemplate && (!ok || t.rec.State == TemplateFailed || stale) {
		img, err := m.defaultTemplateImage()
		if err != nil {
			return "", err
		}
		if stale {
			m.log.Info("the default template's image changed since its build; building it again", "image", img)
		}
		t, err = m.startBuildOver(TemplateSpec{Name: DefaultTemplate, Image: img, Contexts: m.defaultContexts(img)}, true)
		if errors.Is(err, ErrWrongState) { // another create started it meanwhile
			m.mu.Lock()
			t, ok = m.templates[name]
			m.mu.Unlock()
		} else if err != nil {
			return "", fmt.Errorf("build the default template: %w", err)
		}
	} else if !ok {
		return "", fmt.Errorf("%w: no template %q (sietch template ls lists them; sietch template build makes one)", ErrNotFound, name)
	}
	select {
	case <-t.done:
	case <-ctx.Done():
		return "", fmt.Errorf("waiting for template %s to build: %w", name, ctx.Err())
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	switch t.rec.State {
	case TemplateReady:
		return t.rec.Snapshot, nil
	case TemplateFailed:
		return "", fmt.Errorf("%w: template %s failed to build: %s", ErrWrongState, name, t.rec.Reason)
	}
	return "", fmt.Errorf("%w: template %s is %s", ErrWrongState, name, t.rec.State)
}

// defaultTemplateImage is the image the default template is built from:
// "default", else the only Linux image.
func (m *Manager) defaultTemplateImage() (string, error) {
	m.imgMu.RLock()
	defer m.imgMu.RUnlock()
	if spec, ok := m.specs["default"]; ok {
		return spec.Name, nil
	}
	var linux []string
	for name, spec := range m.specs {
		if spec.Kind == KindLinux {
			linux = append(linux, name)
		}
	}
	if len(linux) == 1 {
		return linux[0], nil
	}
	if len(m.specs) == 0 {
		return "", fmt.Errorf("%w: sietchd has no images to build the default template from: build the default image (make kernel initramfs image) and restart sietchd, or start it with --image", ErrNotFound)
	}
	return "", fmt.Errorf("%w: no image named default to build the default template from; name a template or an image to create from", ErrInvalid)
}

// defaultContexts are the contexts the template default warms on image
// img: python's, on a Linux image (skipped if it has no python3).
func (m *Manager) defaultContexts(img string) []string {
	if spec, _ := m.spec(img); spec.Kind != KindLinux {
		return nil
	}
	return []string{agentproto.LanguagePython}
}

// checkName accepts names made of letters, digits, '.', '_' and '-'.
func checkName(what, name string) error {
	ok := name != "" && len(name) <= 64
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			ok = false
		}
	}
	if !ok || name[0] == '.' || name[0] == '-' {
		return fmt.Errorf("%w: %s name %q: use 1 to 64 letters, digits, '.', '_' or '-', not starting with '.' or '-'", ErrInvalid, what, name)
	}
	return nil
}

// staleLocked reports whether ready template t's image files changed
// since its build; the caller holds m.mu.
func (m *Manager) staleLocked(t *template) bool {
	if t.rec.State != TemplateReady || t.rec.ImageID == "" {
		return false
	}
	spec, ok := m.spec(t.rec.Image)
	return !ok || imageID(spec) != t.rec.ImageID
}

// imageID identifies the files of an image as they are now: paths, sizes,
// inodes and change times of its kernel, initramfs and root disk.
func imageID(spec ImageSpec) string {
	h := sha256.New()
	for _, p := range []string{spec.Kernel, spec.Initrd, spec.RootFS} {
		fmt.Fprintf(h, "%s\x00", p)
		var st unix.Stat_t
		if p != "" && unix.Stat(p, &st) == nil {
			fmt.Fprintf(h, "%d %d %d %d\x00", st.Size, st.Ino, st.Mtim.Nano(), st.Ctim.Nano())
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// reapSnapshots removes the snapshots sietchd took for itself that nothing
// needs any more: those of replaced templates, and the suspend snapshots
// of sandboxes that were deleted or suspended anew while something (a diff)
// still built on them.
func (m *Manager) reapSnapshots() {
	m.mu.Lock()
	var gone []*snapRecord
	for id, s := range m.snapshots {
		switch s.Role {
		case RoleTemplate:
			if t, ok := m.templates[s.Template]; ok && (t.rec.Snapshot == id || t.rec.State == TemplateBuilding) {
				continue
			}
		case RoleSuspend:
			if sb, ok := m.sandboxes[s.SandboxID]; ok && (sb.rec.Suspended == id || sb.suspendTo == id) {
				continue
			}
		default:
			continue
		}
		if len(m.dependentsLocked(id, false)) == 0 {
			gone = append(gone, m.forgetSnapshotLocked(id))
		}
	}
	m.mu.Unlock()
	for _, s := range gone {
		if err := m.removeSnapshotFiles(s); err != nil {
			m.log.Warn("remove a snapshot nothing needs", "snapshot", s.ID, "role", s.Role, "err", err)
		}
	}
}

// imageStartCmd is what a built image runs, as a template's start command
// (sh -c): its ENTRYPOINT followed by its CMD, as docker run would; "" for
// an image with neither, or a configured image.
func imageStartCmd(c *ImageConfig) string {
	if c == nil || len(c.Entrypoint)+len(c.Cmd) == 0 {
		return ""
	}
	return "exec " + shellJoin(append(slices.Clone(c.Entrypoint), c.Cmd...))
}

// shellJoin quotes words for sh -c.
func shellJoin(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}
