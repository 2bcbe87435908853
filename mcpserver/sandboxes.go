package mcpserver

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/sietch-vm/sietch/api/model"
)

// Sandbox is a sandbox as the tools report it.
type Sandbox struct {
	ID        string            `json:"id" jsonschema:"the sandbox id: pass it to the other tools"`
	State     string            `json:"state" jsonschema:"creating, running, paused, snapshotting, suspended, stopped or failed"`
	Reason    string            `json:"reason,omitempty" jsonschema:"why it failed or stopped"`
	Template  string            `json:"template,omitempty" jsonschema:"the template it was created from"`
	Image     string            `json:"image,omitempty" jsonschema:"its root filesystem image"`
	Snapshot  string            `json:"snapshot,omitempty" jsonschema:"the snapshot it was restored from"`
	CPUs      int               `json:"cpus" jsonschema:"vCPUs"`
	MemoryMiB int               `json:"memory_mib" jsonschema:"guest memory in MiB"`
	TimeoutS  int               `json:"timeout_s,omitempty" jsonschema:"its lifetime in seconds from creation (0: none)"`
	Labels    map[string]string `json:"labels,omitempty" jsonschema:"its labels"`
	CreatedAt string            `json:"created_at" jsonschema:"when it was created (RFC 3339)"`
	Agent     bool              `json:"agent" jsonschema:"its guest agent answers: exec, run_code and the file tools work"`
	Session   bool              `json:"session" jsonschema:"this MCP session created it and deletes it when the session ends"`
}

func (s *Server) sandbox(ss *mcp.ServerSession, sb model.Sandbox) Sandbox {
	return Sandbox{
		ID: sb.ID, State: string(sb.State), Reason: sb.Reason, Template: sb.Template, Image: sb.Image, Snapshot: sb.Snapshot,
		CPUs: sb.Limits.CPUs, MemoryMiB: sb.Limits.MemoryMiB, TimeoutS: sb.Limits.TimeoutS, Labels: sb.Labels,
		CreatedAt: sb.CreatedAt.UTC().Format("2006-01-02T15:04:05Z"), Agent: sb.Agent, Session: s.sessions.owns(ss, sb.ID),
	}
}

// adopt tracks a sandbox this session made unless it is to be kept.
func (s *Server) adopt(ss *mcp.ServerSession, id string, keep bool) {
	if !keep && ss != nil {
		s.sessions.add(ss, id)
	}
}

// Shape is the resources and lifetime of a new sandbox.
type Shape struct {
	CPUs      int               `json:"cpus,omitempty" jsonschema:"vCPUs (default: the template's or the server's)"`
	MemoryMiB int               `json:"memory_mib,omitempty" jsonschema:"guest memory in MiB (default: the template's or the server's)"`
	TimeoutS  int               `json:"timeout_s,omitempty" jsonschema:"stop the sandbox this many seconds after creation (default: no limit; it still goes when this session ends unless keep is set)"`
	Env       map[string]string `json:"env,omitempty" jsonschema:"environment variables set for every command and code run in the sandbox"`
	Labels    map[string]string `json:"labels,omitempty" jsonschema:"labels to find the sandbox by (shown by list_sandboxes; in the guest at /run/sietch/labels.json)"`
	Keep      bool              `json:"keep,omitempty" jsonschema:"keep the sandbox running after this MCP session ends (default false: it is deleted then)"`
}

func (sh Shape) request() model.CreateRequest {
	return model.CreateRequest{
		Limits: model.Limits{CPUs: sh.CPUs, MemoryMiB: sh.MemoryMiB, TimeoutS: sh.TimeoutS},
		Env:    sh.Env, Labels: sh.Labels,
	}
}

// CreateInput is create_sandbox's input.
type CreateInput struct {
	Template string `json:"template,omitempty" jsonschema:"template to start from: a warm resume in milliseconds with its services already running (default: the template named default; list_templates shows them)"`
	Image    string `json:"image,omitempty" jsonschema:"image to cold boot instead of a template (slow: a whole boot); give template or image, not both"`
	Shape
}

// SandboxOutput is the output of tools that make or describe one sandbox.
type SandboxOutput struct {
	Sandbox Sandbox `json:"sandbox"`
}

// SandboxesOutput is the output of tools that make or list sandboxes.
type SandboxesOutput struct {
	Sandboxes []Sandbox `json:"sandboxes"`
}

// SandboxIDInput names one sandbox.
type SandboxIDInput struct {
	SandboxID string `json:"sandbox_id" jsonschema:"the sandbox's id (from create_sandbox or list_sandboxes)"`
}

// DeleteOutput is delete_sandbox's output.
type DeleteOutput struct {
	Deleted string `json:"deleted" jsonschema:"the id of the sandbox deleted"`
}

