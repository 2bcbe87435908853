package api

import (
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/sietch-vm/sietch/api/model"
	"github.com/sietch-vm/sietch/sandbox"
)

func (e *env) buildTemplate(req model.TemplateRequest) model.Template {
	e.t.Helper()
	var t model.Template
	e.call("POST", "/v1/templates", req, http.StatusAccepted, &t)
	if t.State != model.TemplateBuilding || t.Step != model.StepBoot {
		e.t.Errorf("a new build is %s at step %q; want building at boot", t.State, t.Step)
	}
	e.call("GET", "/v1/templates/"+req.Name+"?wait=true", nil, http.StatusOK, &t)
	return t
}

func (e *env) snapshotByID(id string) (model.Snapshot, bool) {
	var all struct{ Snapshots []model.Snapshot }
	e.call("GET", "/v1/snapshots", nil, http.StatusOK, &all)
	for _, s := range all.Snapshots {
		if s.ID == id {
			return s, true
		}
	}
	return model.Snapshot{}, false
}

func wantInUse(t *testing.T, st int, b []byte, names ...string) {
	t.Helper()
	if st != http.StatusConflict {
		t.Errorf("status %d, want 409: %s", st, b)
		return
	}
	e := apiError(t, b)
	if e.Code != model.CodeInUse {
		t.Errorf("code %q, want in_use: %s", e.Code, e.Message)
	}
	for _, n := range names {
		if !strings.Contains(e.Message, n) {
			t.Errorf("%q does not name %s", e.Message, n)
		}
	}
}

