package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/sietch-vm/sietch/api/model"
)

// Create starts a sandbox from a template, an image or a snapshot (at
// most one of req.Template, req.Image, req.Snapshot; none: the template
// "default") and returns it running, its guest agent answering.
func (c *Client) Create(ctx context.Context, req model.CreateRequest) (model.Sandbox, error) {
	var sb model.Sandbox
	err := c.call(ctx, http.MethodPost, "/v1/sandboxes", req, &sb, http.StatusCreated)
	return sb, err
}

// List returns every sandbox sietchd knows, in any state.
func (c *Client) List(ctx context.Context) ([]model.Sandbox, error) {
	var out struct {
		Sandboxes []model.Sandbox `json:"sandboxes"`
	}
	err := c.call(ctx, http.MethodGet, "/v1/sandboxes", nil, &out, http.StatusOK)
	return out.Sandboxes, err
}

// Get returns one sandbox.
func (c *Client) Get(ctx context.Context, id string) (model.Sandbox, error) {
	var sb model.Sandbox
	err := c.call(ctx, http.MethodGet, sandboxPath(id, ""), nil, &sb, http.StatusOK)
	return sb, err
}

// Delete stops a sandbox and removes it.
func (c *Client) Delete(ctx context.Context, id string) error {
	return c.call(ctx, http.MethodDelete, sandboxPath(id, ""), nil, nil, http.StatusNoContent)
}

// Pause stops a running sandbox's vCPUs.
func (c *Client) Pause(ctx context.Context, id string) (model.Sandbox, error) {
	var sb model.Sandbox
	err := c.call(ctx, http.MethodPost, sandboxPath(id, "/pause"), nil, &sb, http.StatusOK)
	return sb, err
}

// PauseToDisk snapshots a sandbox and ends its vmm, freeing its memory;
// it is suspended until Resume, or an exec, file or port call, restores it.
func (c *Client) PauseToDisk(ctx context.Context, id string) (model.Sandbox, error) {
	var sb model.Sandbox
	err := c.call(ctx, http.MethodPost, sandboxPath(id, "/pause"), model.PauseRequest{ToDisk: true}, &sb, http.StatusOK)
	return sb, err
}

// Resume restarts a paused sandbox's vCPUs, or restores a suspended one.
func (c *Client) Resume(ctx context.Context, id string) (model.Sandbox, error) {
	var sb model.Sandbox
	err := c.call(ctx, http.MethodPost, sandboxPath(id, "/resume"), nil, &sb, http.StatusOK)
	return sb, err
}

// Snapshot checkpoints a sandbox; req.Kind is "full" (default) or "diff".
func (c *Client) Snapshot(ctx context.Context, id string, req model.SnapshotRequest) (model.Snapshot, error) {
	var s model.Snapshot
	err := c.call(ctx, http.MethodPost, sandboxPath(id, "/snapshots"), req, &s, http.StatusCreated)
	return s, err
}

// Stats returns a running sandbox's resource use and limits.
func (c *Client) Stats(ctx context.Context, id string) (model.SandboxStats, error) {
	var st model.SandboxStats
	err := c.call(ctx, http.MethodGet, sandboxPath(id, "/stats"), nil, &st, http.StatusOK)
	return st, err
}

// Network returns a sandbox's network interface, address and policy.
func (c *Client) Network(ctx context.Context, id string) (model.Network, error) {
	var n model.Network
	err := c.call(ctx, http.MethodGet, sandboxPath(id, "/network"), nil, &n, http.StatusOK)
	return n, err
}

// SetNetwork replaces a sandbox's egress policy; new connections follow
// it at once.
func (c *Client) SetNetwork(ctx context.Context, id string, spec model.NetworkSpec) (model.Network, error) {
	var n model.Network
	err := c.call(ctx, http.MethodPut, sandboxPath(id, "/network"), spec, &n, http.StatusOK)
	return n, err
}

// Snapshots lists a sandbox's snapshots.
func (c *Client) Snapshots(ctx context.Context, id string) ([]model.Snapshot, error) {
	var out struct {
		Snapshots []model.Snapshot `json:"snapshots"`
	}
	err := c.call(ctx, http.MethodGet, sandboxPath(id, "/snapshots"), nil, &out, http.StatusOK)
	return out.Snapshots, err
}

// Fork starts req.Count new sandboxes from one of the sandbox's snapshots
// (req.Snapshot; empty: a full snapshot taken now).
func (c *Client) Fork(ctx context.Context, id string, req model.ForkRequest) ([]model.Sandbox, error) {
	var out struct {
		Sandboxes []model.Sandbox `json:"sandboxes"`
	}
	err := c.call(ctx, http.MethodPost, sandboxPath(id, "/fork"), req, &out, http.StatusCreated)
	return out.Sandboxes, err
}

// AllSnapshots lists every snapshot with what depends on each.
func (c *Client) AllSnapshots(ctx context.Context) ([]model.Snapshot, error) {
	var out struct {
		Snapshots []model.Snapshot `json:"snapshots"`
	}
	err := c.call(ctx, http.MethodGet, "/v1/snapshots", nil, &out, http.StatusOK)
	return out.Snapshots, err
}

// GetSnapshot returns one snapshot.
func (c *Client) GetSnapshot(ctx context.Context, id string) (model.Snapshot, error) {
	var s model.Snapshot
	err := c.call(ctx, http.MethodGet, "/v1/snapshots/"+url.PathEscape(id), nil, &s, http.StatusOK)
	return s, err
}

// DeleteSnapshot removes a snapshot; an *Error with code in_use names
// what still needs it.
func (c *Client) DeleteSnapshot(ctx context.Context, id string) error {
	return c.call(ctx, http.MethodDelete, "/v1/snapshots/"+url.PathEscape(id), nil, nil, http.StatusNoContent)
}