// SnapshotInput is snapshot's input.
type SnapshotInput struct {
	SandboxID string `json:"sandbox_id" jsonschema:"the sandbox to checkpoint"`
	Kind      string `json:"kind,omitempty" jsonschema:"full (default) or diff (only memory written since the sandbox's last snapshot; smaller, needs its base)"`
}

// Snapshot is a checkpoint as the tools report it.
type Snapshot struct {
	ID        string `json:"id" jsonschema:"the snapshot id: pass it to restore or fork"`
	SandboxID string `json:"sandbox_id" jsonschema:"the sandbox it was taken of"`
	Kind      string `json:"kind" jsonschema:"full or diff"`
	Base      string `json:"base,omitempty" jsonschema:"a diff's base snapshot"`
	SizeBytes int64  `json:"size_bytes" jsonschema:"bytes on disk"`
}

// SnapshotOutput is snapshot's output.
type SnapshotOutput struct {
	Snapshot Snapshot `json:"snapshot"`
}

// RestoreInput is restore's input.
type RestoreInput struct {
	SnapshotID string `json:"snapshot_id" jsonschema:"the snapshot to start from (from the snapshot tool)"`
	Shape
}

// ForkInput is fork's input.
type ForkInput struct {
	SandboxID  string `json:"sandbox_id" jsonschema:"the sandbox to copy"`
	Count      int    `json:"count,omitempty" jsonschema:"how many copies (default 1)"`
	SnapshotID string `json:"snapshot_id,omitempty" jsonschema:"copy this earlier snapshot of the sandbox instead of its state now"`
	Keep       bool   `json:"keep,omitempty" jsonschema:"keep the copies after this MCP session ends (default false: they are deleted then)"`
}

// ListInput is list_sandboxes's input.
type ListInput struct {
	Label map[string]string `json:"label,omitempty" jsonschema:"only sandboxes with all of these labels"`
}

// Template is a template as the tools report it.
type Template struct {
	Name      string   `json:"name" jsonschema:"pass it to create_sandbox"`
	Image     string   `json:"image" jsonschema:"the image it was built from"`
	State     string   `json:"state" jsonschema:"building, ready or failed"`
	StartCmd  string   `json:"start_cmd,omitempty" jsonschema:"a command already running in its sandboxes"`
	Contexts  []string `json:"contexts,omitempty" jsonschema:"languages whose code context is warm in its sandboxes"`
	CPUs      int      `json:"cpus,omitempty" jsonschema:"vCPUs of its sandboxes"`
	MemoryMiB int      `json:"memory_mib,omitempty" jsonschema:"memory of its sandboxes in MiB"`
}

// TemplatesOutput is list_templates's output.
type TemplatesOutput struct {
	Templates []Template `json:"templates"`
	Images    []string   `json:"images" jsonschema:"images create_sandbox can cold boot"`
}

// EmptyInput is the input of tools that take none.
type EmptyInput struct{}