// A template is built once and every create resumes it; what depends on
// its snapshot keeps it; pause to disk frees the vmm and survives a
// sietchd restart; leftovers of a crash are collected.
func TestTemplateLifecycle(t *testing.T) {
	e := newEnv(t, nil)
	tp := e.buildTemplate(model.TemplateRequest{Name: "ctr", Image: "counter"})
	if tp.State != model.TemplateReady || tp.Snapshot == "" || tp.SizeBytes == 0 || tp.Limits.MemoryMiB != 64 {
		t.Fatalf("built template: %+v", tp)
	}
	if sbs := e.list(); len(sbs) != 0 {
		t.Errorf("the build's sandbox is left: %+v", sbs)
	}
	a := e.create(model.CreateRequest{Template: "ctr", Labels: map[string]string{"n": "a"}})
	b := e.create(model.CreateRequest{Template: "ctr"})
	for _, sb := range []model.Sandbox{a, b} {
		if sb.State != model.StateRunning || sb.Template != "ctr" || sb.Snapshot != tp.Snapshot || sb.Limits.MemoryMiB != 64 {
			t.Errorf("sandbox from the template: %+v", sb)
		}
	}
	e.call("GET", "/v1/templates/ctr", nil, http.StatusOK, &tp)
	if tp.Sandboxes != 2 {
		t.Errorf("template counts %d sandboxes; want 2", tp.Sandboxes)
	}
	st, body := e.do("DELETE", "/v1/templates/ctr", nil)
	wantInUse(t, st, body, a.ID, b.ID)
	st, body = e.do("DELETE", "/v1/snapshots/"+tp.Snapshot, nil)
	wantInUse(t, st, body, "template ctr")

	// A sandbox from a template builds its diffs on the template's snapshot.
	var diff model.Snapshot
	e.call("POST", "/v1/sandboxes/"+a.ID+"/snapshots", model.SnapshotRequest{Kind: "diff"}, http.StatusCreated, &diff)
	if diff.Base != tp.Snapshot {
		t.Errorf("diff of a sandbox from a template has base %q; want the template's %s", diff.Base, tp.Snapshot)
	}
	e.call("DELETE", "/v1/sandboxes/"+a.ID, nil, http.StatusNoContent, nil)
	st, body = e.do("DELETE", "/v1/templates/ctr", nil)
	wantInUse(t, st, body, b.ID, diff.ID)
	e.call("DELETE", "/v1/snapshots/"+diff.ID, nil, http.StatusNoContent, nil)
	if _, ok := e.snapshotByID(diff.ID); ok {
		t.Errorf("snapshot %s is still listed after its delete", diff.ID)
	}
	e.call("DELETE", "/v1/snapshots/"+diff.ID, nil, http.StatusNotFound, nil)

	// Pause to disk: the vmm ends, the state stays, a restart keeps it.
	var sb model.Sandbox
	e.call("POST", "/v1/sandboxes/"+b.ID+"/pause", model.PauseRequest{ToDisk: true}, http.StatusOK, &sb)
	if sb.State != model.StateSuspended || sb.VMMPID != 0 {
		t.Errorf("paused to disk: %+v", sb)
	}
	if err := syscall.Kill(b.VMMPID, 0); err == nil {
		t.Errorf("the vmm %d of the suspended sandbox still runs", b.VMMPID)
	}
	var suspendSnap model.Snapshot
	var all struct{ Snapshots []model.Snapshot }
	e.call("GET", "/v1/snapshots", nil, http.StatusOK, &all)
	for _, s := range all.Snapshots {
		if s.Role == model.RoleSuspend && s.SandboxID == b.ID {
			suspendSnap = s
		}
	}
	if !slices.Contains(suspendSnap.Dependents, "sandbox "+b.ID+" (suspended in it)") {
		t.Errorf("suspend snapshot %+v does not name its sandbox", suspendSnap)
	}
	st, body = e.do("DELETE", "/v1/snapshots/"+suspendSnap.ID, nil)
	wantInUse(t, st, body, b.ID)
	// Leftovers of a crash: directories no record names.
	junk := []string{filepath.Join(e.cfg.StateDir, "snapshots", "snap-0123456789"), filepath.Join(e.cfg.StateDir, "sandboxes", "sb-0123456789")}
	for _, d := range junk {
		os.MkdirAll(d, 0o700)
		os.WriteFile(filepath.Join(d, "memory"), []byte("half written"), 0o600)
	}
	e.restart()
	for _, d := range junk {
		if _, err := os.Stat(d); err == nil {
			t.Errorf("leftover %s survived the restart", d)
		}
	}
	if got := e.get(b.ID); got.State != model.StateSuspended {
		t.Errorf("after a restart the suspended sandbox is %s (%s)", got.State, got.Reason)
	}
	e.call("POST", "/v1/sandboxes/"+b.ID+"/resume", nil, http.StatusOK, &sb)
	if sb.State != model.StateRunning || sb.VMMPID == 0 || sb.VMMPID == b.VMMPID {
		t.Errorf("resumed from disk: %+v", sb)
	}
	waitConsole(t, e, b.ID, "counter")
	e.call("DELETE", "/v1/sandboxes/"+b.ID, nil, http.StatusNoContent, nil)
	if _, ok := e.snapshotByID(suspendSnap.ID); ok {
		t.Errorf("the deleted sandbox's suspend snapshot %s is left", suspendSnap.ID)
	}
	e.call("DELETE", "/v1/templates/ctr", nil, http.StatusNoContent, nil)
	if _, ok := e.snapshotByID(tp.Snapshot); ok {
		t.Errorf("the removed template's snapshot %s is left", tp.Snapshot)
	}
	if ents, _ := os.ReadDir(filepath.Join(e.cfg.StateDir, "snapshots")); len(ents) != 0 {
		t.Errorf("snapshot directories left: %v", ents)
	}
	e.call("GET", "/v1/templates/ctr", nil, http.StatusNotFound, nil)
}

// A create that names nothing resumes the template default, which is
// built from the image default on first need.
func TestDefaultTemplate(t *testing.T) {
	kernel := filepath.Join(t.TempDir(), "counter.elf")
	elf, err := os.ReadFile(counterELF)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(kernel, elf, 0o644)
	e := newEnv(t, func(c *sandbox.Config) { c.Images[0].Name, c.Images[0].Kernel = "default", kernel })
	a := e.create(model.CreateRequest{})
	if a.Template != sandbox.DefaultTemplate || a.State != model.StateRunning {
		t.Fatalf("create with nothing named: %+v", a)
	}
	b := e.create(model.CreateRequest{Limits: model.Limits{TimeoutS: 60}})
	if b.Snapshot != a.Snapshot {
		t.Errorf("the second create resumed %s, the first %s: the template was built twice", b.Snapshot, a.Snapshot)
	}
	var ts struct{ Templates []model.Template }
	e.call("GET", "/v1/templates", nil, http.StatusOK, &ts)
	if len(ts.Templates) != 1 || ts.Templates[0].Name != "default" || ts.Templates[0].Sandboxes != 2 {
		t.Errorf("templates: %+v", ts.Templates)
	}
	// A new build of the image makes the template stale: the next create
	// builds it again; the old snapshot goes when its sandboxes do.
	os.WriteFile(kernel+".new", elf, 0o644)
	os.Rename(kernel+".new", kernel)
	e.call("GET", "/v1/templates", nil, http.StatusOK, &ts)
	if !ts.Templates[0].Stale {
		t.Errorf("template after its image changed: %+v; want stale", ts.Templates[0])
	}
	c := e.create(model.CreateRequest{})
	if c.Snapshot == a.Snapshot {
		t.Errorf("create after the image changed resumed the stale snapshot %s", c.Snapshot)
	}
	if _, ok := e.snapshotByID(a.Snapshot); !ok {
		t.Errorf("the stale template's snapshot went while %s and %s run from it", a.ID, b.ID)
	}
	e.call("DELETE", "/v1/sandboxes/"+a.ID, nil, http.StatusNoContent, nil)
	e.call("DELETE", "/v1/sandboxes/"+b.ID, nil, http.StatusNoContent, nil)
	if _, ok := e.snapshotByID(a.Snapshot); ok {
		t.Errorf("the stale template's snapshot %s is left after its sandboxes went", a.Snapshot)
	}
	e.call("DELETE", "/v1/sandboxes/"+c.ID, nil, http.StatusNoContent, nil)
}

