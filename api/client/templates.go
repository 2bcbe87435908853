package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/sietch-vm/sietch/api/model"
)

// BuildTemplate starts building a template and returns it building; use
// WaitTemplate (or poll Template) for the end of the build.
func (c *Client) BuildTemplate(ctx context.Context, req model.TemplateRequest) (model.Template, error) {
	var t model.Template
	err := c.call(ctx, http.MethodPost, "/v1/templates", req, &t, http.StatusAccepted)
	return t, err
}

// Template returns one template (while building, its step).
func (c *Client) Template(ctx context.Context, name string) (model.Template, error) {
	var t model.Template
	err := c.call(ctx, http.MethodGet, templatePath(name), nil, &t, http.StatusOK)
	return t, err
}

// WaitTemplate returns template name once it is no longer building:
// ready, or failed with the reason.
func (c *Client) WaitTemplate(ctx context.Context, name string) (model.Template, error) {
	var t model.Template
	err := c.call(ctx, http.MethodGet, templatePath(name)+"?wait=true", nil, &t, http.StatusOK)
	return t, err
}

// Templates lists the templates.
func (c *Client) Templates(ctx context.Context) ([]model.Template, error) {
	var out struct {
		Templates []model.Template `json:"templates"`
	}
	err := c.call(ctx, http.MethodGet, "/v1/templates", nil, &out, http.StatusOK)
	return out.Templates, err
}

// DeleteTemplate removes a template and its snapshot; an *Error with code
// in_use names the sandboxes or snapshots that still need it.
func (c *Client) DeleteTemplate(ctx context.Context, name string) error {
	return c.call(ctx, http.MethodDelete, templatePath(name), nil, nil, http.StatusNoContent)
}

func templatePath(name string) string { return "/v1/templates/" + url.PathEscape(name) }
