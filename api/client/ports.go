package client

import (
	"context"
	"net/http"
	"strconv"

	"github.com/sietch-vm/sietch/api/model"
)

// ForwardPort forwards a host TCP port (req.HostPort; 0: any free one) to
// req.GuestPort in the sandbox.
func (c *Client) ForwardPort(ctx context.Context, id string, req model.PortRequest) (model.Port, error) {
	var p model.Port
	err := c.call(ctx, http.MethodPost, sandboxPath(id, "/ports"), req, &p, http.StatusCreated)
	return p, err
}

// Ports lists a sandbox's port forwards.
func (c *Client) Ports(ctx context.Context, id string) ([]model.Port, error) {
	var out struct {
		Ports []model.Port `json:"ports"`
	}
	err := c.call(ctx, http.MethodGet, sandboxPath(id, "/ports"), nil, &out, http.StatusOK)
	return out.Ports, err
}

// ClosePort stops the forward listening on hostPort.
func (c *Client) ClosePort(ctx context.Context, id string, hostPort int) error {
	return c.call(ctx, http.MethodDelete, sandboxPath(id, "/ports/"+strconv.Itoa(hostPort)), nil, nil, http.StatusNoContent)
}