func TestTemplateBadRequests(t *testing.T) {
	e := newEnv(t, nil)
	for _, tc := range []struct {
		body string
		st   int
		code string
	}{
		{`{"name":""}`, 400, model.CodeBadRequest},
		{`{"name":"../x","image":"counter"}`, 400, model.CodeBadRequest},
		{`{"name":"x","image":"nope"}`, 404, model.CodeNotFound},
		{`{"name":"x","image":"counter","start_cmd":"sleep 1"}`, 400, model.CodeBadRequest},
		{`{"name":"x","image":"counter","ready_timeout_s":-1}`, 400, model.CodeBadRequest},
		{`{"name":"x","image":"counter","limits":{"timeout_s":5}}`, 400, model.CodeBadRequest},
		{`{"name":"x","image":"counter","colour":"red"}`, 400, model.CodeUnknownField},
	} {
		st, b := e.do("POST", "/v1/templates", tc.body)
		if st != tc.st || apiError(t, b).Code != tc.code {
			t.Errorf("%s: %d %s; want %d %s", tc.body, st, b, tc.st, tc.code)
		}
	}
	st, b := e.do("POST", "/v1/sandboxes", model.CreateRequest{Template: "nope"})
	if st != http.StatusNotFound {
		t.Errorf("create from a missing template: %d %s", st, b)
	}
	st, b = e.do("POST", "/v1/sandboxes", model.CreateRequest{Template: "x", Image: "counter"})
	if st != http.StatusBadRequest {
		t.Errorf("create from a template and an image: %d %s", st, b)
	}
	// Without an image named default there is nothing to build the default template from.
	st, b = e.do("POST", "/v1/sandboxes", model.CreateRequest{})
	if st != http.StatusBadRequest || !strings.Contains(apiError(t, b).Message, "default") {
		t.Errorf("create with nothing named and no default image: %d %s", st, b)
	}
}

// on_timeout pause suspends the sandbox when its lifetime ends; resume
// brings it back.
func TestOnTimeoutPause(t *testing.T) {
	e := newEnv(t, nil)
	sb := e.create(model.CreateRequest{Image: "counter", Limits: model.Limits{TimeoutS: 1, OnTimeout: "pause"}})
	got := e.waitFor(sb.ID, "suspend at the end of its lifetime", func(s model.Sandbox) bool { return s.State == model.StateSuspended })
	if got.VMMPID != 0 {
		t.Errorf("suspended with a vmm: %+v", got)
	}
	e.call("POST", "/v1/sandboxes/"+sb.ID+"/resume", nil, http.StatusOK, &got)
	if got.State != model.StateRunning {
		t.Errorf("resumed: %+v", got)
	}
	// Its lifetime starts again: it is suspended again a second later.
	e.waitFor(sb.ID, "suspend again", func(s model.Sandbox) bool { return s.State == model.StateSuspended })
	e.call("DELETE", "/v1/sandboxes/"+sb.ID, nil, http.StatusNoContent, nil)
}

func (e *env) list() []model.Sandbox {
	e.t.Helper()
	var out struct{ Sandboxes []model.Sandbox }
	e.call("GET", "/v1/sandboxes", nil, http.StatusOK, &out)
	return out.Sandboxes
}