func (s *Server) addSandboxTools() {
	mcp.AddTool(s.mcp, &mcp.Tool{
		Name:  "create_sandbox",
		Title: "Create a sandbox",
		Description: "Start a new sandbox: an isolated Linux microVM (Debian with python3, node where the image has it, git, curl) in which exec, run_code and the file tools work. " +
			"By default it resumes the template \"default\" in milliseconds. Returns the sandbox id the other tools take. " +
			"The sandbox is deleted when this MCP session ends unless keep is true.",
		Annotations: &mcp.ToolAnnotations{Title: "Create a sandbox", DestructiveHint: ptr(false), OpenWorldHint: ptr(false)},
	}, s.createSandbox)
	mcp.AddTool(s.mcp, &mcp.Tool{
		Name:        "list_sandboxes",
		Title:       "List sandboxes",
		Description: "List the sandboxes sietchd runs (all of them, not only this session's), with their state, template, resources and labels; session=true marks those this session created and will delete.",
		Annotations: &mcp.ToolAnnotations{Title: "List sandboxes", ReadOnlyHint: true, OpenWorldHint: ptr(false)},
	}, s.listSandboxes)
	mcp.AddTool(s.mcp, &mcp.Tool{
		Name:        "list_templates",
		Title:       "List templates and images",
		Description: "List the templates create_sandbox can start from (warm, in milliseconds) and the images it can cold boot.",
		Annotations: &mcp.ToolAnnotations{Title: "List templates and images", ReadOnlyHint: true, OpenWorldHint: ptr(false)},
	}, s.listTemplates)
	mcp.AddTool(s.mcp, &mcp.Tool{
		Name:        "delete_sandbox",
		Title:       "Delete a sandbox",
		Description: "Stop a sandbox and delete it with everything in it (its snapshots stay). Use it when done with a sandbox, or to remove one created with keep=true.",
		Annotations: &mcp.ToolAnnotations{Title: "Delete a sandbox", DestructiveHint: ptr(true), IdempotentHint: true, OpenWorldHint: ptr(false)},
	}, s.deleteSandbox)
	mcp.AddTool(s.mcp, &mcp.Tool{
		Name:  "snapshot",
		Title: "Snapshot a sandbox",
		Description: "Checkpoint a running sandbox: its memory, processes and files at this moment, while it runs on. " +
			"Returns a snapshot id; restore starts new sandboxes from it (e.g. to try something risky and go back), fork copies the sandbox.",
		Annotations: &mcp.ToolAnnotations{Title: "Snapshot a sandbox", DestructiveHint: ptr(false), OpenWorldHint: ptr(false)},
		InputSchema: schemaFor[SnapshotInput](map[string][]any{"kind": {"full", "diff"}}),
	}, s.snapshot)
	mcp.AddTool(s.mcp, &mcp.Tool{
		Name:  "restore",
		Title: "Restore a snapshot",
		Description: "Start a new sandbox from a snapshot: it has the memory, processes and files the snapshotted sandbox had then, with a new id, hostname and clock. " +
			"The original sandbox is not touched. Deleted when this session ends unless keep is true.",
		Annotations: &mcp.ToolAnnotations{Title: "Restore a snapshot", DestructiveHint: ptr(false), OpenWorldHint: ptr(false)},
	}, s.restore)
	mcp.AddTool(s.mcp, &mcp.Tool{
		Name:  "fork",
		Title: "Fork a sandbox",
		Description: "Make count copies of a running sandbox as it is now (or as it was at one of its snapshots): each a new sandbox with its own id, for trying several approaches in parallel. " +
			"Deleted when this session ends unless keep is true.",
		Annotations: &mcp.ToolAnnotations{Title: "Fork a sandbox", DestructiveHint: ptr(false), OpenWorldHint: ptr(false)},
	}, s.fork)
}

func (s *Server) createSandbox(ctx context.Context, req *mcp.CallToolRequest, in CreateInput) (*mcp.CallToolResult, SandboxOutput, error) {
	if in.Template != "" && in.Image != "" {
		return nil, SandboxOutput{}, fmt.Errorf("give template or image, not both")
	}
	creq := in.request()
	creq.Template, creq.Image = in.Template, in.Image
	sb, err := s.api.Create(ctx, creq)
	if err != nil {
		return nil, SandboxOutput{}, apiError("create sandbox", err)
	}
	s.adopt(req.Session, sb.ID, in.Keep)
	out := SandboxOutput{Sandbox: s.sandbox(req.Session, sb)}
	return text(fmt.Sprintf("Created sandbox %s (%s).%s", sb.ID, describe(out.Sandbox), keepNote(in.Keep))), out, nil
}

func (s *Server) listSandboxes(ctx context.Context, req *mcp.CallToolRequest, in ListInput) (*mcp.CallToolResult, SandboxesOutput, error) {
	all, err := s.api.List(ctx)
	if err != nil {
		return nil, SandboxesOutput{}, apiError("list sandboxes", err)
	}
	out := SandboxesOutput{Sandboxes: []Sandbox{}}
	var lines []string
next:
	for _, sb := range all {
		for k, v := range in.Label {
			if sb.Labels[k] != v {
				continue next
			}
		}
		x := s.sandbox(req.Session, sb)
		out.Sandboxes = append(out.Sandboxes, x)
		lines = append(lines, x.ID+": "+describe(x))
	}
	if len(lines) == 0 {
		return text("No sandboxes."), out, nil
	}
	return text(strings.Join(lines, "\n")), out, nil
}

func (s *Server) listTemplates(ctx context.Context, _ *mcp.CallToolRequest, _ EmptyInput) (*mcp.CallToolResult, TemplatesOutput, error) {
	temps, err := s.api.Templates(ctx)
	if err != nil {
		return nil, TemplatesOutput{}, apiError("list templates", err)
	}
	images, err := s.api.Images(ctx)
	if err != nil {
		return nil, TemplatesOutput{}, apiError("list images", err)
	}
	out := TemplatesOutput{Templates: []Template{}, Images: []string{}}
	for _, t := range temps {
		out.Templates = append(out.Templates, Template{Name: t.Name, Image: t.Image, State: string(t.State), StartCmd: t.StartCmd,
			Contexts: t.Contexts, CPUs: t.Limits.CPUs, MemoryMiB: t.Limits.MemoryMiB})
	}
	for _, im := range images {
		out.Images = append(out.Images, im.Name)
	}
	sort.Strings(out.Images)
	return nil, out, nil
}

func (s *Server) deleteSandbox(ctx context.Context, _ *mcp.CallToolRequest, in SandboxIDInput) (*mcp.CallToolResult, DeleteOutput, error) {
	if err := s.api.Delete(ctx, in.SandboxID); err != nil {
		return nil, DeleteOutput{}, apiError("delete sandbox "+in.SandboxID, err)
	}
	s.sessions.forget(in.SandboxID)
	return text("Deleted sandbox " + in.SandboxID + "."), DeleteOutput{Deleted: in.SandboxID}, nil
}

func (s *Server) snapshot(ctx context.Context, _ *mcp.CallToolRequest, in SnapshotInput) (*mcp.CallToolResult, SnapshotOutput, error) {
	snap, err := s.api.Snapshot(ctx, in.SandboxID, model.SnapshotRequest{Kind: in.Kind})
	if err != nil {
		return nil, SnapshotOutput{}, apiError("snapshot sandbox "+in.SandboxID, err)
	}
	out := SnapshotOutput{Snapshot: Snapshot{ID: snap.ID, SandboxID: snap.SandboxID, Kind: snap.Kind, Base: snap.Base, SizeBytes: snap.SizeBytes}}
	return text(fmt.Sprintf("Took %s snapshot %s of sandbox %s (%d MiB on disk). restore with snapshot_id %q starts a sandbox from it.",
		snap.Kind, snap.ID, snap.SandboxID, snap.SizeBytes>>20, snap.ID)), out, nil
}

func (s *Server) restore(ctx context.Context, req *mcp.CallToolRequest, in RestoreInput) (*mcp.CallToolResult, SandboxOutput, error) {
	creq := in.request()
	creq.Snapshot = in.SnapshotID
	sb, err := s.api.Create(ctx, creq)
	if err != nil {
		return nil, SandboxOutput{}, apiError("restore snapshot "+in.SnapshotID, err)
	}
	s.adopt(req.Session, sb.ID, in.Keep)
	out := SandboxOutput{Sandbox: s.sandbox(req.Session, sb)}
	return text(fmt.Sprintf("Restored snapshot %s as sandbox %s (%s).%s", in.SnapshotID, sb.ID, describe(out.Sandbox), keepNote(in.Keep))), out, nil
}

func (s *Server) fork(ctx context.Context, req *mcp.CallToolRequest, in ForkInput) (*mcp.CallToolResult, SandboxesOutput, error) {
	if in.Count == 0 {
		in.Count = 1
	}
	if in.Count < 0 {
		return nil, SandboxesOutput{}, fmt.Errorf("count %d: want 1 or more", in.Count)
	}
	sbs, err := s.api.Fork(ctx, in.SandboxID, model.ForkRequest{Snapshot: in.SnapshotID, Count: in.Count})
	if err != nil {
		return nil, SandboxesOutput{}, apiError("fork sandbox "+in.SandboxID, err)
	}
	out := SandboxesOutput{Sandboxes: []Sandbox{}}
	var ids []string
	for _, sb := range sbs {
		s.adopt(req.Session, sb.ID, in.Keep)
		out.Sandboxes = append(out.Sandboxes, s.sandbox(req.Session, sb))
		ids = append(ids, sb.ID)
	}
	return text(fmt.Sprintf("Forked sandbox %s into %d new sandboxes: %s.%s", in.SandboxID, len(ids), strings.Join(ids, ", "), keepNote(in.Keep))), out, nil
}

// describe is one sandbox in a line.
func describe(sb Sandbox) string {
	parts := []string{sb.State}
	switch {
	case sb.Template != "":
		parts = append(parts, "template "+sb.Template)
	case sb.Snapshot != "":
		parts = append(parts, "snapshot "+sb.Snapshot)
	case sb.Image != "":
		parts = append(parts, "image "+sb.Image)
	}
	parts = append(parts, fmt.Sprintf("%d vCPU, %d MiB", sb.CPUs, sb.MemoryMiB))
	if !sb.Agent && sb.State == string(model.StateRunning) {
		parts = append(parts, "no guest agent: exec, run_code and files will not work")
	}
	if sb.Reason != "" {
		parts = append(parts, sb.Reason)
	}
	if sb.Session {
		parts = append(parts, "deleted when this session ends")
	}
	return strings.Join(parts, ", ")
}

func keepNote(keep bool) string {
	if keep {
		return " It is kept after this session ends: delete it with delete_sandbox when done."
	}
	return ""
}

// text is a result whose content is s (the structured output goes with it).
func text(s string) *mcp.CallToolResult {
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: s}}}
}
